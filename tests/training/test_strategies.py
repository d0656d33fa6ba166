"""Every shipped trainer runs on a dataset it fits and refuses, with one clear line, one it does not."""

from __future__ import annotations

import json
from copy import deepcopy

import numpy as np
import pytest
import torch

from selfconfig.cli.common import run as run_cli
from selfconfig.errors import IncompatibleDatasetError, WeightsNotFoundError
from selfconfig.networks import build_encoder, imagenet_encoder_layout, to_reference_keys
from selfconfig.plans import NetworkPlan
from selfconfig.planning import plan_and_preprocess
from selfconfig.training.api import train
from selfconfig.training.builder import validation_batches
from selfconfig.training.config import TrainingConfig
from selfconfig.training.context import open_dataset
from selfconfig.training.loop import Callback
from selfconfig.training.registry import available_trainers, get_trainer
from selfconfig.training.run import train_run

SIX = ["ImageNet", "Scratch", "SurrogateColor", "SurrogateFlip", "SurrogateRotation", "SurrogateWGAN"]
PRE = {"pretrain_epochs": 1, "pretrain_iters_per_epoch": 1, "val_iters": 1, "precision": "fp32"}


def test_registry_lists_the_six_strategies():
    assert set(SIX) <= set(available_trainers())


def test_imagenet_with_the_packaged_efficientnet(planned, roots, fast_hp):
    planned("IN2", task="classification", dim=2, rgb=True, shape=(32, 32), configurations=["2d"])
    run = train("ImageNet", "IN2", configuration="2d_imagenet", hyperparameters=fast_hp, roots=roots, progress=False)
    init = json.loads((run.run_dir / "initialization.json").read_text())
    assert "efficientnet_lite0" in init["init"]
    assert len(init["transfer"]["copied"]) == 294  # every tensor of the EfficientNet-Lite0 encoder
    # the first convolution was adapted to the 3 RGB channels, the ImageNet classifier dropped
    assert any("_fc" in k for k in init["transfer"]["skipped"]) or init["transfer"].get("dropped")


def test_imagenet_refuses_plain_and_3d_configurations(planned, roots, fast_hp):
    planned("IN3", task="segmentation", dim=3, configurations=["3d"])
    with pytest.raises(IncompatibleDatasetError, match="2d_imagenet"):
        train("ImageNet", "IN3", configuration="3d", hyperparameters=fast_hp, roots=roots, progress=False)
    with pytest.raises(IncompatibleDatasetError, match="inflate-3d"):
        train("ImageNet", "IN3", configuration="3d_imagenet", hyperparameters=fast_hp, roots=roots, progress=False)


@pytest.mark.slow
def test_imagenet_kernel_inflation_on_3d(planned, roots, fast_hp):
    planned("INF", task="classification", dim=3, shape=(32, 32, 32), configurations=["3d"])
    run = train("ImageNet", "INF", configuration="3d_imagenet", hyperparameters={**fast_hp, "inflate_3d": True},
                roots=roots, progress=False)
    init = json.loads((run.run_dir / "initialization.json").read_text())
    assert init["inflated_3d"] and len(init["transfer"]["copied"]) == 294


def test_imagenet_resnet18_from_a_torchvision_format_file(make_dataset, roots, tmp_path, fast_hp):
    make_dataset("RN", task="classification", dim=2, rgb=True, shape=(32, 32))
    res = plan_and_preprocess("RN", planner="ResNet18Planner", configurations=["2d"], num_processes=1,
                              cpu_gflops=20.0, cpu_target_seconds=0.3, roots=roots, progress=False)
    plans_name = res.plans.plans_name
    # a torchvision-format ResNet-18 state dict (random weights), with its 1000-class classifier
    enc = build_encoder(NetworkPlan(dim=2, in_channels=3, num_classes=1000,
                                    encoder=imagenet_encoder_layout("resnet18", 2)))
    state = to_reference_keys(enc.state_dict(), "resnet18")
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    assert "conv1.weight" in state and "layer4.1.bn2.running_var" in state
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    with pytest.raises(WeightsNotFoundError, match="--pretrained-weights"):
        train("ImageNet", "RN", configuration="2d_imagenet", plans_name=plans_name, hyperparameters=fast_hp,
              roots=roots, progress=False)
    run = train("ImageNet", "RN", configuration="2d_imagenet", plans_name=plans_name,
                hyperparameters={**fast_hp, "pretrained_weights": str(path)}, roots=roots, progress=False)
    init = json.loads((run.run_dir / "initialization.json").read_text())
    n_encoder = len(enc.state_dict())
    assert len(init["transfer"]["copied"]) == n_encoder


