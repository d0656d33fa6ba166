"""End to end on tiny generated data: a BraTS-like region dataset and a dataset with an ignore
label plan, train (also after surrogate pre-training), validate and predict."""

from __future__ import annotations

import json

import numpy as np

from selfconfig.dataset.io import read_label
from selfconfig.inference.api import predict
from selfconfig.planning import plan_and_preprocess
from selfconfig.testing import write_ignore_dataset, write_region_dataset
from selfconfig.training.api import train

PLAN = dict(configurations=["3d"], num_processes=1, cpu_gflops=20.0, cpu_target_seconds=0.3, progress=False)


def test_region_dataset_trains_validates_and_predicts_label_maps(roots, fast_hp, tmp_path):
    write_region_dataset(roots.raw, "REG")
    res = plan_and_preprocess("REG", roots=roots, **PLAN)
    plans = res.plans
    assert plans.num_classes == 3 and plans.regions_class_order == [1, 2, 3]
    assert plans.configuration("3d").network.num_classes == 3  # one output per region
    run = train("Scratch", "REG", configuration="3d", hyperparameters={**fast_hp, "tta": False}, roots=roots,
                progress=False)
    assert {"val_dice_1", "val_dice_2", "val_dice_3"} <= set(run.history)
    s = json.loads((run.run_dir / "validation" / "summary.json").read_text())
    assert list(s["mean"]["dice_per_class"]) == ["whole tumor", "tumor core", "enhancing tumor"]
    assert all(v is None or 0 <= v <= 1 for v in s["mean"]["dice_per_class"].values())
    out = predict(roots.raw / "REG" / "imagesTs", tmp_path / "pred", trainer="Scratch", dataset="REG",
                  configuration="3d", tta=False, roots=roots, progress=False)
    seg, _ = read_label(out.files[0])
    assert set(np.unique(seg)) <= {0, 1, 2, 3}


def test_region_dataset_after_surrogate_pretraining(roots, fast_hp):
    """The pre-trained encoder fits the region network: only the output head differs."""
    write_region_dataset(roots.raw, "REGF", n_train=4)
    plan_and_preprocess("REGF", roots=roots, **PLAN)
    hp = {**fast_hp, "final_validation": False, "pretrain_epochs": 1, "pretrain_iters_per_epoch": 1}
    run = train("SurrogateFlip", "REGF", configuration="3d", hyperparameters=hp, roots=roots, progress=False)
    init = json.loads((run.run_dir / "initialization.json").read_text())
    transfer = init["transfer"]
    assert transfer["copied"] and not transfer["missing"]
    assert not any(k.startswith("seg_layers") for k in transfer["copied"])


def test_ignore_dataset_trains_and_never_predicts_the_ignore_value(roots, fast_hp, tmp_path):
    write_ignore_dataset(roots.raw, "IGN")
    res = plan_and_preprocess("IGN", roots=roots, **PLAN)
    assert res.plans.num_classes == 3  # background, blob, rim; "ignore" is no output
    fp = json.loads((roots.preprocessed / "IGN" / "fingerprint.json").read_text())
    assert fp["class_voxel_counts"]["ignore"] > 0
    run = train("Scratch", "IGN", configuration="3d", hyperparameters={**fast_hp, "tta": False}, roots=roots,
                progress=False)
    s = json.loads((run.run_dir / "validation" / "summary.json").read_text())
    assert list(s["mean"]["dice_per_class"]) == ["blob", "rim"]
    val_preds = sorted((run.run_dir / "validation").glob("*.nii.gz"))
    assert val_preds
    for p in val_preds:
        assert 3 not in np.unique(read_label(p)[0])
