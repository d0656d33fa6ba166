"""The experiment's time budgets: seconds -> epochs, and a pretext iteration priced by the cost model."""

from __future__ import annotations

from selfconfig.experiments.budgets import budget_hyperparameters, get_budget, pretext_cost
from selfconfig.networks.cost import training_seconds_per_sample
from selfconfig.pretext.color import ColorizationPretext
from selfconfig.pretext.flip import FlipPrediction
from selfconfig.pretext.wgan import WGANPretext


def _config(planned, name="BUD", task="segmentation"):
    res = planned(name, task=task, dim=3, configurations=["3d"])
    return res.plans, res.plans.configuration("3d")


def test_epochs_are_rounded_to_the_nearest_not_up(planned):
    _, cfg = _config(planned)
    quick = get_budget("quick")
    per_epoch_seconds = quick.train_seconds / quick.iters_per_epoch
    cfg.estimated_iteration_seconds = per_epoch_seconds / 4.2  # 4.2 epochs of budget -> 4, not 5
    assert budget_hyperparameters(quick, cfg)["epochs"] == 4
    cfg.estimated_iteration_seconds = per_epoch_seconds / 4.6
    assert budget_hyperparameters(quick, cfg)["epochs"] == 5
    cfg.estimated_iteration_seconds = 100.0  # far over budget: still at least 2 epochs
    assert budget_hyperparameters(quick, cfg)["epochs"] == 2
    assert budget_hyperparameters(get_budget("full"), cfg) == {}


def test_pretext_cost_follows_the_network_it_trains(planned):
    plans, cfg = _config(planned)
    seg = training_seconds_per_sample(cfg.network, cfg.patch_size, "segmentation", 10.0)
    cls = training_seconds_per_sample(cfg.network, cfg.patch_size, "classification", 10.0)
    assert cls < seg
    # flip trains the encoder + head: against a U-Net target it is that fraction of an iteration,
    assert abs(pretext_cost(FlipPrediction, cfg, "segmentation", plans.budget) - cls / seg) < 1e-9
    # against a classification target (the encoder itself) as costly as a supervised iteration
    assert abs(pretext_cost(FlipPrediction, cfg, "classification", plans.budget) - 1.0) < 1e-9
    # colourisation trains the whole U-Net (and a discriminator)
    assert pretext_cost(ColorizationPretext, cfg, "segmentation", plans.budget) == ColorizationPretext.cost_factor
    assert pretext_cost(WGANPretext, cfg, "classification", None) == WGANPretext.cost_factor
    assert pretext_cost(None, cfg, "segmentation", plans.budget) == 1.0
    # more pre-training epochs for a cheaper pretext iteration, within the same seconds
    quick = get_budget("quick")
    cfg.estimated_iteration_seconds = 0.5
    cheap = budget_hyperparameters(quick, cfg, pretext_cost(FlipPrediction, cfg, "segmentation", plans.budget))
    dear = budget_hyperparameters(quick, cfg, pretext_cost(ColorizationPretext, cfg, "segmentation", plans.budget))
    assert cheap["pretrain_epochs"] > dear["pretrain_epochs"]


def test_a_pretext_task_that_still_sets_relative_cost_is_told_and_a_bad_cost_network_refused():
    import pytest

    from selfconfig.pretext.base import PretextTask

    with pytest.warns(FutureWarning, match="relative_cost is no longer read"):
        class OldStyle(PretextTask):  # noqa: F841
            relative_cost = 0.4
    with pytest.raises(ValueError, match="cost_network must be"):
        class Typo(PretextTask):  # noqa: F841
            cost_network = "segmenation"


