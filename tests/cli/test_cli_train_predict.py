"""The train / predict / evaluate commands: a user's mistake is one clear line on stderr and exit
code 2 (never a traceback); the happy path trains, predicts and scores from the command line."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from selfconfig.cli import evaluate as evaluate_cli
from selfconfig.cli import predict as predict_cli
from selfconfig.cli import train as train_cli
from selfconfig.cli.common import run
from selfconfig.training.api import train

TINY_HP = {"epochs": 1, "iters_per_epoch": 1, "val_iters": 1, "num_workers": 0, "final_validation": False}


def _run(main, prog: str, args: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(main, [*map(str, args), "--no-progress"], prog=prog)
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_clear_error(code: int, err: str, prog: str, *keywords: str) -> str:
    assert code == 2, f"exit code {code}; stderr:\n{err}"
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, f"expected one error line, got:\n{err}"
    line = errors[0]
    assert line.startswith(f"{prog}: error: "), line
    for k in keywords:
        assert k.lower() in line.lower(), f"{k!r} not in {line!r}"
    return line


# ------------------------------------------------------------------------ trained models

@pytest.fixture
def model3d(planned, roots):
    """A 1-channel (CT) 3D segmentation model, trained for one iteration."""
    planned("CLI3", task="segmentation", dim=3, shape=(8, 16, 16), n_train=4, n_test=1, n_un=0)
    train("Scratch", "CLI3", fold=0, hyperparameters=TINY_HP, roots=roots, progress=False)
    return "CLI3"


@pytest.fixture
def model2d(planned, roots):
    """A 1-channel 2D segmentation model (PNG data), trained for one iteration."""
    planned("CLI2", task="segmentation", dim=2, shape=(32, 32), n_train=4, n_test=1, n_un=0)
    train("Scratch", "CLI2", fold=0, hyperparameters=TINY_HP, roots=roots, progress=False)
    return "CLI2"


def _nifti(path, array_zyx: np.ndarray, spacing=(2.0, 1.0, 1.0)) -> None:
    """Write (Z, Y, X) (or (C, Z, Y, X)) as NIfTI; nibabel wants (X, Y, Z[, C])."""
    arr = np.transpose(array_zyx, (3, 2, 1, 0)) if array_zyx.ndim == 4 else array_zyx.T
    nib.save(nib.Nifti1Image(arr.astype(np.float32), np.diag([spacing[2], spacing[1], spacing[0], 1.0])), path)


# ------------------------------------------------------------------------ predict errors

def _bad_3d_input(kind: str, folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    vol = rng.normal(0, 100, (8, 16, 16)).astype(np.float32)
    if kind == "two_channel_files":
        _nifti(folder / "case_0000.nii.gz", vol)
        _nifti(folder / "case_0001.nii.gz", vol)
        return folder, ("channel",)
    if kind == "two_channel_4d":
        _nifti(folder / "case_0000.nii.gz", np.stack([vol, vol]))
        return folder, ("case_0000", "2 channel")
    if kind == "unreadable":
        (folder / "broken_0000.nii.gz").write_bytes(b"this is not a NIfTI file at all" * 10)
        return folder, ("broken_0000",)
    if kind == "2d_image":
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(folder / "flat_0000.png")
        return folder, ("flat_0000", "2D")
    if kind == "missing":
        return folder / "no_such_folder", ("no_such_folder", "does not exist")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["two_channel_files", "two_channel_4d", "unreadable", "2d_image", "missing"])
def test_predict_wrong_input_for_3d_model(kind, model3d, tmp_path, capsys):
    inp, keywords = _bad_3d_input(kind, tmp_path / "in")
    code, out, err = _run(predict_cli.main, "selfconfig_predict",
                          ["-i", inp, "-o", tmp_path / "out", "-d", model3d, "--no-tta"], capsys)
    _assert_one_clear_error(code, err, "selfconfig_predict", *keywords)


def test_predict_3d_volume_for_2d_model(model2d, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    _nifti(inp / "vol_0000.nii.gz", np.random.default_rng(0).normal(0, 1, (6, 32, 32)))
    code, out, err = _run(predict_cli.main, "selfconfig_predict",
                          ["-i", inp, "-o", tmp_path / "out", "-d", model2d, "--no-tta"], capsys)
    _assert_one_clear_error(code, err, "selfconfig_predict", "vol_0000", "3D", "2D")


def test_predict_unknown_trainer(planned, roots, tmp_path, capsys):
    planned("CLIP", task="segmentation", dim=2, shape=(32, 32), n_train=4, n_test=1, n_un=0)
    code, out, err = _run(predict_cli.main, "selfconfig_predict",
                          ["-i", roots.raw / "CLIP" / "imagesTs", "-o", tmp_path / "out", "-d", "CLIP",
                           "-tr", "NoSuchTrainer"], capsys)
    _assert_one_clear_error(code, err, "selfconfig_predict", "NoSuchTrainer")


# -------------------------------------------------------------------------- train errors

@pytest.mark.parametrize("args, keywords", [
    (["-tr", "NoSuchTrainer"], ("NoSuchTrainer",)),
    (["-frac", "0"], ("fraction", "0")),
    (["-frac", "1.5"], ("fraction", "1.5")),
    (["-f", "7"], ("fold 7",)),
    (["-c", "4d"], ("4d",)),
    (["-d", "NoSuchDataset"], ("NoSuchDataset",)),
    (["--pretrain-epochs", "0"], ("--pretrain-epochs must be at least 1",)),
    (["--pretrain-iters-per-epoch", "0"], ("--pretrain-iters-per-epoch must be at least 1",)),
])
def test_train_wrong_flags(args, keywords, planned, roots, capsys):
    planned("CLIT", task="segmentation", dim=2, shape=(32, 32), n_train=4, n_test=1, n_un=0)
    base = {"-d": "CLIT"}
    flags = [x for k, v in base.items() if k not in args for x in (k, v)]
    code, out, err = _run(train_cli.main, "selfconfig_train",
                          [*flags, *args, "--epochs", "1", "--iters-per-epoch", "1", "--num-workers", "0",
                           "--no-final-validation"], capsys)
    _assert_one_clear_error(code, err, "selfconfig_train", *keywords)
    assert not (roots.results / "CLIT").exists() or not list((roots.results / "CLIT").rglob("checkpoint_*.pt"))


def test_train_again_without_continue(planned, roots, capsys):
    planned("CLIA", task="segmentation", dim=2, shape=(32, 32), n_train=4, n_test=1, n_un=0)
    args = ["-d", "CLIA", "--epochs", "1", "--iters-per-epoch", "1", "--val-iters", "1", "--num-workers", "0",
            "--no-final-validation"]
    code, out, err = _run(train_cli.main, "selfconfig_train", args, capsys)
    assert code == 0, err
    code, out, err = _run(train_cli.main, "selfconfig_train", args, capsys)
    _assert_one_clear_error(code, err, "selfconfig_train", "--continue", "--overwrite")
    code, out, err = _run(train_cli.main, "selfconfig_train", [*args[:2], "--epochs", "2", "--continue"], capsys)
    assert code == 0, err
    run_dir = roots.results / "CLIA" / "Scratch__selfconfigPlans__2d" / "frac_1.0" / "fold_0"
    ckpt = torch.load(run_dir / "checkpoint_final.pt", weights_only=True)
    assert ckpt["loop"]["epoch"] == 2 and len(ckpt["loop"]["history"]["train_loss"]) == 2


# ------------------------------------------------------------------------ the happy path

def test_cli_train_predict_evaluate(planned, roots, tmp_path, capsys):
    planned("CLIH", task="segmentation", dim=2, shape=(32, 32), n_train=4, n_test=2, n_un=0)
    code, out, err = _run(train_cli.main, "selfconfig_train",
                          ["-d", "CLIH", "-tr", "Scratch", "-f", "0", "-frac", "1", "--epochs", "2",
                           "--iters-per-epoch", "1", "--val-iters", "1", "--num-workers", "0", "--lr", "0.005",
                           "--no-final-validation"], capsys)
    assert code == 0, err
    run_dir = roots.results / "CLIH" / "Scratch__selfconfigPlans__2d" / "frac_1.0" / "fold_0"
    assert f"run folder: {run_dir}" in out
    assert json.loads((run_dir / "hyperparameters.json").read_text())["lr"] == 0.005
    log_text = (run_dir / "training.log").read_text()
    assert "epoch 1/2" in log_text and "epoch 2/2" in log_text

    pred = tmp_path / "pred"
    code, out, err = _run(predict_cli.main, "selfconfig_predict",
                          ["-i", roots.raw / "CLIH" / "imagesTs", "-o", pred, "-d", "CLIH"], capsys)
    assert code == 0, err
    assert "predicted 2 case(s) with 1 model(s)" in out
    refs = sorted((roots.raw / "CLIH" / "labelsTs").glob("*.png"))
    assert sorted(p.name for p in pred.glob("*.png")) == [p.name for p in refs]

    code, out, err = _run(evaluate_cli.main, "selfconfig_evaluate",
                          ["-pred", pred, "-ref", roots.raw / "CLIH" / "labelsTs", "-d", "CLIH"], capsys)
    assert code == 0, err
    assert "2 case(s); Dice per class:" in out
    assert re.search(r"^\s+class1\s+\d\.\d{4}$", out, re.M) and re.search(r"^\s+class2\s+(\d\.\d{4}|nan)$", out, re.M)
    summary = json.loads((pred / "summary.json").read_text())
    assert summary["n_cases"] == 2 and sorted(summary["mean"]["dice_per_class"]) == ["class1", "class2"]
    # the overlays are drawn on the scans of imagesTs (beside labelsTs), and their montage is named
    assert f"figure:  {pred / 'overlays' / 'montage.png'}" in out
    assert sorted(p.name for p in (pred / "overlays").glob("*.png")) == sorted([*(p.name for p in refs), "montage.png"])


# ----------------------------------------------------------------------------- evaluate

def _seg_case(boxes: dict[int, tuple]) -> np.ndarray:
    seg = np.zeros((8, 8, 8), np.uint8)
    for value, box in boxes.items():
        seg[box] = value
    return seg


def test_evaluate_cli_prints_dice_per_class_and_writes_summary(tmp_path, capsys):
    pred, ref, out_dir = tmp_path / "pred", tmp_path / "ref", tmp_path / "scores"
    pred.mkdir()
    ref.mkdir()
    cube = (slice(0, 2),) * 3
    half = (slice(0, 2), slice(0, 2), slice(0, 1))
    other = (slice(4, 6),) * 3
    shifted = (slice(1, 3),) * 3
    cases = {
        # class1: 4 of 8 voxels found -> Dice 2*4/(8+4); class2 exact -> 1
        "a": (_seg_case({1: half, 2: other}), _seg_case({1: cube, 2: other})),
        # class1 exact -> 1; class2 absent from both -> does not count
        "b": (_seg_case({1: shifted}), _seg_case({1: shifted})),
    }
    for case, (p, r) in cases.items():
        _nifti(pred / f"{case}.nii.gz", p.astype(np.float32))
        _nifti(ref / f"{case}.nii.gz", r.astype(np.float32))
    labels = tmp_path / "dataset.json"
    labels.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2}}))

    code, out, err = _run(evaluate_cli.main, "selfconfig_evaluate",
                          ["-pred", pred, "-ref", ref, "-l", labels, "-o", out_dir], capsys)
    assert code == 0, err
    d1 = (2 * 4 / 12 + 1.0) / 2
    assert re.search(rf"^\s+liver\s+{d1:.4f}$", out, re.M), out
    assert re.search(r"^\s+tumour\s+1\.0000$", out, re.M), out
    assert re.search(rf"^\s+mean\s+{(d1 + 1.0) / 2:.4f}$", out, re.M), out
    assert "2 case(s)" in out and str(out_dir / "summary.json") in out
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["n_cases"] == 2
    assert summary["mean"]["dice_per_class"]["liver"] == pytest.approx(d1)
    assert summary["mean"]["dice_per_class"]["tumour"] == pytest.approx(1.0)
    per_case = {c["case"]: c for c in summary["per_case"]}
    assert per_case["a"]["metrics"]["liver"]["dice"] == pytest.approx(8 / 12)
    assert per_case["b"]["metrics"]["tumour"]["dice"] is None  # NaN in JSON is null
    assert (out_dir / "per_case.csv").is_file()

    # a missing prediction is a clear error
    (pred / "b.nii.gz").unlink()
    code, out, err = _run(evaluate_cli.main, "selfconfig_evaluate",
                          ["-pred", pred, "-ref", ref, "-l", labels, "-o", out_dir], capsys)
    _assert_one_clear_error(code, err, "selfconfig_evaluate", "no prediction", "b")


def test_evaluate_cli_classification_table(tmp_path, capsys):
    preds = tmp_path / "predictions.csv"
    preds.write_text("case,prediction,prob_no,prob_yes\nc1,1,0.2,0.8\nc2,0,0.9,0.1\nc3,1,0.4,0.6\nc4,0,0.7,0.3\n")
    truth = tmp_path / "labels.csv"
    truth.write_text("case,label\nc1,1\nc2,0\nc3,0\nc4,0\n")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"no": 0, "yes": 1}))
    code, out, err = _run(evaluate_cli.main, "selfconfig_evaluate", ["-pred", preds, "-ref", truth, "-l", labels],
                          capsys)
    assert code == 0, err
    assert re.search(r"^\s+accuracy\s+0\.7500$", out, re.M), out
    assert re.search(r"^\s+roc_auc\s+1\.0000$", out, re.M), out
    assert (tmp_path / "summary.json").is_file()

    code, out, err = _run(evaluate_cli.main, "selfconfig_evaluate", ["-pred", preds, "-ref", tmp_path, "-l", labels],
                          capsys)
    _assert_one_clear_error(code, err, "selfconfig_evaluate", "two folders")
