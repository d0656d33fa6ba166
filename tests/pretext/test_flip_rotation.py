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


def test_pretraining_summary_and_settings_key(planned, roots):
    """The pre-training writes its held-out accuracy against chance; reusing it with another setting
    that changes its result is refused, naming the setting; --overwrite pre-trains again."""
    from selfconfig.errors import ConfigurationError
    from selfconfig.utils import read_json

    planned("PS", task="segmentation", dim=3, configurations=["3d"])
    res = run_pretraining("SurrogateFlip", "PS", hyperparameters=PRE, roots=roots, progress=False)
    folder = res.checkpoint.parent
    summary = read_json(folder / "pretrain_summary.json")
    assert summary["chance"] == 0.5 and summary["held_out_accuracy"] is not None
    assert set(summary["per_part"]) == {"z", "y", "x"} and summary["iterations"] == 2
    assert isinstance(summary["near_chance"], bool)
    assert read_json(folder / "settings.json")["epochs"] == 1
    again = run_pretraining("SurrogateFlip", "PS", hyperparameters=PRE, roots=roots, progress=False)
    assert not again.trained and again.summary == summary
    with pytest.raises(ConfigurationError, match=r"lr .*asked: 0.5"):
        run_pretraining("SurrogateFlip", "PS", hyperparameters={**PRE, "pretrain_lr": 0.5}, roots=roots,
                        progress=False)
    redo = run_pretraining("SurrogateFlip", "PS", hyperparameters={**PRE, "pretrain_lr": 0.5}, roots=roots,
                           progress=False, overwrite=True)
    assert redo.trained and read_json(folder / "settings.json")["lr"] == 0.5


def test_near_chance_is_judged_on_every_part():
    from selfconfig.pretext.base import pretext_summary

    good = pretext_summary({"val_accuracy": [0.6, 0.95, 0.96, 0.97], "val_accuracy_z": [0.99] * 4,
                            "val_accuracy_x": [0.93] * 4}, 0.5)
    assert good["near_chance"] is False and abs(good["held_out_accuracy"] - 0.96) < 1e-9
    one_axis = pretext_summary({"val_accuracy": [0.8] * 3, "val_accuracy_z": [1.0] * 3, "val_accuracy_x": [0.55] * 3}, 0.5)
    assert one_axis["near_chance"] is True  # x never left chance
    assert pretext_summary({"val_accuracy": [0.45]}, 1 / 3)["near_chance"] is True
    assert pretext_summary({"val_neg_l1": [-0.1]}, None)["near_chance"] is None


def test_experiment_summary_warns_about_a_pretraining_near_chance():
    from selfconfig.experiments.report import pretraining_markdown

    text = pretraining_markdown({
        "SurrogateFlip": {"pretext_task": "flip", "held_out_accuracy": 0.55, "chance": 0.5, "near_chance": True,
                          "near_chance_below": 0.625, "per_part": {"z": 0.6}, "iterations": 100, "minutes": 1.5},
        "SurrogateRotation": {"pretext_task": "rotation", "held_out_accuracy": 0.9, "chance": 1 / 3,
                              "near_chance": False, "per_part": {}, "iterations": 100, "minutes": 1.0}})
    assert "WARNING: the SurrogateFlip pre-training ended near chance" in text
    assert "SurrogateRotation pre-training ended near chance" not in text
    assert "| SurrogateRotation | rotation | 0.900 |" in text


def test_a_gan_pretraining_is_reported_by_what_its_numbers_measure():
    """A discriminator's accuracy is named as such, and the transferred generator is judged by its
    held-out error against an output that learned nothing, in the summary, the log line and the
    experiment's table."""
    from selfconfig.experiments.report import pretraining_markdown
    from selfconfig.pretext.base import describe_held_out, pretext_summary
    from selfconfig.pretext.color import ColorizationPretext

    history = {"val_accuracy": [0.9, 0.96, 0.97, 0.96], "val_l1": [0.3, 0.18, 0.17, 0.16],
               "val_gray_l1": [0.21, 0.2, 0.22, 0.21]}
    s = pretext_summary(history, None, accuracy_name=ColorizationPretext.accuracy_name,
                        held_out_error=ColorizationPretext.held_out_error)
    assert s["held_out_error"] == {"name": "L1 colour error", "value": pytest.approx(0.17),
                                   "no_learning": pytest.approx(0.21)}
    line = describe_held_out(s)
    assert "held-out discriminator: real vs generated colours 0.963" in line
    assert "L1 colour error 0.170 (an output that learned nothing: 0.210)" in line
    table = pretraining_markdown({"SurrogateColor": {"pretext_task": "colorization", **s, "iterations": 9, "minutes": 1}})
    assert "| SurrogateColor | colorization | 0.963 (discriminator: real vs generated colours) | - | - | " \
           "L1 colour error 0.170 (0.210) | 9 | 1 |" in table
    assert "held-out pretext accuracy 0.900" in describe_held_out(pretext_summary({"val_accuracy": [0.9]}, 0.5))
    assert s["learned_nothing"] is False and "WARNING" not in table


