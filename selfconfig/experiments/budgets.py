"""Experiment budgets: how long each cell trains.

``full`` follows the trainers' defaults (nnU-Net's 1000 x 250 iterations on a GPU; 50 x 50 on a
CPU). ``quick`` and ``demo`` are *time* budgets: the number of iterations is derived from the
plans' estimated seconds per training iteration on this machine: each cell trains for about
``train_seconds`` of estimated iteration time, each pre-training for about ``pretrain_seconds``.
The aim was the LUNG_LOBES grid (Scratch and SurrogateFlip, 4 fractions, 1 fold) with its
pre-training in about 20 minutes on a 2-core CPU; measured, it takes 28 minutes (the epochs are
rounded up, the plan's estimate is about 15 % optimistic, and every cell also predicts its
validation and test cases; documentation/results.md). Mirroring at test time is off for the
time budgets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from selfconfig.errors import ConfigurationError
from selfconfig.plans import ConfigurationPlan


@dataclass(frozen=True)
class Budget:
    name: str
    train_seconds: float | None  # iterations of one cell, in estimated seconds
    pretrain_seconds: float | None
    iters_per_epoch: int = 25
    val_iters: int = 3
    tta: bool = False


BUDGETS = {
    "demo": Budget("demo", train_seconds=60, pretrain_seconds=120, iters_per_epoch=20, val_iters=2),
    "quick": Budget("quick", train_seconds=100, pretrain_seconds=240),
    "full": Budget("full", train_seconds=None, pretrain_seconds=None, tta=True),
}


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise ConfigurationError(f"unknown budget {name!r}; use one of {', '.join(BUDGETS)}")
    return BUDGETS[name]


def budget_hyperparameters(budget: Budget, config: ConfigurationPlan, pretext_cost: float = 1.0) -> dict:
    """Hyperparameter overrides for a budget (empty for ``full``). ``pretext_cost``: a pretext
    iteration's cost relative to a supervised one (:attr:`selfconfig.pretext.PretextTask.relative_cost`)."""
    if budget.train_seconds is None:
        return {}
    seconds = config.estimated_iteration_seconds or 1.0
    per_epoch = budget.iters_per_epoch
    epochs = max(2, math.ceil(budget.train_seconds / seconds / per_epoch))
    pre_epochs = max(2, math.ceil(budget.pretrain_seconds / (seconds * pretext_cost) / per_epoch))
    return {"epochs": epochs, "iters_per_epoch": per_epoch, "val_iters": budget.val_iters,
            "pretrain_epochs": pre_epochs, "pretrain_iters_per_epoch": per_epoch, "tta": budget.tta,
            "checkpoint_every": 1}
