"""End-to-end training on CPU: tiny 2D and 3D, segmentation and classification runs write a
complete, self-describing run folder; fractions of a fold are nested and stratified."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from selfconfig.plans import Plans
from selfconfig.training.api import train


COMBOS = {
    # id: (planned kwargs, final validation on?)
    "3d-seg": (dict(task="segmentation", dim=3), True),
    "2d-seg": (dict(task="segmentation", dim=2, shape=(32, 32)), False),
    "3d-cls": (dict(task="classification", dim=3), False),
    "2d-cls": (dict(task="classification", dim=2, rgb=True, shape=(32, 32)), True),
}


def _expected_run_dir(roots, name: str, config: str, trainer: str = "Scratch", frac: str = "frac_1.0", fold: int = 0):
    return roots.results / name / f"{trainer}__selfconfigPlans__{config}" / frac / f"fold_{fold}"


def _check_validation_summary(run_dir, task: str, val_ids: list[str], labels: dict[str, int]) -> None:
    path = run_dir / "validation" / "summary.json"
    assert path.is_file(), f"final validation wrote no {path}"
    s = json.loads(path.read_text())
    assert s["task"] == task
    foreground = sorted(n for n, v in labels.items() if v != 0)
    if task == "segmentation":
        assert s["n_cases"] == len(val_ids)
        assert sorted(s["mean"]["dice_per_class"]) == foreground
        for v in s["mean"]["dice_per_class"].values():
            assert v is None or 0.0 <= v <= 1.0
        assert 0.0 <= s["mean"]["mean_dice"] <= 1.0
        assert sorted(c["case"] for c in s["per_case"]) == sorted(val_ids)
        for cid in val_ids:  # the predictions themselves are kept next to the summary
            assert list((run_dir / "validation").glob(f"{cid}.*")), f"no validation prediction for {cid}"
    else:
        m = s["metrics"]
        assert m["n_cases"] == len(val_ids)
        assert 0.0 <= m["accuracy"] <= 1.0
        assert {"quadratic_weighted_kappa", "roc_auc"} <= set(m)
        assert sorted(c["case"] for c in s["per_case"]) == sorted(val_ids)
        assert (run_dir / "validation" / "predictions.csv").is_file()
        cm = np.asarray(s["confusion_matrix"]["matrix"])
        assert cm.shape == (len(labels), len(labels)) and cm.sum() == len(val_ids)


@pytest.mark.parametrize("combo", list(COMBOS))
def test_tiny_run_end_to_end(combo, planned, roots, fast_hp):
    kw, final_validation = COMBOS[combo]
    name = "T" + combo.replace("-", "").upper()
    dim = kw["dim"]
    config = f"{dim}d"
    res = planned(name, **kw)
    hp = {**fast_hp, "final_validation": final_validation, "tta": False}

    result = train("Scratch", name, fold=0, fraction=1.0, hyperparameters=hp, roots=roots, progress=False)

    run_dir = _expected_run_dir(roots, name, config)
    assert result.run_dir == run_dir
    assert result.trained
    for f in ("checkpoint_final.pt", "progress.png", "training.log", "cases.json", "hyperparameters.json"):
        assert (run_dir / f).is_file(), f"{f} missing from {run_dir}"
    assert not (run_dir / "checkpoint_latest.pt").exists(), "a finished run keeps no checkpoint_latest"
    with Image.open(run_dir / "progress.png") as im:
        assert im.format == "PNG" and im.size[0] > 100
    from selfconfig.utils import current_umask
    assert (run_dir / "progress.png").stat().st_mode & 0o777 == 0o666 & ~current_umask(), "plots get the usual permissions"

    # history: one entry per epoch
    assert len(result.history["train_loss"]) == 2
    assert all(np.isfinite(result.history["train_loss"]))

    # the run's own hyperparameters and case lists
    saved_hp = json.loads((run_dir / "hyperparameters.json").read_text())
    for k, v in hp.items():
        assert saved_hp[k] == v, k
    cases = json.loads((run_dir / "cases.json").read_text())
    splits = json.loads((roots.preprocessed / name / "splits.json").read_text())
    assert cases["train"] == sorted(splits[0]["train"]) and cases["val"] == sorted(splits[0]["val"])
    assert not set(cases["train"]) & set(cases["val"])

    # self-describing checkpoint, loadable without unpickling code
    ckpt = torch.load(run_dir / "checkpoint_final.pt", weights_only=True)
    assert ckpt["trainer"] == "Scratch"
    assert ckpt["configuration"] == config
    plans = Plans.from_dict(ckpt["plans"])
    assert plans.to_dict() == res.plans.to_dict()
    ds = ckpt["dataset"]
    assert ds["name"] == name and ds["task"] == kw["task"] and ds["dim"] == dim
    assert ds["labels"] == {"background": 0, "class1": 1, "class2": 2}
    assert ds["num_input_channels"] == (3 if kw.get("rgb") else 1)
    assert ckpt["hyperparameters"]["epochs"] == 2 and ckpt["hyperparameters"]["iters_per_epoch"] == 2
    assert ckpt["fold"] == "0" and ckpt["fraction"] == 1.0
    assert ckpt["loop"]["epoch"] == 2 and ckpt["loop"]["finished"]
    net = ckpt["module"]["network"]
    assert net and all(isinstance(t, torch.Tensor) for t in net.values())
    assert all(torch.isfinite(t).all() for t in net.values() if t.is_floating_point())

    if final_validation:
        assert result.validation is not None
        _check_validation_summary(run_dir, kw["task"], cases["val"], ds["labels"])
    else:
        assert result.validation is None
        assert not (run_dir / "validation" / "summary.json").exists()


def test_training_log_records_epochs_via_api(planned, roots, fast_hp):
    """training.log is the run's record: the epoch lines must be in it also when train() is
    called from Python, where nobody configured logging (the root logger stays at WARNING)."""
    planned("TLOG", task="segmentation", dim=2, shape=(32, 32))
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.WARNING)  # a fresh interpreter / notebook
    try:
        result = train("Scratch", "TLOG", fold=0, hyperparameters={**fast_hp, "final_validation": False},
                       roots=roots, progress=False)
    finally:
        root.setLevel(old)
    text = (result.run_dir / "training.log").read_text()
    assert "epoch 1/2" in text and "epoch 2/2" in text, f"training.log holds: {text!r}"


def test_train_leaves_the_callers_logging_configuration_alone(planned, roots, fast_hp):
    """The API never prints: after a run the caller's root logger level is what it was."""
    planned("TLOGL", task="classification", dim=2, rgb=True, shape=(32, 32))
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.WARNING)
    handlers = list(root.handlers)
    try:
        train("Scratch", "TLOGL", fold=0, hyperparameters={**fast_hp, "epochs": 1, "iters_per_epoch": 1,
                                                             "final_validation": False},
              roots=roots, progress=False)
        assert list(root.handlers) == handlers, "train() left a handler on the root logger"
        assert root.level == logging.WARNING, f"root logger level is {logging.getLevelName(root.level)} after train()"
    finally:
        root.setLevel(old)


