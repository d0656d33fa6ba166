"""Train until converged (``--until-converged``): the run is scored at regular intervals, keeps the
checkpoint of its best score, and once the score has stopped improving it anneals the learning
rate to zero over a short tail and stops.

The rule, with its parameters in :class:`~selfconfig.training.config.TrainingConfig`:

- **score**: a supervised run scores its validation cases on whole scans (sliding window at the
  plan's resolution, no mirroring; a classifier: its metric on the whole validation images),
  through a scorer handed down by the layer above (:mod:`selfconfig.inference.whole_scan`); a
  pre-training scores its held-out pretext accuracy (or negated error), the epoch's monitor.
- **interval**: the first score after the first epoch; then every ``interval`` epochs, planned
  once from the measured speed (and kept in the checkpoint, so that a resumed run scores at the
  same steps): ``converge_interval`` of the run's horizon (its epochs cap, or the iterations its
  ``--max-minutes`` fit), at least one epoch, and long enough that scoring takes at most
  :data:`SCORING_SHARE` of the time.
- **plateau**: ``converge_patience`` scores in a row without a gain of more than
  ``converge_margin`` over the best score before them, once the run has **left its start**: the
  plateau's level (the mean of the scores since the last gain, that one included) stands above the
  first score (taken after the first epoch) by more than ``converge_signal`` times their scatter (a
  standard deviation from successive differences, so that a slow trend is not scatter; 0 turns the
  check off). A run whose scores still scatter around where it started (a small, noisy validation
  set; a network that has not begun to learn) has no plateau yet and trains on, up to its caps.
- **tail**: from the plateau the learning rate falls linearly from its value there to zero over
  ``converge_tail`` of the iterations trained so far; then the run stops (a last score is taken).
  ``--epochs`` and ``--max-minutes`` stay caps: a run that keeps improving ends there.

Everything the rule decided lives in ``LoopState.converge`` (and the tail in
``LoopState.tail_start`` / ``stop_step``), saved in every checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

from selfconfig.training.config import TrainingConfig
from selfconfig.training.loop import Callback, LoopState

log = logging.getLogger(__name__)

#: scoring may take at most this share of the training time (the planned interval grows to keep it)
SCORING_SHARE = 0.1

#: ``score(module, state, logs) -> float | None`` (higher is better)
Score = Callable[[object, LoopState, dict], "float | None"]


@dataclass(frozen=True)
class ConvergenceRule:
    patience: int
    margin: float
    tail: float
    interval: float
    metric: str  # what the score is called in the log, e.g. "whole-scan val_dice"
    # a plateau needs its level - the first score > signal x its scatter (has_left_start)
    signal: float = TrainingConfig.converge_signal

    @classmethod
    def of(cls, hp, pretext: bool, metric: str) -> "ConvergenceRule | None":
        """The rule of a run with hyperparameters ``hp``; None when it trains its fixed schedule."""
        if not (hp.pretrain_until_converged if pretext else hp.until_converged):
            return None
        return cls(hp.converge_patience, hp.converge_margin, hp.converge_tail, hp.converge_interval, metric,
                   hp.converge_signal)


def new_record() -> dict:
    """The convergence record kept in ``LoopState.converge``."""
    return {"curve": [], "best": None, "best_epoch": None, "reference": None, "reference_index": None, "since": 0,
            "interval": None, "next_epoch": 1, "plateau_epoch": None, "plateau_step": None, "stop_reason": None,
            "held": False}


class ConvergenceCallback(Callback):
    """Scores the run at its planned epochs, keeps the best (``on_best``: the checkpoint callback
    copies the weights), decides the plateau and starts the annealing tail."""

    def __init__(self, rule: ConvergenceRule, score: Score, on_best: Callable[[object, LoopState], None]):
        self.rule = rule
        self.score = score
        self.on_best = on_best

    def on_fit_start(self, module, state: LoopState) -> None:
        if state.converge is None:
            state.converge = new_record()
        state.converge.setdefault("cap_epochs", state.epochs)

    def on_epoch_end(self, module, state: LoopState, logs: dict[str, float]) -> None:
        rec = state.converge
        last = state.epoch >= state.epochs  # the cap, the time budget or the tail ended the run
        if not last and (state.tail_start is not None or state.epoch < rec["next_epoch"]):
            return
        t0 = time.perf_counter()
        value = self.score(module, state, logs)
        seconds = time.perf_counter() - t0
        if value is None or math.isnan(value):
            log.warning("%s could not be scored at epoch %d", self.rule.metric, state.epoch)
        else:
            self._record(module, state, float(value))
        if rec["interval"] is None:
            rec["interval"] = plan_interval(self.rule, state, logs.get("epoch_seconds", 0.0), seconds)
            log.info("scoring %s every %d epoch(s) (%.1f s per scoring)", self.rule.metric, rec["interval"], seconds)
        rec["next_epoch"] = state.epoch + rec["interval"]
        if last:
            rec["stop_reason"] = stop_reason(state)
            log.info("stopped: %s", describe_stop(rec, self.rule))
        elif rec["since"] >= self.rule.patience and state.tail_start is None:
            if has_left_start(self.rule, rec):
                start_tail(self.rule, state)
            elif not rec.get("held"):
                rec["held"] = True
                log.info("no plateau yet: the %s since the last gain (best %.4f) are within %g times their "
                         "scatter of the first score (%.4f); training on", self.rule.metric, rec["best"],
                         self.rule.signal, rec["curve"][0][2])

    def _record(self, module, state: LoopState, value: float) -> None:
        rec = state.converge
        rec["curve"].append([state.epoch, state.global_step, value])
        if rec["best"] is None or value > rec["best"]:
            rec["best"], rec["best_epoch"] = value, state.epoch
            self.on_best(module, state)
        if rec["reference"] is None or value > rec["reference"] + self.rule.margin:
            rec["reference"], rec["since"], rec["reference_index"] = value, 0, len(rec["curve"]) - 1
        else:
            rec["since"] += 1
        log.info("%s %.4f at epoch %d (best %.4f at epoch %d; %d of %d score(s) without a gain above %g)",
                 self.rule.metric, value, state.epoch, rec["best"], rec["best_epoch"], rec["since"],
                 self.rule.patience, self.rule.margin)


def has_left_start(rule: ConvergenceRule, rec: dict) -> bool:
    """Whether the plateau's level (the mean of the scores since the last gain, that one included)
    stands above the first score by more than ``rule.signal`` times their scatter: a plateau of a
    run that has learned, not the scatter of one that has not. ``signal`` 0 turns the check off."""
    if rule.signal <= 0:
        return True
    scores = [v for _, _, v in rec["curve"]]
    start = rec.get("reference_index")
    recent = scores[start if start is not None else -(rule.patience + 1):]
    if len(recent) < 2:
        return True
    # the scatter from successive differences (von Neumann): a slow trend in the window is not noise
    sd = math.sqrt(sum((b - a) ** 2 for a, b in zip(recent, recent[1:])) / (2 * (len(recent) - 1)))
    # the plateau's level, not its best: the best of many noisy scores climbs with their number
    return sum(recent) / len(recent) - scores[0] > rule.signal * sd


def plan_interval(rule: ConvergenceRule, state: LoopState, epoch_seconds: float, score_seconds: float) -> int:
    """Epochs between two scorings: ``rule.interval`` of the run's horizon, at least one epoch,
    and enough epochs that scoring takes at most :data:`SCORING_SHARE` of the time."""
    horizon_epochs = state.total_steps / max(state.iters_per_epoch, 1)
    by_horizon = int(round(rule.interval * horizon_epochs))
    by_cost = math.ceil(score_seconds / (SCORING_SHARE * epoch_seconds)) if epoch_seconds > 0 else 1
    return max(1, by_horizon, by_cost)


def start_tail(rule: ConvergenceRule, state: LoopState) -> None:
    """The plateau: anneal the learning rate to zero over ``rule.tail`` of the iterations trained,
    within the cap, then stop."""
    rec = state.converge
    cap = state.epochs * state.iters_per_epoch
    steps = max(1, min(math.ceil(rule.tail * state.global_step), cap - state.global_step))
    rec["plateau_epoch"], rec["plateau_step"] = state.epoch, state.global_step
    state.tail_start, state.stop_step = state.global_step, state.global_step + steps
    log.info("plateau at epoch %d (iteration %d): no gain above %g in %d score(s) since %.4f; annealing the "
             "learning rate to zero over %d iteration(s) (%g of those trained), then stopping", state.epoch,
             state.global_step, rule.margin, rule.patience, rec["reference"], steps, rule.tail)


def stop_reason(state: LoopState) -> str:
    if state.stop_step is not None and state.global_step >= state.stop_step:
        return "converged"
    return "time budget" if state.time_limited else "epochs cap"


def describe_stop(rec: dict, rule: ConvergenceRule) -> str:
    """One line: why the run stopped, its best score and where it plateaued."""
    best = f"best {rule.metric} {rec['best']:.4f} at epoch {rec['best_epoch']}" if rec["best"] is not None else \
        f"no {rule.metric}"
    if rec["stop_reason"] == "converged":
        return (f"converged (plateau at epoch {rec['plateau_epoch']}, iteration {rec['plateau_step']}; annealing "
                f"tail done); {best}")
    held = " (its scores had not left their start)" if rec.get("held") and rec["plateau_epoch"] is None else ""
    return f"the {rec['stop_reason']} ended the run before a plateau{held}; {best}"


def summary(state: LoopState) -> dict | None:
    """What ``training_time.json`` records of the rule: the curve, the best, the plateau, the stop."""
    rec = state.converge
    if rec is None:
        return None
    return {"stop_reason": rec["stop_reason"], "best": rec["best"], "best_epoch": rec["best_epoch"],
            "plateau_epoch": rec["plateau_epoch"], "plateau_iteration": rec["plateau_step"],
            "tail_iterations": (state.stop_step - state.tail_start) if state.tail_start is not None else None,
            "interval_epochs": rec["interval"], "held_before_plateau": bool(rec.get("held")),
            "curve": [{"epoch": e, "iteration": s, "score": v} for e, s, v in rec["curve"]]}
