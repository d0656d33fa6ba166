"""selfconfig_plan_and_preprocess on raw datasets a careless user could give: a one-line refusal
(or a verification report) with nothing written, warnings for datasets that cannot train, and
preprocessed data that follow their raw source."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple

import numpy as np
import pytest

from selfconfig.dataset.geometry import Geometry
from selfconfig.dataset.io import write_image, write_segmentation
from selfconfig.paths import Roots

from .conftest import assert_one_line, check_refused, lying_nifti_gz, run_cli, snapshot

PLAN = ["-np", "1", "--cpu-gflops", "20", "--cpu-seconds", "0.3", "-c", "3d"]


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """Empty roots in tmp_path; returns a factory for small raw datasets there."""
    from tests.conftest import write_dataset

    roots = Roots(tmp_path / "raw", tmp_path / "preprocessed", tmp_path / "results")
    for k, v in (("RAW", roots.raw), ("PREPROCESSED", roots.preprocessed), ("RESULTS", roots.results)):
        monkeypatch.setenv(f"SELFCONFIG_{k}", str(v))
    monkeypatch.chdir(tmp_path)

    def make(name="DS", **kw):
        kw.setdefault("task", "segmentation")
        kw.setdefault("dim", 3)
        kw.setdefault("shape", (8, 16, 16))
        kw.setdefault("n_train", 3)
        kw.setdefault("n_test", 0)
        kw.setdefault("n_un", 0)
        return write_dataset(roots.raw, name, **kw)

    make.roots = roots
    make.base = tmp_path
    return make


def _classification(fresh, rows: str):
    ds = fresh("CL", task="classification", dim=2, shape=(16, 16), n_classes=2)
    ids = sorted(p.name.split("_0000")[0] for p in (ds / "imagesTr").iterdir())
    (ds / "labelsTr.csv").write_text("case,label\n" + rows.format(*ids))
    return ds


def _refused(fresh, capsys, name, *keywords):
    return check_refused("plan_and_preprocess", ["-d", name, *PLAN], capsys, *keywords, watch=[fresh.base])


# ------------------------------------------------------------------------------ dataset.json

@pytest.mark.parametrize("content,keywords", [
    (b"[1, 2, 3]", ["JSON list", "not an object"]),
    (b"\xff\xfe{\x00}\x00", ["not UTF-8"]),
    (b'{"name": "DS", "labels": ', ["not valid JSON"]),
    (b'"just a string"', ["JSON str"]),
    (b'{"task": "segmentation"}', ["channel_names", "labels", "file_ending"]),
], ids=["array", "not-utf8", "invalid", "string", "fields-missing"])
def test_bad_dataset_json(fresh, capsys, content, keywords):
    ds = fresh()
    (ds / "dataset.json").write_bytes(content)
    _refused(fresh, capsys, "DS", "dataset.json", *keywords)


def test_missing_dataset_json(fresh, capsys):
    ds = fresh()
    (ds / "dataset.json").unlink()
    _refused(fresh, capsys, "DS", "dataset.json", "missing")


def test_dataset_name_that_leaves_the_raw_root(fresh, capsys):
    fresh()
    (fresh.base / "elsewhere").mkdir()
    shutil.copytree(fresh.roots.raw / "DS", fresh.base / "elsewhere" / "SOMETHING")
    _refused(fresh, capsys, "../elsewhere/SOMETHING", "plain dataset name")
    assert not (fresh.base / "elsewhere" / "SOMETHING" / "fingerprint.json").exists()


# --------------------------------------------------------------------------- labels tables

@pytest.mark.parametrize("rows,keywords", [
    ("{0},0.7\n{1},1\n{2},0\n", ["0.7", "not one of"]),
    ("{0},0\n{0},1\n{1},1\n{2},0\n", ["different labels", "keep one row"]),
    ("{0},5\n{1},1\n{2},0\n", ["label 5", "not one of"]),
    ("{0},sick\n{1},1\n{2},0\n", ["'sick'", "not one of"]),
    ("{0},\n{1},1\n{2},0\n", ["nan", "not one of"]),
    ("{1},1\n{2},0\n", ["no row for case"]),
], ids=["fraction", "conflicting-duplicate", "out-of-range", "unknown-name", "empty", "missing-row"])
def test_bad_classification_labels(fresh, capsys, rows, keywords):
    _classification(fresh, rows)
    _refused(fresh, capsys, "CL", "labelsTr.csv", *keywords)


def test_identical_duplicate_rows_are_reported_and_used_once(fresh, capsys):
    _classification(fresh, "{0},0\n{0},0\n{1},1\n{2},0\n")
    code, out, err = run_cli("plan_and_preprocess", ["-d", "CL", "--verify"], capsys)
    assert code == 0, err
    assert "listed 2 times with the same label" in err
    assert "verified 3 training" in out


# ------------------------------------------------------------------------------------ images

def _replace_image(ds, arr, dtype=np.float32):
    target = sorted((ds / "imagesTr").iterdir())[0]
    write_image(arr.astype(dtype), Geometry((2.0, 1.0, 1.0), arr.shape[1:]), target)
    return target


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_training_image(fresh, capsys, bad):
    ds = fresh()
    arr = np.ones((1, 8, 16, 16), np.float32)
    arr[0, 2, 2, 2] = bad
    target = _replace_image(ds, arr)
    _refused(fresh, capsys, "DS", target.name, "NaN/Inf")


def test_lying_header_in_training_image(fresh, capsys):
    ds = fresh()
    target = sorted((ds / "imagesTr").iterdir())[0]
    lying_nifti_gz(target)
    _refused(fresh, capsys, "DS", target.name, "claims", "nothing was allocated")


def test_truncated_training_image(fresh, capsys):
    ds = fresh()
    target = sorted((ds / "imagesTr").iterdir())[0]
    target.write_bytes(target.read_bytes()[:200])
    _refused(fresh, capsys, "DS", target.name, "truncated")


def test_label_value_not_declared(fresh, capsys):
    ds = fresh()
    target = sorted((ds / "labelsTr").iterdir())[0]
    write_segmentation(np.full((8, 16, 16), 7, np.uint8), Geometry((2.0, 1.0, 1.0), (8, 16, 16)), target)
    _refused(fresh, capsys, "DS", target.name, "label values [7]")


# ------------------------------------------------------------------------------- disk space

def test_too_little_space_to_preprocess_writes_nothing(fresh, capsys, monkeypatch):
    fresh()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    _refused(fresh, capsys, "DS", "not enough free space", "preprocessing", "nothing was written")
    assert not fresh.roots.preprocessed.exists()


def test_disk_full_while_preprocessing_is_one_line_naming_the_file(fresh, capsys, monkeypatch):
    """numpy said 'OSError: 463050 requested and 219104 written', naming no file."""
    fresh()
    real = np.save

    def full(f, arr, *a, **k):
        real(f, arr[: max(1, len(arr) // 2)], *a, **k)
        raise OSError(f"{arr.nbytes} requested and {arr.nbytes // 2} written")

    monkeypatch.setattr(np, "save", full)
    before = snapshot(fresh.roots.raw)
    code, _, err = run_cli("plan_and_preprocess", ["-d", "DS", *PLAN], capsys)
    line = assert_one_line(code, err, "plan_and_preprocess", "disk full while writing", ".npy", "was not written")
    assert snapshot(fresh.roots.raw) == before
    left = [p for p in fresh.roots.preprocessed.rglob("*") if p.suffix == ".npy" or p.name.startswith(".partial")]
    assert left == [], left  # no array and no partial file that a later run could take as finished
    assert "requested and" not in line or "disk full" in line


# ------------------------------------------------------------------------- cannot train

@pytest.mark.parametrize("what,keywords", [
    ("labels-empty", ["every training label map", "empty"]),
    ("images-zero", ["every training image", "constant"]),
], ids=["labels-empty", "images-zero"])
def test_dataset_that_cannot_train_warns_where_it_is_seen(fresh, capsys, what, keywords):
    ds = fresh()
    geom = Geometry((2.0, 1.0, 1.0), (8, 16, 16))
    for p in (ds / "labelsTr").iterdir():
        if what == "labels-empty":
            write_segmentation(np.zeros((8, 16, 16), np.uint8), geom, p)
    for p in (ds / "imagesTr").iterdir():
        if what == "images-zero":
            write_image(np.zeros((1, 8, 16, 16), np.float32), geom, p)
    code, out, err = run_cli("plan_and_preprocess", ["-d", "DS", *PLAN], capsys)
    assert code == 0, err
    warning = [ln for ln in err.splitlines() if ln.startswith("WARNING: ")]
    assert len(warning) >= 1 and all(k in warning[0] for k in keywords), err
    assert err.rstrip().splitlines()[-1].startswith("WARNING: "), "the warning must come last"
    fp = json.loads((fresh.roots.preprocessed / "DS" / "fingerprint.json").read_text())
    assert any(keywords[0] in w for w in fp["warnings"])


# ---------------------------------------------------------------------- stale preprocessed data

def _plan(capsys, *extra):
    code, out, err = run_cli("plan_and_preprocess", ["-d", "DS", *PLAN, *extra], capsys)
    assert code == 0, err
    return out


def test_case_deleted_from_raw_leaves_the_splits(fresh, capsys):
    ds = fresh(n_train=4)
    _plan(capsys)
    from selfconfig.training.context import open_dataset

    open_dataset("DS", "3d", roots=fresh.roots).splits()  # splits.json as the first training makes it
    gone = sorted((ds / "imagesTr").iterdir())[0]
    case = gone.name.split("_0000")[0]
    gone.unlink()
    (ds / "labelsTr" / f"{case}.nii.gz").unlink()
    before = snapshot(fresh.roots.preprocessed)
    out = _plan(capsys, "--verify")
    assert "no longer exist in the raw data" in out and case in out
    assert snapshot(fresh.roots.preprocessed) == before  # --verify writes nothing
    _plan(capsys)
    splits = json.loads((fresh.roots.preprocessed / "DS" / "splits.json").read_text())
    assert case not in {c for s in splits for c in s["train"] + s["val"]}
    assert not list(fresh.roots.preprocessed.rglob(f"{case}*"))


def test_corrected_label_file_is_preprocessed_again(fresh, capsys):
    ds = fresh()
    _plan(capsys)
    label = sorted((ds / "labelsTr").iterdir())[0]
    case = label.name[: -len(".nii.gz")]
    seg_file = next(fresh.roots.preprocessed.rglob(f"train/{case}_seg.npy"))
    old = np.load(seg_file)
    write_segmentation(np.zeros((8, 16, 16), np.uint8), Geometry((2.0, 1.0, 1.0), (8, 16, 16)), label)
    out = _plan(capsys, "--verify")
    assert "differ from their raw files" in out and case in out
    _plan(capsys)
    new = np.load(seg_file)
    assert old.any() and not new.any()


def _zero_spacing(path, axis: int = 1) -> None:
    """Set pixdim[axis] of a .nii.gz to 0, as a converter that lost the slice spacing writes it."""
    import gzip
    import struct

    raw = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<f", raw, 76 + 4 * axis, 0.0)
    path.write_bytes(gzip.compress(bytes(raw)))


def test_verify_reports_a_zero_spacing_in_image_and_label(fresh, capsys):
    """A pixdim of 0 (an image's, a label's) passed --verify: SimpleITK read it as 1 mm."""
    ds = fresh()
    images = sorted((ds / "imagesTr").iterdir())
    label = ds / "labelsTr" / images[1].name.replace("_0000", "")
    for p in (images[0], label):
        _zero_spacing(p)
    text = check_refused("plan_and_preprocess", ["-d", "DS", *PLAN, "--verify"], capsys, "pixdim[1]", images[0].name,
                         label.name, "2 problem(s)", watch=[fresh.base])
    assert text.count("pixdim[1] is 0") == 2
