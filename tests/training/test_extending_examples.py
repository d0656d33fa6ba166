"""The examples of documentation/extending.md run from outside the installed package."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from selfconfig.training.api import train

EXAMPLES = Path(__file__).resolve().parents[2] / "documentation" / "examples" / "my_trainers.py"


def test_custom_pretext_task_from_a_user_file(planned, roots, fast_hp):
    res = planned("EXT", task="segmentation", dim=3, configurations=["3d"])
    hp = {**fast_hp, "pretrain_epochs": 1, "pretrain_iters_per_epoch": 2, "final_validation": False,
          "precision": "fp32"}
    run = train(f"{EXAMPLES}:SurrogateRestoration", "EXT", hyperparameters=hp, roots=roots, progress=False)
    assert run.run_dir.parent.parent.name == "SurrogateRestoration__selfconfigPlans__3d"
    pre = roots.results / "EXT" / "pretrain" / "SurrogateRestoration__selfconfigPlans__3d" / "checkpoint.pt"
    assert pre.is_file()
    init = json.loads((run.run_dir / "initialization.json").read_text())
    # encoder + decoder transferred, the output layer (1 channel vs 3 classes) not
    from selfconfig.networks import build_segmentation_network

    groups = build_segmentation_network(res.plans.configuration("3d").network).parameter_groups()
    assert len(init["transfer"]["copied"]) == len(groups["encoder"]) + len(groups["decoder"])


def test_custom_optimizer_trainer_from_a_user_file(planned, roots, fast_hp):
    planned("EXT2", task="classification", dim=2, rgb=True, shape=(32, 32), configurations=["2d"])
    run = train(f"{EXAMPLES}:AdamScratch", "EXT2", configuration="2d", hyperparameters=fast_hp, roots=roots,
                progress=False)
    ckpt = torch.load(run.run_dir / "checkpoint_final.pt", weights_only=True)
    groups = ckpt["module"]["optimizer"]["param_groups"]
    assert groups[0]["lr"] == 3e-4 and "amsgrad" in groups[0]  # AdamW's state