def test_a_generator_no_better_than_its_input_is_flagged():
    """Colourisation whose held-out L1 is no lower than the gray input's learned nothing measurable:
    the summary, the table and the paper's claims say so."""
    import pandas as pd

    from selfconfig.experiments import report
    from selfconfig.experiments.claims import claims_for
    from selfconfig.pretext.base import pretext_summary, pretraining_warning
    from selfconfig.pretext.color import ColorizationPretext

    s = pretext_summary({"val_accuracy": [0.96] * 3, "val_l1": [0.15] * 3, "val_gray_l1": [0.123] * 3}, None,
                        accuracy_name=ColorizationPretext.accuracy_name,
                        held_out_error=ColorizationPretext.held_out_error)
    assert s["learned_nothing"] is True and s["near_chance"] is None
    assert pretraining_warning(s) == ("ended no better than an output that learned nothing",
                                      "held-out L1 colour error 0.150, 0.123 without learning")
    s.update(pretext_task="colorization", iterations=275, minutes=3.3)
    rows = [{"strategy": st, "fraction": f, "fold": k, "split": "test", "value": v + step * k * k}
            for st, v, step in (("Scratch", 0.1, 0.01), ("SurrogateColor", 0.1, 0.02), ("ImageNet", 0.3, 0.015))
            for f in (0.1, 0.25) for k in range(3)]
    text = report.summary_markdown(pd.DataFrame(rows), "SKIN_SEG", "2d", "quick", "mean_dice",
                                   ["Scratch", "ImageNet", "SurrogateColor"], [0.1, 0.25],
                                   claims_for("SKIN_SEG", "SurrogateColor"), {"SurrogateColor": s})
    assert "WARNING: the SurrogateColor pre-training ended no better than an output that learned nothing**" in text
    assert "The SurrogateColor pre-training ended no better than an output that learned nothing (see above)" in text


def test_a_pretraining_killed_while_exporting_leaves_no_checkpoint_without_summary(planned, roots, monkeypatch):
    """A rerun takes ``checkpoint.pt`` as a finished pre-training, so its summary is written first:
    a kill while ``checkpoint.pt`` is written (found by benchmarks/soak_kill.py) leaves the summary,
    and the rerun pre-trains again (no checkpoint.pt) and reports it."""
    import selfconfig.pretext.run as pretext_run
    from selfconfig.utils import read_json

    planned("PK", task="segmentation", dim=3, configurations=["3d"])
    real_save = pretext_run.save_checkpoint

    def killed_at_export(path, payload):
        if path.name == pretext_run.CHECKPOINT_NAME:
            raise KeyboardInterrupt("killed while writing checkpoint.pt")
        return real_save(path, payload)

    monkeypatch.setattr(pretext_run, "save_checkpoint", killed_at_export)
    with pytest.raises(KeyboardInterrupt):
        run_pretraining("SurrogateFlip", "PK", hyperparameters=PRE, roots=roots, progress=False)
    monkeypatch.undo()
    folder = open_dataset("PK", roots=roots).pretrain_dir("SurrogateFlip")
    assert not (folder / pretext_run.CHECKPOINT_NAME).exists()
    assert read_json(folder / "pretrain_summary.json")["iterations"] == 2
    rerun = run_pretraining("SurrogateFlip", "PK", hyperparameters=PRE, roots=roots, progress=False)
    assert (folder / pretext_run.CHECKPOINT_NAME).is_file()
    assert rerun.summary["iterations"] == 2 and read_json(folder / "pretrain_summary.json") == rerun.summary
