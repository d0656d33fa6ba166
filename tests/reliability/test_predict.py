"""selfconfig_predict never writes over an input, never drops a case, never turns NaN into a
silent all-background result, and never leaves a file that looks finished when a write fails."""

from __future__ import annotations

import errno
import shutil
from collections import namedtuple

import numpy as np
import pytest

from selfconfig.dataset.geometry import Geometry
from selfconfig.dataset.io import write_image

from .conftest import assert_one_line, check_refused, lying_mha, lying_nifti, lying_nifti_gz, lying_nrrd, run_cli, snapshot

BASE = ["-d", "REL", "-c", "3d", "-f", "0", "--no-tta", "--device", "cpu"]


def _scan(env):
    return sorted(env.scans.iterdir())[0]


def test_predict_into_its_own_input_folder_is_refused(env, capsys):
    """The issue's case: -i scans -o scans replaced patientA.nii.gz with its segmentation."""
    check_refused("predict", ["-i", env.scans, "-o", env.scans, *BASE], capsys, "holds the input",
                  watch=[env.base])


def test_predict_one_file_into_its_folder_is_refused(env, capsys):
    check_refused("predict", ["-i", _scan(env), "-o", env.scans, *BASE], capsys, "holds the input",
                  watch=[env.base])


def test_predict_output_folder_given_with_other_spelling_is_refused(env, capsys):
    other = env.scans / ".." / env.scans.name / "."
    check_refused("predict", ["-i", env.scans, "-o", other, *BASE], capsys, "holds the input", watch=[env.base])


def test_duplicate_case_names_are_refused(env, capsys, tmp_path):
    """pat.nii.gz and pat.nrrd: one was dropped, "predicted 1 case(s)"."""
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(_scan(env), inp / "pat.nii.gz")
    write_image(np.zeros((1, 8, 16, 16), np.float32), Geometry((2.0, 1.0, 1.0), (8, 16, 16)), inp / "pat.nrrd")
    check_refused("predict", ["-i", inp, "-o", tmp_path / "out", *BASE], capsys, "given twice", "pat.nii.gz",
                  "pat.nrrd", watch=[env.base, tmp_path])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_voxels_are_refused(env, capsys, tmp_path, bad):
    """NaN voxels gave an all-background prediction and exit 0."""
    inp = tmp_path / "in"
    inp.mkdir()
    arr = np.random.default_rng(0).normal(size=(1, 8, 16, 16)).astype(np.float32)
    arr[0, 3, 4:6, 4:6] = bad
    write_image(arr, Geometry((2.0, 1.0, 1.0), (8, 16, 16)), inp / "pat.nii.gz")
    check_refused("predict", ["-i", inp, "-o", tmp_path / "out", *BASE], capsys, "NaN/Inf", "pat.nii.gz",
                  "nothing was written", watch=[env.base, tmp_path])


HOSTILE = {
    "nii.gz-4GB-claim": lambda p: lying_nifti_gz(p / "pat.nii.gz"),
    "nii.gz-20GB-claim": lambda p: lying_nifti_gz(p / "pat.nii.gz", (3000, 3000, 1200)),
    "nii-4GB-claim": lambda p: lying_nifti(p / "pat.nii"),
    "nrrd-raw-claim": lambda p: lying_nrrd(p / "pat.nrrd"),
    "nrrd-gzip-claim": lambda p: lying_nrrd(p / "pat.nrrd", encoding="gzip"),
    "mha-raw-claim": lambda p: lying_mha(p / "pat.mha"),
    "mha-compressed-claim": lambda p: lying_mha(p / "pat.mha", compressed=True),
}


@pytest.mark.parametrize("make", list(HOSTILE.values()), ids=list(HOSTILE))
def test_header_claiming_more_than_the_file_holds_is_refused_before_allocation(env, capsys, tmp_path, make):
    """A 56-byte .nii.gz claiming 1000 x 1000 x 2000 int16 made predict allocate 4+ GB for 20 s."""
    import resource
    import time

    inp = tmp_path / "in"
    inp.mkdir()
    make(inp)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    check_refused("predict", ["-i", inp, "-o", tmp_path / "out", *BASE], capsys, "claims", "nothing was allocated",
                  watch=[env.base, tmp_path])
    assert time.perf_counter() - t0 < 10
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grown_mb < 500, f"peak memory grew by {grown_mb:.0f} MB"


def test_scan_larger_than_available_memory_is_refused(env, capsys, tmp_path, monkeypatch):
    import selfconfig.dataset.headers as headers

    monkeypatch.setattr(headers, "available_memory", lambda: 10_000)
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(_scan(env), inp / "pat.nii.gz")
    check_refused("predict", ["-i", inp, "-o", tmp_path / "out", *BASE], capsys, "memory", "is available",
                  watch=[env.base, tmp_path])


def test_too_little_free_space_is_refused_before_writing(env, capsys, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 100, 100))
    check_refused("predict", ["-i", env.scans, "-o", tmp_path / "out", *BASE], capsys, "not enough free space",
                  "nothing was written", watch=[env.base, tmp_path])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("failure", ["enospc", "sitk-runtime-error"])
def test_failed_write_leaves_no_file_that_looks_finished(env, capsys, tmp_path, monkeypatch, failure):
    """Disk full while predicting left a truncated .nii.gz that SimpleITK reads as zero-filled."""
    import SimpleITK as sitk

    real = sitk.WriteImage

    def half_then_fail(img, path, *a, **k):
        real(img, path, *a, **k)
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])  # what a full disk leaves behind
        if failure == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("Exception thrown in SimpleITK WriteImage: itk::ERROR: could not write")

    monkeypatch.setattr(sitk, "WriteImage", half_then_fail)
    before = snapshot(env.base)
    code, _, err = run_cli("predict", ["-i", env.scans, "-o", tmp_path / "out", *BASE], capsys)
    assert_one_line(code, err, "predict", "disk full" if failure == "enospc" else "cannot write",
                    "was not written")
    assert snapshot(env.base) == before
    assert [p.name for p in (tmp_path / "out").rglob("*")] == []  # not even a hidden partial file


def test_good_prediction_still_works_and_keeps_inputs(env, capsys, tmp_path):
    """The control case: a fresh output folder; inputs untouched; one file per case."""
    before = snapshot(env.base)
    code, out, err = run_cli("predict", ["-i", env.scans, "-o", tmp_path / "out", *BASE], capsys)
    assert code == 0, err
    assert snapshot(env.base) == before
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("prediction_info"))
    assert names == sorted(p.name for p in env.scans.iterdir())
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
