"""--max-minutes: the loop stops at the end of the step that passes the budget, the schedule is
fitted to it, the final checkpoint is written and the run records that time limited it."""

from __future__ import annotations

import time

import pytest
import torch

from selfconfig.training.loop import Callback, LoopState, TimeBudget, fit


class _SlowModule:
    """A loop module whose step takes ``seconds`` and records the learning rate it was given."""

    monitor = "val_metric"

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.lrs: list[float] = []
        self.w = torch.zeros(1)

    def train_step(self, batch, state):
        time.sleep(self.seconds)
        lr = 1.0 * (1 - min(state.global_step, state.total_steps - 1) / state.total_steps)
        self.lrs.append(lr)
        return {"loss": 1.0, "lr": lr}

    def validation_step(self, batch):
        return {}

    def validation_end(self, outputs):
        return {"val_metric": 0.5}

    def state_dict(self):
        return {"w": self.w}

    def load_state_dict(self, d):
        self.w = d["w"]


def _stream(start):
    i = start
    while True:
        yield {"i": i}
        i += 1


class _Ends(Callback):
    def __init__(self):
        self.ended = False

    def on_fit_end(self, module, state):
        self.ended = True


def test_max_minutes_stops_the_loop_and_fits_the_schedule():
    module = _SlowModule(0.02)
    state = LoopState(epochs=100, iters_per_epoch=10, max_seconds=0.6)
    ends = _Ends()
    t0 = time.perf_counter()
    fit(module, state, _stream, lambda: [{}], [ends], progress=False)
    took = time.perf_counter() - t0
    assert ends.ended and state.finished and state.time_limited
    assert took < 0.6 + 0.5  # stopped at the step that passed the budget (plus one epoch end)
    assert 10 <= state.global_step < 100 * 10
    assert state.epochs == state.epoch  # the (shorter) last epoch is the last one
    # the learning rate decayed to (nearly) zero at the last step: the schedule was fitted
    assert module.lrs[-1] < 0.25 * module.lrs[0]
    assert state.elapsed_seconds >= 0.5


def test_a_run_that_fits_its_cap_is_not_time_limited():
    """An iteration budget with a generous wall-clock cap (the demo's and quick's) trains all its
    iterations and records that the clock did not cut it short."""
    module = _SlowModule(0.0)
    state = LoopState(epochs=3, iters_per_epoch=4, max_seconds=60.0)
    fit(module, state, _stream, lambda: [{}], [], progress=False)
    assert state.global_step == 12 and state.epochs == 3 and state.finished and not state.time_limited
    assert module.lrs[-1] < module.lrs[0]  # the schedule decays over the 12 steps


def test_a_hard_cap_keeps_the_iteration_schedule():
    """fit_to_time=False (the demo's and quick's cap): a slow spell never re-fits the schedule, so a
    run that fits trains exactly its iterations; one that cannot fit stops at the cap, undecayed."""
    module = _SlowModule(0.02)
    state = LoopState(epochs=100, iters_per_epoch=10, max_seconds=0.6, fit_to_time=False)
    fit(module, state, _stream, lambda: [{}], [], progress=False)
    assert state.time_limited and state.planned_steps is None and 10 <= state.global_step < 1000
    assert module.lrs[-1] > 0.9 * module.lrs[0]  # the schedule is the 1000 iterations', cut short
    fits = LoopState(epochs=3, iters_per_epoch=4, max_seconds=60.0, fit_to_time=False)
    TimeBudget(fits)._fit(100.0)  # a slow spell: nothing is re-planned
    assert fits.planned_steps is None


def test_without_a_budget_nothing_changes():
    module = _SlowModule(0.0)
    state = LoopState(epochs=3, iters_per_epoch=4)
    fit(module, state, _stream, None, [], progress=False)
    assert state.global_step == 12 and not state.time_limited and state.planned_steps is None


def test_budget_state_round_trips_for_resume():
    state = LoopState(epochs=5, iters_per_epoch=2, max_seconds=60.0, elapsed_seconds=12.5, planned_steps=7)
    again = LoopState.from_dict(state.to_dict())
    assert again.max_seconds == 60.0 and again.elapsed_seconds == 12.5 and again.total_steps == 7
    # a checkpoint written before the budget existed still loads
    old = {k: v for k, v in state.to_dict().items()
           if k not in ("max_seconds", "elapsed_seconds", "planned_steps", "time_limited")}
    assert LoopState.from_dict(old).total_steps == 10


def test_planned_steps_never_exceed_the_epochs():
    state = LoopState(epochs=2, iters_per_epoch=3, max_seconds=3600.0)
    b = TimeBudget(state)
    b._fit(0.001)
    assert state.planned_steps == 6


@pytest.mark.slow
def test_train_run_with_max_minutes_records_it(planned, roots, fast_hp):
    from selfconfig.training.api import train

    planned("TB", task="segmentation", dim=3)
    hp = dict(fast_hp, epochs=200, iters_per_epoch=5, max_minutes=0.05)
    res = train("Scratch", "TB", fold=0, fraction=1.0, hyperparameters=hp, roots=roots, progress=False)
    ckpt = torch.load(res.run_dir / "checkpoint_final.pt", weights_only=True, map_location="cpu")
    loop = ckpt["loop"]
    assert loop["time_limited"] and loop["global_step"] < 200 * 5 and loop["finished"]
    info = __import__("json").loads((res.run_dir / "training_time.json").read_text())
    assert info["time_limited"] and info["iterations"] == loop["global_step"]
