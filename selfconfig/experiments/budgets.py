"""Experiment budgets: how long each cell trains.

``full`` follows the trainers' defaults (nnU-Net's 1000 x 250 iterations on a GPU; 50 x 50 on a
CPU). ``demo`` is a *wall-clock* budget: every cell trains for ``train_minutes`` and every
pre-training for ``pretrain_minutes`` (``--max-minutes``: the loop fits its schedule to the
minutes from the measured speed), so the README's demo takes about as long on any machine.
``quick`` is an *estimated-time* budget: the number of iterations is derived from the
plans' estimated seconds per training iteration on this machine: each cell trains for about
``train_seconds`` of estimated iteration time, each pre-training for about ``pretrain_seconds``
(a pretext iteration priced by the plans' cost model, :func:`pretext_cost`). Epochs are rounded
to the nearest whole number (at least 2).

``quick`` is sized so that the LUNG_LOBES grid (Scratch and SurrogateFlip, 4 fractions, 1 fold)
with its pre-training takes about 20 minutes on a 2-core CPU: 8 cells x 75 s of estimated
iterations (about 96 s measured: the CPU estimate is 15-30 % optimistic there) plus each cell's
validation and test prediction (about 25 s), and 200 s of estimated pre-training; measured 21.7
min. The other examples took 16.6-26.4 min, as far as their plans' estimates are off (the budget
trusts the estimate; it does not time the machine). Mirroring at test time is off for the time
budgets. Measured times are in documentation/results.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from selfconfig.errors import ConfigurationError
from selfconfig.plans import Budget as PlanBudget, ConfigurationPlan


@dataclass(frozen=True)
class Budget:
    name: str
    train_seconds: float | None  # iterations of one cell, in estimated seconds
    pretrain_seconds: float | None
    iters_per_epoch: int = 25
    val_iters: int = 3
    tta: bool = False
    # wall-clock budgets (--max-minutes of each cell / each pre-training) instead of estimated seconds:
    # the loop fits its schedule to the minutes from the measured speed, so the grid's time holds on
    # any machine (the number of iterations then depends on the machine; each run records it)
    train_minutes: float | None = None
    pretrain_minutes: float | None = None


#: the epoch count of a wall-clock budget: an upper bound the clock always reaches first
WALL_CLOCK_EPOCHS = 100_000


BUDGETS = {
    # the README's demo: two cells and one pre-training within about 10 minutes on any machine
    "demo": Budget("demo", train_seconds=None, pretrain_seconds=None, iters_per_epoch=20, val_iters=2,
                   train_minutes=2.25, pretrain_minutes=1.75),
    "quick": Budget("quick", train_seconds=75, pretrain_seconds=200),
    "full": Budget("full", train_seconds=None, pretrain_seconds=None, tta=True),
}


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise ConfigurationError(f"unknown budget {name!r}; use one of {', '.join(BUDGETS)}")
    return BUDGETS[name]


def pretext_cost(task: type | None, config: ConfigurationPlan, target_task: str, budget: PlanBudget | None = None) -> float:
    """Seconds of one iteration of the pretext ``task`` relative to one supervised iteration of
    ``target_task`` on the configuration ``config`` (1.0 without a pretext task).

    The pretext task trains ``task.cost_network`` (:class:`selfconfig.pretext.PretextTask`) at the
    plan's patch and batch size, ``task.cost_factor`` times over; both networks are priced with the
    FLOP model at the throughputs the plans recorded (an ImageNet encoder kind at its own rate)."""
    if task is None:
        return 1.0
    from selfconfig.networks.cost import training_seconds_per_sample

    net, patch = config.network, config.patch_size
    plain = (budget.cpu_gflops if budget else None) or 1.0
    kind_rate = budget.encoder_gflops(net.encoder.kind, net.dim) if budget else None
    pretext = training_seconds_per_sample(net, patch, getattr(task, "cost_network", "classification"), plain, kind_rate)
    target = training_seconds_per_sample(net, patch, target_task, plain, kind_rate)
    return float(getattr(task, "cost_factor", 1.0)) * pretext / target


def _epochs(seconds: float, per_iteration: float, per_epoch: int) -> int:
    return max(2, int(math.floor(seconds / per_iteration / per_epoch + 0.5)))


def budget_hyperparameters(budget: Budget, config: ConfigurationPlan, pretext_relative_cost: float = 1.0) -> dict:
    """Hyperparameter overrides for a budget (empty for ``full``). ``pretext_relative_cost``: a
    pretext iteration's cost relative to a supervised one (:func:`pretext_cost`)."""
    if budget.train_minutes is not None:
        per_epoch = budget.iters_per_epoch
        return {"max_minutes": budget.train_minutes, "epochs": WALL_CLOCK_EPOCHS, "iters_per_epoch": per_epoch,
                "val_iters": budget.val_iters, "pretrain_max_minutes": budget.pretrain_minutes,
                "pretrain_epochs": WALL_CLOCK_EPOCHS, "pretrain_iters_per_epoch": per_epoch, "tta": budget.tta,
                "checkpoint_every": 1}
    if budget.train_seconds is None:
        return {}
    seconds = config.estimated_iteration_seconds or 1.0
    per_epoch = budget.iters_per_epoch
    return {"epochs": _epochs(budget.train_seconds, seconds, per_epoch), "iters_per_epoch": per_epoch,
            "val_iters": budget.val_iters,
            "pretrain_epochs": _epochs(budget.pretrain_seconds, seconds * pretext_relative_cost, per_epoch),
            "pretrain_iters_per_epoch": per_epoch, "tta": budget.tta, "checkpoint_every": 1}
