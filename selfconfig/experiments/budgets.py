"""Experiment budgets: how long each cell trains.

``full`` follows the trainers' defaults (nnU-Net's 1000 x 250 iterations on a GPU; 50 x 50 on a
CPU) on 5 folds. ``demo`` and ``quick`` are *iteration* budgets with a wall-clock cap:

- the number of iterations is derived from the plans' estimated seconds per training iteration:
  each cell trains for about ``train_seconds`` of estimated iteration time, each pre-training for
  about ``pretrain_seconds`` (a pretext iteration priced by the plans' cost model,
  :func:`pretext_cost`); epochs are rounded to the nearest whole number (at least 2). Two runs of
  the same grid on the same plan train the same number of iterations, however busy the machine
  is, so their results differ only by what the seeds leave open.
- ``train_minutes`` / ``pretrain_minutes`` cap each run's wall clock (``--max-minutes``: the loop
  fits its schedule to the minutes when the iterations do not fit, so the learning rate still
  ends its decay). On the machine the plan was made for the cap does not bind (it is about twice
  the estimate, and the estimate is 1.5-2x optimistic on a 2-core CPU); it bounds the time on a
  machine that is much slower than its plan assumed.
  A budget with minutes and no seconds is a pure wall-clock budget.

Both are meant for a plan made for short iterations (``selfconfig_plan_and_preprocess
--cpu-seconds 0.25``, as ``make demo`` does): on a 2-core CPU, 60 s of 1-second iterations is
60 iterations, the start of training; of 0.2-second iterations it is 300.
The grid warns when a cell gets fewer than :data:`FEW_ITERATIONS`.

``quick`` is sized for one application's grid (two strategies x 4 fractions x its 3 folds) with
its pre-training in about 45 minutes on a 2-core CPU: 24 cells x (300 iterations + validation
and test prediction) + the pre-training. Measured on LUNG_LOBES: 55.6 minutes (0.3-0.4 s per
iteration on the same idle machine, from one run to another); at 300 iterations the
cells have left the class prior but are not converged (documentation/results.md). Mirroring at
test time is off for both, and a segmentation cell scores at most 60 validation and 60 test cases
(a fixed, evenly spread subset: the Dice is per case; classification metrics keep every case). Of
the examples only SKIN_SEG has more (200 validation and 300 test images per cell at its 1,000
labeled images), whose quick grid would otherwise spend more time predicting than training.

``converge`` trains every cell and pre-training until converged (``--until-converged``,
documentation/training.md): the iterations are only a cap, 20 minutes of estimated iteration time
(four times the longest converged cells measured; a cell stops at its plateau), with a
wall-clock cap of 40 minutes; the learning rate warms up over the same iterations as a quick
cell's, so that the warm-up does not grow with the cap. Folds 0-2.
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
    folds: tuple[int, ...] = (0,)  # the folds a grid runs when -f is not given
    until_converged: bool = False  # every run stops at its plateau; the iterations are only a cap
    warmup_seconds: float | None = None  # the warm-up's length in estimated seconds (None: the trainer's fraction)
    # a segmentation cell scores at most this many validation and test cases (an evenly spread, fixed
    # subset; None: all): a short budget's time then does not grow with a larger example
    scored_cases: int | None = None


#: fewer iterations than this per cell is the start of training, not a result: the grid warns
FEW_ITERATIONS = 200


#: the epoch count of a wall-clock budget: an upper bound the clock always reaches first
WALL_CLOCK_EPOCHS = 100_000


BUDGETS = {
    # the README's demo: two cells and one pre-training within about 9 minutes on a 2-core CPU
    "demo": Budget("demo", train_seconds=90, pretrain_seconds=80, iters_per_epoch=20, val_iters=2,
                   train_minutes=3.75, pretrain_minutes=4.0, scored_cases=60),
    # one application's grid, 3 folds, within about 45 minutes on a 2-core CPU
    "quick": Budget("quick", train_seconds=60, pretrain_seconds=80, train_minutes=3.0, pretrain_minutes=4.0,
                    folds=(0, 1, 2), scored_cases=60),
    # every cell until converged, capped at 20 minutes of estimated iterations (40 minutes of wall clock)
    "converge": Budget("converge", train_seconds=1200, pretrain_seconds=1200, train_minutes=40.0,
                       pretrain_minutes=40.0, folds=(0, 1, 2), until_converged=True, warmup_seconds=6.0),
    "full": Budget("full", train_seconds=None, pretrain_seconds=None, tta=True, folds=(0, 1, 2, 3, 4)),
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
    if budget.train_seconds is None and budget.train_minutes is None:
        return {}
    per_epoch = budget.iters_per_epoch
    hp = {"iters_per_epoch": per_epoch, "val_iters": budget.val_iters, "pretrain_iters_per_epoch": per_epoch,
          "tta": budget.tta}  # checkpoint_latest: the trainer's every 5 epochs and 5 minutes, and on an interrupt
    if budget.train_seconds is not None:
        seconds = config.estimated_iteration_seconds or 1.0
        hp["epochs"] = _epochs(budget.train_seconds, seconds, per_epoch)
        hp["pretrain_epochs"] = _epochs(budget.pretrain_seconds, seconds * pretext_relative_cost, per_epoch)
        hp["fit_schedule_to_minutes"] = False  # the minutes are a cap: a busy machine changes nothing below it
    else:
        hp["epochs"] = hp["pretrain_epochs"] = WALL_CLOCK_EPOCHS
    if budget.until_converged:
        hp["until_converged"] = hp["pretrain_until_converged"] = True
    if budget.warmup_seconds is not None and budget.train_seconds:
        hp["warmup_fraction"] = budget.warmup_seconds / budget.train_seconds
    if budget.train_minutes is not None:
        hp["max_minutes"] = budget.train_minutes
    if budget.pretrain_minutes is not None:
        hp["pretrain_max_minutes"] = budget.pretrain_minutes
    return hp