def _train_ids(run_dir) -> list[str]:
    return json.loads((run_dir / "cases.json").read_text())["train"]


def test_fraction_subsets_nested_and_stratified_classification(planned, roots):
    name = "TFRAC"
    planned(name, task="classification", dim=2, shape=(32, 32), n_train=15, n_test=1, n_un=0, seed=3)
    labels = {}
    for line in (roots.raw / name / "labelsTr.csv").read_text().splitlines()[1:]:
        cid, lab = line.split(",")
        labels[cid] = int(lab)
    hp = {"epochs": 1, "iters_per_epoch": 1, "val_iters": 1, "num_workers": 0, "final_validation": False}

    subsets = {}
    for frac in (0.25, 0.5, 1.0):
        r = train("Scratch", name, fold=0, fraction=frac, hyperparameters=hp, roots=roots, progress=False)
        tag = "frac_1.0" if frac == 1.0 else f"frac_{frac:g}"
        assert r.run_dir == _expected_run_dir(roots, name, "2d", frac=tag)
        subsets[frac] = _train_ids(r.run_dir)
        ckpt = torch.load(r.run_dir / "checkpoint_final.pt", weights_only=True)
        assert ckpt["fraction"] == frac

    full = subsets[1.0]
    classes_in_fold = {labels[c] for c in full}
    assert classes_in_fold == {0, 1, 2}, "precondition: every class in the fold's training cases"
    assert set(subsets[0.25]) < set(subsets[0.5]) < set(full), subsets
    for frac in (0.25, 0.5):
        assert {labels[c] for c in subsets[frac]} == classes_in_fold, f"a class is missing at fraction {frac}"
        for k in classes_in_fold:  # stratified: about frac of each class
            n_k = sum(labels[c] == k for c in full)
            got = sum(labels[c] == k for c in subsets[frac])
            assert got == max(1, int(np.floor(frac * n_k + 0.5))), (frac, k, got, n_k)
    # the validation cases do not depend on the fraction
    vals = {json.dumps(json.loads((_expected_run_dir(roots, name, "2d", frac=t) / "cases.json").read_text())["val"])
            for t in ("frac_0.25", "frac_0.5", "frac_1.0")}
    assert len(vals) == 1


def test_fraction_subsets_nested_segmentation(planned, roots):
    name = "TFRACS"
    planned(name, task="segmentation", dim=2, shape=(32, 32), n_train=12, n_test=1, n_un=0)
    hp = {"epochs": 1, "iters_per_epoch": 1, "val_iters": 1, "num_workers": 0, "final_validation": False}
    subsets = {}
    for frac in (0.25, 0.5, 1.0):
        r = train("Scratch", name, fold=1, fraction=frac, hyperparameters=hp, roots=roots, progress=False)
        subsets[frac] = _train_ids(r.run_dir)
    n = len(subsets[1.0])
    assert set(subsets[0.25]) < set(subsets[0.5]) < set(subsets[1.0])
    assert len(subsets[0.25]) == max(1, int(np.floor(0.25 * n + 0.5)))
    assert len(subsets[0.5]) == int(np.floor(0.5 * n + 0.5))
