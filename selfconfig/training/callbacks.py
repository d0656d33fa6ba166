"""Cross-cutting work of a run: checkpoints, epoch log lines, the progress plot."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from selfconfig.checkpoint import save_checkpoint
from selfconfig.training.loop import Callback, LoopState
from selfconfig.utils import atomic_savefig

log = logging.getLogger(__name__)


def rng_state(extra: dict | None = None) -> dict[str, Any]:
    d = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        d["cuda"] = torch.cuda.get_rng_state_all()
    d.update(extra or {})
    return d


def restore_rng_state(d: dict[str, Any]) -> None:
    if "torch" in d:
        torch.set_rng_state(d["torch"])
    if "cuda" in d and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(d["cuda"])


def _cpu_copy(obj: Any) -> Any:
    """``obj`` with every tensor copied to the CPU and every container copied (a snapshot of live state)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu_copy(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_cpu_copy(v) for v in obj)
    return obj


class CheckpointCallback(Callback):
    """``checkpoint_latest.pt`` every few epochs, whenever ``minutes`` of wall time passed since
    the last write (also in the middle of an epoch: a kill -9 on a slow CPU loses minutes, not
    epochs) and on interrupt; ``checkpoint_best.pt`` for the epoch with the best smoothed
    validation metric, ``checkpoint_final.pt`` at the end. All atomic.

    The best epoch is kept as a copy in memory (tens of milliseconds) and written just before the
    next ``checkpoint_latest``, on an interrupt, on a failure of the loop and at the end: in short
    CPU epochs the metric improves nearly every epoch, and writing each improvement (0.3 s for a
    60 MB checkpoint on a 2-core machine) cost more than the training it interrupted. A kill -9
    loses the improvements since the last ``checkpoint_latest``, as it loses those epochs.

    ``ema_best=False`` (a run trained until converged): the best is chosen by another callback,
    which calls :meth:`keep_best` (:mod:`selfconfig.training.convergence`: the best whole-scan score).
    """

    def __init__(self, folder: Path, meta: Callable[[], dict], every: int = 5, prefix: str = "checkpoint",
                 minutes: float | None = 5.0, ema_best: bool = True):
        self.folder = Path(folder)
        self.meta = meta
        self.every = max(1, int(every))
        self.prefix = prefix
        self.seconds = float(minutes) * 60 if minutes else None
        self.last_write = time.monotonic()
        self._pending_best: dict | None = None  # the best epoch's payload, not yet written
        self.ema_best = ema_best

    def _due(self) -> bool:
        return self.seconds is not None and time.monotonic() - self.last_write >= self.seconds

    def on_fit_start(self, module, state: LoopState) -> None:
        self.last_write = time.monotonic()

    def on_step_end(self, module, state: LoopState) -> None:
        if self._due():
            self.save("latest", module, state)
            log.info("checkpoint_latest written at epoch %d step %d (%.0f minutes since the last)",
                     state.epoch + 1, state.step_in_epoch, self.seconds / 60)

    def path(self, kind: str) -> Path:
        return self.folder / f"{self.prefix}_{kind}.pt"

    def _payload(self, module, state: LoopState) -> dict:
        return {**self.meta(), "module": module.state_dict(), "loop": state.to_dict(), "rng": rng_state()}

    def save(self, kind: str, module, state: LoopState) -> Path:
        if kind in ("latest", "final"):
            self.write_pending_best()
        p = self.path(kind)
        save_checkpoint(p, self._payload(module, state))
        if kind == "latest":
            self.last_write = time.monotonic()
        return p

    def write_pending_best(self) -> None:
        """Write the best epoch kept in memory, if there is one not yet on disk."""
        if self._pending_best is not None:
            save_checkpoint(self.path("best"), self._pending_best)
            self._pending_best = None

    def keep_best(self, module, state: LoopState) -> None:
        """This moment is the best so far: copy it, to be written with the next checkpoint."""
        self._pending_best = _cpu_copy(self._payload(module, state))

    def on_epoch_end(self, module, state: LoopState, logs: dict[str, float]) -> None:
        ema = state.ema_metric
        if self.ema_best and ema is not None and (state.best_metric is None or ema > state.best_metric):
            state.best_metric = ema
            self.keep_best(module, state)
            log.info("new best %s (smoothed): %.4f", module.monitor, ema)
        if (state.epoch % self.every == 0 or self._due()) and state.epoch < state.epochs:
            self.save("latest", module, state)

    def on_interrupt(self, module, state: LoopState) -> None:
        p = self.save("latest", module, state)
        log.warning("interrupted at epoch %d step %d; state saved to %s (resume with --continue)",
                    state.epoch + 1, state.step_in_epoch, p)

    def on_exception(self, module, state: LoopState, error: BaseException) -> None:
        self.write_pending_best()  # the best epoch's weights outlive a failed run, as they did when written at once

    def on_fit_end(self, module, state: LoopState) -> None:
        self.save("final", module, state)
        latest = self.path("latest")
        if latest.exists():
            latest.unlink()