@pytest.mark.parametrize("strategy,needs", [("SurrogateColor", "colour"), ("SurrogateWGAN", "plain configuration")])
def test_gan_strategies_refuse_datasets_they_do_not_fit(planned, roots, fast_hp, capsys, strategy, needs):
    planned("GRAY", task="classification", dim=2, rgb=False, shape=(32, 32), configurations=["2d"])
    config = "2d" if strategy == "SurrogateColor" else "2d_imagenet"  # WGAN: batch-norm encoder
    from selfconfig.cli.train import main

    code = run_cli(main, ["-tr", strategy, "-d", "GRAY", "-c", config, "--epochs", "1", "--no-progress"],
                   prog="selfconfig_train")
    err = capsys.readouterr().err
    assert code == 2 and needs in err and "Traceback" not in err
    assert len([line for line in err.strip().splitlines() if line.strip()]) == 1
    assert not (roots.results / "GRAY").exists()


class _Probe(Callback):
    """Records the network's parameters when fine-tuning starts and ends, and its loss (training
    mode, on a copy, so the run itself is untouched) on fixed batches of its training cases."""

    def __init__(self, run):
        data = run.data
        hp = TrainingConfig(batch_size=2, val_iters=2)
        self.batches = list(validation_batches(data.case_refs("train", run.train_ids), data, hp, seed=5)())
        self.task = data.task
        self.key = "seg" if data.task == "segmentation" else "label"
        self.params, self.losses, self.groups = [], [], {}

    def _record(self, module) -> None:
        net = module.network
        self.groups = net.parameter_groups()
        self.params.append({k: v.detach().clone() for k, v in net.named_parameters()})
        copy = deepcopy(net).train()
        with torch.no_grad():
            self.losses.append(float(np.mean([float(module.loss(copy(b["data"]), b[self.key].long()))
                                              for b in self.batches])))

    def on_fit_start(self, module, state):
        self._record(module)

    def on_fit_end(self, module, state):
        self._record(module)


def _probed(strategy: str) -> type:
    """The shipped strategy with a probe among its callbacks (same name, so the same run folders)."""
    base = get_trainer(strategy)
    probes: list[_Probe] = []

    def extra_callbacks(self, run):
        probes.append(_Probe(run))
        return [*base.extra_callbacks(self, run), probes[-1]]

    return type(strategy, (base,), {"extra_callbacks": extra_callbacks, "probes": probes})


def _changed(before: dict, after: dict, keys) -> float:
    keys = [k for k in keys if k in before]
    assert keys
    return sum(not torch.equal(before[k], after[k]) for k in keys) / len(keys)


@pytest.mark.parametrize("strategy", SIX)
def test_each_strategy_runs_on_a_dataset_it_fits(planned, roots, fast_hp, strategy):
    """Each strategy starts from the weights it promises (pre-trained or ImageNet encoder), then
    fine-tuning changes every part of the network and lowers the loss on its training cases."""
    rgb = strategy in ("SurrogateColor", "ImageNet", "SurrogateRotation")
    planned("FIT", task="segmentation" if strategy == "SurrogateColor" else "classification", dim=2, rgb=rgb,
            shape=(32, 32), configurations=["2d"])
    config = "2d_imagenet" if strategy == "ImageNet" else "2d"
    cls = _probed(strategy)
    hp = {**fast_hp, **PRE, "epochs": 3, "iters_per_epoch": 4, "final_validation": False}
    run = train_run(cls, open_dataset("FIT", config, roots=roots), 0, 1.0, hp, device=torch.device("cpu"),
                    progress=False)
    assert (run.run_dir / "checkpoint_final.pt").is_file()
    (probe,) = cls.probes
    start, end = probe.params
    groups = probe.groups
    init = json.loads((run.run_dir / "initialization.json").read_text())
    if strategy.startswith("Surrogate"):  # the transferred groups start as the pre-training left them
        pre = torch.load(init["pretrained_from"], weights_only=True)["pretrained"]
        moved = [k for g in pre["groups"][probe.task] for k in groups[g] if k in start]
        assert moved and all(torch.equal(start[k], pre["state_dict"][k].float()) for k in moved)
    elif strategy == "ImageNet":
        assert len(init["transfer"]["copied"]) > 200
    for group in ("encoder", "head", *(("decoder",) if "decoder" in groups else ())):
        assert _changed(start, end, groups[group]) > 0.9, group  # fine-tuned, none frozen
    assert probe.losses[1] < probe.losses[0], probe.losses

