"""The training loop, written once for every task: supervised segmentation and classification,
and every pretext task (flip, rotation, WGAN, colourisation).

What differs between tasks lives in a :class:`LoopModule` (one training step, one validation
step, its state); cross-cutting work (checkpoints, logs, plots) lives in callbacks with no-op
hooks, as in PyTorch Lightning.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

from tqdm.auto import tqdm

log = logging.getLogger(__name__)


class LoopModule(Protocol):
    monitor: str  # name of the validation metric that picks the best checkpoint (higher is better)

    def train_step(self, batch: dict, state: "LoopState") -> dict[str, float]: ...

    def validation_step(self, batch: dict) -> dict[str, Any]: ...

    def validation_end(self, outputs: list[dict[str, Any]]) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class LoopState:
    epochs: int
    iters_per_epoch: int
    epoch: int = 0  # current (0-based) epoch
    step_in_epoch: int = 0
    global_step: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    partial: dict[str, list[float]] = field(default_factory=dict)  # running sums of an unfinished epoch
    best_metric: float | None = None
    ema_metric: float | None = None
    finished: bool = False
    # wall-clock budget (``--max-minutes``): the loop's time so far (training steps and the per-epoch
    # validation, summed over resumed sessions), the steps fitted to the budget from the measured
    # speed (the learning-rate schedule ends there), and whether the budget ended the run
    max_seconds: float | None = None
    elapsed_seconds: float = 0.0
    planned_steps: int | None = None
    time_limited: bool = False
    fit_to_time: bool = True  # False: max_seconds is a hard cap; the schedule keeps epochs x iterations
    # train until converged (selfconfig.training.convergence): the rule's record, and the annealing
    # tail once it found a plateau (the learning rate falls to zero from tail_start to stop_step)
    converge: dict | None = None
    tail_start: int | None = None
    stop_step: int | None = None

    @property
    def total_steps(self) -> int:
        full = self.epochs * self.iters_per_epoch
        return min(full, self.planned_steps) if self.planned_steps else full

    def schedule_point(self) -> tuple[int, int, float]:
        """``(step, total, factor)``: the learning rate of this step is the schedule's at ``step`` of
        ``total`` times ``factor``; in an annealing tail the schedule stays where the tail began
        and ``factor`` falls linearly to zero at ``stop_step``."""
        if self.tail_start is None:
            return self.global_step, self.total_steps, 1.0
        left = max(0, self.stop_step - self.global_step)
        return self.tail_start, self.total_steps, left / max(self.stop_step - self.tail_start, 1)

    @property
    def tail_done(self) -> bool:
        return self.stop_step is not None and self.global_step >= self.stop_step

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("epochs", "iters_per_epoch", "epoch", "step_in_epoch", "global_step",
                                               "history", "partial", "best_metric", "ema_metric", "finished",
                                               "max_seconds", "elapsed_seconds", "planned_steps", "time_limited",
                                               "fit_to_time", "converge", "tail_start", "stop_step")}

    @classmethod
    def from_dict(cls, d: dict) -> "LoopState":
        return cls(**d)


class Callback:
    """No-op hooks; override what you need."""

    def on_fit_start(self, module: LoopModule, state: LoopState) -> None: ...

    def on_epoch_end(self, module: LoopModule, state: LoopState, logs: dict[str, float]) -> None: ...

    def on_step_end(self, module: LoopModule, state: LoopState) -> None:
        """After each training step inside an epoch (``state.step_in_epoch`` already counts it)."""

    def on_interrupt(self, module: LoopModule, state: LoopState) -> None: ...

    def on_exception(self, module: LoopModule, state: LoopState, error: BaseException) -> None:
        """The loop failed with ``error`` (not an interrupt); it is raised again after the hooks."""

    def on_fit_end(self, module: LoopModule, state: LoopState) -> None: ...


class _StopFlag:
    requested = False


@contextmanager
def _graceful_interrupt(flag: _StopFlag):
    """First Ctrl-C / SIGTERM: finish the current step, then stop cleanly. Second: stop now."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True
        log.warning("stop requested: finishing the current step and writing checkpoint_latest "
                    "(press Ctrl-C again to stop at once)")

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def fit(module: LoopModule, state: LoopState, train_batches: Callable[[int], Iterator[dict]],
        val_batches: Callable[[], Iterable[dict]] | None, callbacks: list[Callback] = (),
        progress: bool = True, ema: float = 0.9, desc: str = "train",
        agree: Callable[[float], float] | None = None) -> LoopState:
    """Run ``module`` from ``state`` (fresh or resumed) to ``state.epochs``.

    ``agree``: makes the processes of a distributed run agree on the time the loop took (e.g. the
    maximum over the ranks), so that a wall-clock budget stops every rank at the same step.

    ``train_batches(start)`` yields the batches with global index ``start, start+1, ...``.
    On KeyboardInterrupt the callbacks' ``on_interrupt`` runs (e.g. writes checkpoint_latest)
    before the exception propagates, so an interrupted run resumes where it stopped.
    """
    for cb in callbacks:
        cb.on_fit_start(module, state)
    if state.epoch >= state.epochs:
        state.finished = True
        return state
    stream = train_batches(state.global_step)
    flag = _StopFlag()
    try:
        with _graceful_interrupt(flag):
            _run_epochs(module, state, stream, val_batches, callbacks, progress, ema, desc, flag, agree)
    except KeyboardInterrupt:
        for cb in callbacks:
            cb.on_interrupt(module, state)
        raise
    except Exception as error:
        if not flag.requested:
            for cb in callbacks:
                try:
                    cb.on_exception(module, state, error)
                except Exception:  # noqa: BLE001 - the loop's own error is the one to report
                    log.exception("%s.on_exception failed", type(cb).__name__)
            raise
        # a stop was asked for and the signal also ended the loader's workers: the failure came from
        # fetching the next batch, so the state is that of the last finished step; save it
        log.warning("the data loader stopped with the stop request; saving the state of the last finished step")
        for cb in callbacks:
            cb.on_interrupt(module, state)
        raise KeyboardInterrupt from None
    finally:
        close = getattr(stream, "_shutdown_workers", None)
        if close is not None:
            close()
    state.finished = True
    for cb in callbacks:
        cb.on_fit_end(module, state)
    return state