class EpochLogger(Callback):
    def __init__(self, name: str = "train"):
        self.name = name

    def on_epoch_end(self, module, state: LoopState, logs: dict[str, float]) -> None:
        shown = {k: v for k, v in logs.items() if not k.startswith("val_dice_") and k != "train_lr"}
        parts = [f"{k}={v:.4f}" for k, v in shown.items() if isinstance(v, float) and not math.isnan(v)]
        log.info("%s epoch %d/%d: %s", self.name, state.epoch, state.epochs, " ".join(parts))


def plot_progress(history: dict[str, list[float]], path: Path, title: str = "", metric: str | None = None,
                  converge: dict | None = None) -> None:
    """Loss curves (left) and the validation metric per epoch (right), written atomically."""
    import matplotlib.pyplot as plt

    fig = progress_figure(history, title, metric, converge)
    atomic_savefig(fig, Path(path), dpi=100)
    plt.close(fig)


def progress_figure(history: dict[str, list[float]], title: str = "", metric: str | None = None,
                    converge: dict | None = None):
    """The progress figure as a matplotlib figure (the caller closes it): the PNG of
    :func:`plot_progress` and the experiment trackers draw the same one. ``converge`` (a run
    trained until converged, ``LoopState.converge``): its scores, plateau and stop on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    loss_keys = [k for k in history if k.endswith("loss") and (k.startswith("train_") or k.startswith("val_"))]
    metric_keys = [k for k in history if metric and (k == metric or k == f"ema_{metric}")]
    metric_keys += [k for k in history if k.startswith("train_") and k.endswith("accuracy")]
    metric_keys += [k for k in history if k.startswith("val_") and k.endswith("accuracy") and k not in metric_keys]
    for ax, keys, what in ((axes[0], loss_keys, "loss"), (axes[1], metric_keys, "metric")):
        for k in keys:
            ax.plot(range(1, len(history[k]) + 1), history[k], label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    if converge:
        _draw_convergence(axes[1], converge)
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _draw_convergence(ax, rec: dict) -> None:
    """The scores of a run trained until converged, its plateau and why it stopped."""
    if rec.get("curve"):
        epochs, _, scores = zip(*rec["curve"])
        ax.plot(epochs, scores, "o-", color="black", label="score (whole scans)")
    if rec.get("plateau_epoch"):
        ax.axvline(rec["plateau_epoch"], color="red", ls="--", label=f"plateau (epoch {rec['plateau_epoch']})")
    if rec.get("stop_reason"):
        ax.set_title(f"stopped: {rec['stop_reason']}", fontsize=9)


class ProgressPlot(Callback):
    """``progress.png``: drawn after the first epoch, then after an epoch once ``every_seconds`` of
    wall time have passed since the last drawing, and always at the end of the run and on an
    interrupt. A drawing costs about 0.6 s on a 2-core CPU (documentation/benchmarks.md); once per
    epoch, with the CPU's short epochs (10-50 iterations of a few tenths of a second), that was
    4-20 % of the training time. While the run goes on the figure is at most ``every_seconds``
    behind the log."""

    def __init__(self, path: Path, title: str = "", every_seconds: float = 30.0):
        self.path = Path(path)
        self.title = title
        self.every_seconds = float(every_seconds)
        self._last: float | None = None  # time.monotonic() of the last drawing
        self._drawn_epochs = -1  # the number of epochs the file shows

    def _draw(self, module, state: LoopState) -> None:
        plot_progress(state.history, self.path, self.title, getattr(module, "monitor", None), converge=state.converge)
        self._last = time.monotonic()
        self._drawn_epochs = state.epoch

    def on_epoch_end(self, module, state: LoopState, logs: dict[str, float]) -> None:
        if self._last is None or time.monotonic() - self._last >= self.every_seconds:
            self._draw(module, state)

    def _catch_up(self, module, state: LoopState) -> None:
        if state.history and self._drawn_epochs != state.epoch:
            self._draw(module, state)

    def on_interrupt(self, module, state: LoopState) -> None:
        self._catch_up(module, state)

    def on_fit_end(self, module, state: LoopState) -> None:
        self._catch_up(module, state)


class TimeBudgetReport(Callback):
    """Writes ``training_time.json`` at the end of a run that had a wall-clock budget
    (``--max-minutes``) or trained until converged: whether the budget ended it, after how many
    iterations and minutes; and the convergence rule's scores, plateau and stop reason."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_fit_end(self, module, state: LoopState) -> None:
        if not state.max_seconds and state.converge is None:
            return
        from selfconfig.training.convergence import summary
        from selfconfig.utils import write_json

        info = {"max_minutes": round(state.max_seconds / 60, 3) if state.max_seconds else None,
                "time_limited": bool(state.time_limited),
                "iterations": int(state.global_step), "minutes": round(state.elapsed_seconds / 60, 3),
                "epochs": int(state.epoch), "iterations_per_epoch": int(state.iters_per_epoch)}
        if state.converge is not None:
            info["convergence"] = summary(state)
        write_json(self.path, info)
        if state.time_limited:
            log.info("time-limited run: %d iteration(s) in %.1f of %.1f minute(s)", info["iterations"],
                     info["minutes"], info["max_minutes"])
