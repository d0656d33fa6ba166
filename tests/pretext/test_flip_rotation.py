"""Flip and rotation pretext tasks: the transformations, pre-training, transfer, compatibility."""

from __future__ import annotations

import json

import pytest
import torch

from selfconfig.networks import build_classification_network, build_segmentation_network
from selfconfig.pretext.api import run_pretraining
from selfconfig.pretext.flip import FlipPrediction
from selfconfig.pretext.rotation import RotationPrediction
from selfconfig.training.api import train
from selfconfig.training.config import TrainingConfig
from selfconfig.training.context import open_dataset

PRE = {"pretrain_epochs": 1, "pretrain_iters_per_epoch": 2, "val_iters": 1, "num_workers": 0, "precision": "fp32"}


def _task(cls, roots, name):
    data = open_dataset(name, roots=roots)
    return cls(data, TrainingConfig(precision="fp32"), torch.device("cpu"), seed=0)


def test_flip_inputs_and_targets(planned, roots):
    planned("FL", task="segmentation", dim=3, configurations=["3d"])
    task = _task(FlipPrediction, roots, "FL")
    x = torch.arange(2 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 1, 4, 6, 8)
    out, target = task.make_inputs(x)
    assert target.shape == (2, 3)
    for b in range(2):
        expect = x[b]
        for axis in range(3):
            if target[b, axis]:
                expect = torch.flip(expect, dims=[axis + 1])
        assert torch.equal(out[b], expect)
    logits = torch.where(target > 0, 5.0, -5.0)
    loss, metrics = task.loss_and_metrics(logits, target)
    assert metrics["accuracy"] == 1.0 and {"accuracy_z", "accuracy_y", "accuracy_x"} <= set(metrics)


def test_rotation_inputs_and_targets(planned, roots):
    planned("RO", task="classification", dim=2, rgb=True, shape=(32, 32), configurations=["2d"])
    task = _task(RotationPrediction, roots, "RO")
    x = torch.randn(6, 3, 8, 12)
    out, which = task.make_inputs(x)
    assert out.shape == (6, 3, 8, 8)  # square crop of the plane
    crop = x[..., :, 2:10]
    for b in range(6):
        k = task.angles[int(which[b])] // 90
        assert torch.equal(out[b], torch.rot90(crop[b], k=k, dims=(-2, -1)))
    assert 180 not in task.angles and task.num_outputs == 3


@pytest.mark.parametrize("strategy,kw,config", [
    ("SurrogateFlip", dict(task="segmentation", dim=3), "3d"),
    ("SurrogateFlip", dict(task="classification", dim=2, rgb=True, shape=(32, 32)), "2d"),
    ("SurrogateRotation", dict(task="classification", dim=2, rgb=True, shape=(32, 32)), "2d"),
    ("SurrogateRotation", dict(task="segmentation", dim=3), "3d"),
])
def test_pretrain_then_transfer_the_whole_encoder(planned, roots, fast_hp, strategy, kw, config):
    res = planned("PT", configurations=[config], **kw)
    pre = run_pretraining(strategy, "PT", configuration=config, hyperparameters=PRE, roots=roots, progress=False)
    assert pre.trained and pre.checkpoint.is_file()
    assert (pre.checkpoint.parent / "progress.png").is_file()
    pool = json.loads((pre.checkpoint.parent / "pool.json").read_text())
    # the unlabeled pool: training + imagesUn cases, never test cases (ids 6, 7 are the test cases)
    assert len(pool["train"]) + len(pool["val"]) == 8 and {"pt_006", "pt_007"}.isdisjoint(pool["train"] + pool["val"])
    run = train(strategy, "PT", configuration=config, hyperparameters={**fast_hp, **PRE}, roots=roots, progress=False)
    init = json.loads((run.run_dir / "initialization.json").read_text())
    assert init["pretrained_from"] == str(pre.checkpoint)
    plan = res.plans.configuration(config).network
    target = build_segmentation_network(plan) if kw["task"] == "segmentation" else build_classification_network(plan)
    n_encoder = len(target.parameter_groups()["encoder"])
    assert len(init["transfer"]["copied"]) == n_encoder
    # a second training reuses the checkpoint instead of pre-training again
    mtime = pre.checkpoint.stat().st_mtime_ns
    train(strategy, "PT", configuration=config, fraction=0.5, hyperparameters={**fast_hp, **PRE}, roots=roots,
          progress=False)
    assert pre.checkpoint.stat().st_mtime_ns == mtime