class TimeBudget:
    """Fits the run to ``state.max_seconds`` of loop time: after the first steps of a session, and
    again after every epoch, the steps that still fit are estimated from the measured speed
    (``state.planned_steps``; the learning-rate schedule decays to zero there), and the loop stops
    at the end of the step that reaches the planned count or passes the time. The estimate includes
    the per-epoch validation once an epoch has been seen."""

    calibration_steps = 5  # steps of a session before the first estimate (the first one is warm-up)

    def __init__(self, state: LoopState, agree: Callable[[float], float] | None = None):
        self.state = state
        self.agree = agree
        self.session_steps = 0
        self.first_step_done_at = 0.0  # elapsed seconds when this session's first (warm-up) step ended
        self.mark = time.perf_counter()

    @property
    def active(self) -> bool:
        return bool(self.state.max_seconds)

    def tick(self) -> None:
        """Add the time since the last tick to the loop's elapsed time."""
        now = time.perf_counter()
        self.state.elapsed_seconds += now - self.mark
        if self.agree is not None and self.active:
            self.state.elapsed_seconds = self.agree(self.state.elapsed_seconds)
        self.mark = now

    def after_step(self) -> bool:
        """Account for one training step (and the wait for its batch); True when the budget is used up."""
        self.tick()
        self.session_steps += 1
        if self.session_steps == 1:
            self.first_step_done_at = self.state.elapsed_seconds
        if not self.active:
            return False
        if self.session_steps == self.calibration_steps:
            self._fit((self.state.elapsed_seconds - self.first_step_done_at) / (self.session_steps - 1))
        return self.used_up()

    def after_epoch(self) -> None:
        st = self.state
        if self.active and st.global_step > 0 and st.epoch > 0:
            # everything the loop did so far, validation included, per training step
            self._fit(st.elapsed_seconds / st.global_step)

    def used_up(self) -> bool:
        st = self.state
        if not self.active:
            return False
        return st.elapsed_seconds >= st.max_seconds or (st.planned_steps is not None
                                                        and st.global_step >= st.planned_steps)

    def _fit(self, seconds_per_step: float) -> None:
        st = self.state
        if not st.fit_to_time:
            return  # a hard cap: the iterations decide, the clock only stops a run that cannot finish
        remaining = max(0.0, st.max_seconds - st.elapsed_seconds)
        planned = st.global_step + max(1, int(remaining / max(seconds_per_step, 1e-6)))
        st.planned_steps = min(planned, st.epochs * st.iters_per_epoch)
        log.debug("time budget: %.2f s per step, %d step(s) planned in %.1f min", seconds_per_step,
                  st.planned_steps, st.max_seconds / 60)