def test_wall_clock_budgets_give_max_minutes(planned):
    from selfconfig.experiments.budgets import WALL_CLOCK_EPOCHS, Budget

    _, cfg = _config(planned, "BUDW")
    b = Budget("clock", None, None, iters_per_epoch=20, val_iters=2, train_minutes=2.5, pretrain_minutes=1.5)
    hp = budget_hyperparameters(b, cfg)
    assert hp["max_minutes"] == 2.5 and hp["pretrain_max_minutes"] == 1.5
    assert hp["epochs"] == hp["pretrain_epochs"] == WALL_CLOCK_EPOCHS and hp["iters_per_epoch"] == 20


def test_iteration_budgets_are_capped_by_the_clock_and_name_their_folds(planned):
    """demo and quick train a fixed number of iterations (the same on a busy machine as on an
    idle one), with a wall-clock cap that only binds on a machine much slower than its plan."""
    _, cfg = _config(planned, "BUDC")
    cfg.estimated_iteration_seconds = 0.2
    for name in ("demo", "quick"):
        b = get_budget(name)
        hp = budget_hyperparameters(b, cfg)
        epochs = int(b.train_seconds / 0.2 / b.iters_per_epoch + 0.5)  # rounded half up
        assert hp["epochs"] * hp["iters_per_epoch"] == epochs * b.iters_per_epoch
        assert hp["max_minutes"] == b.train_minutes and hp["pretrain_max_minutes"] == b.pretrain_minutes
        assert hp["fit_schedule_to_minutes"] is False  # a cap, not a budget the schedule is fitted to
        # the cap is well above the estimate: it is a bound, not the budget
        assert b.train_minutes * 60 >= 1.9 * b.train_seconds and b.pretrain_minutes * 60 >= 1.9 * b.pretrain_seconds
    assert get_budget("quick").folds == (0, 1, 2) and get_budget("demo").folds == (0,)
    assert len(get_budget("full").folds) == 5


def test_the_clock_only_shortens_a_run_that_would_not_fit():
    from selfconfig.training.loop import LoopState, TimeBudget

    fits = LoopState(epochs=4, iters_per_epoch=25, max_seconds=60.0)
    TimeBudget(fits)._fit(0.1)  # 100 steps of 0.1 s fit in 60 s: the iterations decide
    assert fits.planned_steps == 100
    slow = LoopState(epochs=4, iters_per_epoch=25, max_seconds=6.0)
    TimeBudget(slow)._fit(0.1)  # only 60 fit: the clock decides, and the schedule decays there
    assert slow.planned_steps == 60


def test_the_converge_budget_trains_until_converged_with_a_cap_and_a_quick_cells_warm_up(planned):
    _, cfg = _config(planned)
    cfg.estimated_iteration_seconds = 0.25
    converge, quick = get_budget("converge"), get_budget("quick")
    hp = budget_hyperparameters(converge, cfg)
    assert hp["until_converged"] and hp["pretrain_until_converged"] and converge.folds == (0, 1, 2)
    assert hp["epochs"] * hp["iters_per_epoch"] == 4800  # the cap: 1200 s of 0.25-s iterations
    warmup = hp["warmup_fraction"] * hp["epochs"] * hp["iters_per_epoch"]
    q = budget_hyperparameters(quick, cfg)
    assert round(warmup) == 24 and abs(warmup - 0.1 * q["epochs"] * q["iters_per_epoch"]) < 2  # a quick cell's
    assert not q.get("until_converged")


def test_short_budgets_score_a_fixed_evenly_spread_subset_of_cases():
    from selfconfig.experiments.cells import scored_subset

    ids = [f"c{i:03d}" for i in range(300)]
    sub = scored_subset(list(reversed(ids)), 60)
    assert len(sub) == 60 == len(set(sub)) and sub[0] == "c000" and sub[1] == "c005" and sub[-1] == "c295"
    assert scored_subset(ids[:40], 60) == ids[:40] and scored_subset(ids, None) == ids
    assert get_budget("quick").scored_cases == get_budget("demo").scored_cases == 60
    assert get_budget("converge").scored_cases is None and get_budget("full").scored_cases is None
