"""The reliability suite's world: one tiny planned, preprocessed and trained dataset per module,
and helpers that run a command in-process and check that a refusal is one line, exit code 2, and
that nothing under the world was written, overwritten or deleted."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from selfconfig.cli.common import run
from selfconfig.paths import Roots

TINY_HP = {"epochs": 1, "iters_per_epoch": 1, "val_iters": 1, "num_workers": 0, "final_validation": False}

PROGS = {"train": "selfconfig_train", "predict": "selfconfig_predict", "pretrain": "selfconfig_pretrain",
         "experiment": "selfconfig_experiment", "plan_and_preprocess": "selfconfig_plan_and_preprocess",
         "evaluate": "selfconfig_evaluate", "make_example": "selfconfig_make_example",
         "convert_msd": "selfconfig_convert_msd"}


@dataclass
class World:
    base: Path
    roots: Roots
    dataset: str
    scans: Path  # a folder of scans to predict (copies of the test images)


def _write_world(base: Path) -> World:
    from tests.conftest import write_dataset

    from selfconfig.planning import plan_and_preprocess
    from selfconfig.training.api import train

    roots = Roots(base / "raw", base / "preprocessed", base / "results")
    write_dataset(roots.raw, "REL", task="segmentation", dim=3, shape=(8, 16, 16), n_train=4, n_test=1, n_un=0)
    plan_and_preprocess("REL", configurations=["3d"], num_processes=1, cpu_gflops=20.0, cpu_target_seconds=0.3,
                        roots=roots, progress=False)
    train("Scratch", "REL", fold=0, hyperparameters=TINY_HP, roots=roots, progress=False)
    scans = base / "scans"
    scans.mkdir()
    for p in (roots.raw / "REL" / "imagesTs").iterdir():
        (scans / p.name.replace("_0000", "")).write_bytes(p.read_bytes())
    return World(base, roots, "REL", scans)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return _write_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def env(world, monkeypatch, tmp_path) -> World:
    """Point the roots at the world and work in an empty folder."""
    monkeypatch.setenv("SELFCONFIG_RAW", str(world.roots.raw))
    monkeypatch.setenv("SELFCONFIG_PREPROCESSED", str(world.roots.preprocessed))
    monkeypatch.setenv("SELFCONFIG_RESULTS", str(world.roots.results))
    monkeypatch.chdir(tmp_path)
    return world


def snapshot(*folders: Path) -> dict[str, tuple[int, int, str]]:
    """Every file (hidden ones too) under ``folders``: size, mtime and content hash."""
    out = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            continue
        for p in sorted(folder.rglob("*")):
            if "__pycache__" in p.parts or not p.is_file():
                continue
            st = p.stat()
            out[str(p)] = (st.st_size, st.st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
        out[str(folder) + "/"] = (len(list(folder.rglob("*"))), 0, "")
    return out


def run_cli(command: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run ``selfconfig_<command>`` in this process, as its console script would."""
    main = importlib.import_module(f"selfconfig.cli.{command}").main
    capsys.readouterr()
    try:
        code = run(main, [*map(str, argv), "--no-progress"] if command != "make_example" else list(map(str, argv)),
                   prog=PROGS[command])
    except SystemExit as e:  # argparse's own refusals
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code: int, err: str, command: str, *keywords: str, exit_code: int = 2) -> str:
    """Exit code 2, no traceback, and the refusal in one ``prog: error: ...`` line (verification:
    its head line plus one line per problem) holding every keyword."""
    prog = PROGS[command]
    assert code == exit_code, f"exit code {code}; stderr:\n{err}"
    assert "Traceback" not in err, err
    assert "weights_only=False" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{prog}:")]
    assert len(lines) == 1, f"expected one line from {prog}, got:\n{err}"
    text = lines[0]
    if "problem(s) found" in text:  # a verification report: one line per problem follows
        text = err[err.index(lines[0]):]
    else:
        assert text.startswith(f"{prog}: error: "), text
    for k in keywords:
        assert k.lower() in text.lower(), f"{k!r} not in {text!r}"
    return text


def check_refused(command: str, argv: list[str], capsys, *keywords: str, watch: list[Path] = ()) -> str:
    """Run, expect a one-line refusal, and that nothing under ``watch`` changed."""
    before = snapshot(*watch)
    code, _, err = run_cli(command, argv, capsys)
    text = assert_one_line(code, err, command, *keywords)
    after = snapshot(*watch)
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))[:5]}"
    return text


# ------------------------------------------------------------------------------- hostile files

def nifti_header(shape, dtype=np.int16) -> bytes:
    img = nib.Nifti1Image(np.zeros((1, 1, 1), dtype), np.eye(4))
    img.header.set_data_shape(shape)
    return bytes(img.header.binaryblock) + b"\0" * 4


def lying_nifti_gz(path: Path, shape=(1000, 1000, 2000)) -> Path:
    """A ~60-byte .nii.gz whose header claims ``shape`` int16 voxels (4 GB for the default)."""
    path.write_bytes(gzip.compress(nifti_header(shape)))
    return path


def lying_nifti(path: Path, shape=(1000, 1000, 2000)) -> Path:
    path.write_bytes(nifti_header(shape) + b"\0" * 64)
    return path


def lying_nrrd(path: Path, sizes="1000 1000 2000", encoding="raw") -> Path:
    head = f"NRRD0004\ntype: short\ndimension: 3\nsizes: {sizes}\nencoding: {encoding}\n\n".encode()
    payload = gzip.compress(b"\0" * 100) if encoding == "gzip" else b"\0" * 100
    path.write_bytes(head + payload)
    return path


def lying_mha(path: Path, dims="1000 1000 2000", compressed=False) -> Path:
    head = (f"ObjectType = Image\nNDims = 3\nDimSize = {dims}\nElementType = MET_SHORT\n"
            f"CompressedData = {'True' if compressed else 'False'}\nElementDataFile = LOCAL\n").encode()
    import zlib

    path.write_bytes(head + (zlib.compress(b"\0" * 100) if compressed else b"\0" * 100))
    return path


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj))