def _run_epochs(module, state, stream, val_batches, callbacks, progress, ema, desc, flag, agree=None) -> None:
    budget = TimeBudget(state, agree)
    while state.epoch < state.epochs:
        bar = tqdm(total=state.iters_per_epoch, initial=state.step_in_epoch, disable=not progress, leave=False,
                   desc=f"{desc} epoch {state.epoch + 1}/{state.epochs}")
        t0 = time.perf_counter()
        ended = budget.used_up() or state.tail_done
        while state.step_in_epoch < state.iters_per_epoch and not ended:
            batch = next(stream)
            logs = module.train_step(batch, state)
            for k, v in logs.items():
                state.partial.setdefault(k, []).append(float(v))
            state.step_in_epoch += 1
            state.global_step += 1
            ended = budget.after_step() or state.tail_done
            bar.update()
            if "loss" in logs:
                bar.set_postfix(loss=f"{logs['loss']:.4f}")
            if flag.requested:
                bar.close()
                raise KeyboardInterrupt
            if state.step_in_epoch < state.iters_per_epoch:
                for cb in callbacks:
                    cb.on_step_end(module, state)
        bar.close()
        epoch_logs = {f"train_{k}": float(sum(v) / max(len(v), 1)) for k, v in state.partial.items()}
        epoch_logs["epoch_seconds"] = time.perf_counter() - t0
        if val_batches is not None:
            outputs = [module.validation_step(b) for b in val_batches()]
            epoch_logs.update(module.validation_end(outputs))
        budget.tick()
        _end_epoch(module, state, epoch_logs, ema)
        if ended and state.global_step < state.epochs * state.iters_per_epoch:
            _stop_early(state)
        elif not ended:
            budget.after_epoch()
        for cb in callbacks:
            cb.on_epoch_end(module, state, epoch_logs)


def _end_epoch(module, state: LoopState, epoch_logs: dict[str, float], ema: float) -> None:
    """Smooth the monitored metric, add the epoch to the history, start the next epoch."""
    metric = epoch_logs.get(module.monitor)
    if metric is not None and not math.isnan(metric):
        state.ema_metric = metric if state.ema_metric is None else ema * state.ema_metric + (1 - ema) * metric
        epoch_logs[f"ema_{module.monitor}"] = state.ema_metric
    for k, v in epoch_logs.items():
        state.history.setdefault(k, []).append(float(v))
    state.epoch += 1
    state.step_in_epoch = 0
    state.partial = {}


def _stop_early(state: LoopState) -> None:
    """The annealing tail of a converged run, or the wall-clock budget, ends the run with this
    (possibly shorter) epoch."""
    state.epochs = state.epoch
    if state.tail_done:
        log.info("annealing tail done after %d iteration(s): stopping", state.global_step)
        return
    state.time_limited = True
    log.info("time budget of %.1f min reached after %d iteration(s) (%.1f min): stopping", state.max_seconds / 60,
             state.global_step, state.elapsed_seconds / 60)
