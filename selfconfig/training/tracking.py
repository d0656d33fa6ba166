"""Experiment tracking (``--logger tensorboard``): losses, metrics, learning rate and the progress
figure of every run, written through the loop's callbacks into ``<run folder>/tensorboard/``.

The tracker is an optional extra (``pip install 'selfconfig[tracking]'``, which installs
tensorboardX: protobuf only, no second torch). The commands choose the trackers with
:func:`use_loggers` around a run; the run builders ask :func:`tracking_callbacks` for the
callbacks to add, so neither the loop nor the trainers know about trackers.
View with ``tensorboard --logdir selfconfig_data/results/NAME`` (TensorBoard itself is a separate
install; the event files are the standard format).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator, Sequence

from selfconfig.errors import ConfigurationError
from selfconfig.training.callbacks import progress_figure
from selfconfig.training.loop import Callback, LoopState

log = logging.getLogger(__name__)

#: tracker name -> (module it needs, what to install)
LOGGERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboardX", "pip install 'selfconfig[tracking]' (or: pip install tensorboardX)"),
}
TENSORBOARD_FOLDER = "tensorboard"

_active: ContextVar[tuple[str, ...]] = ContextVar("selfconfig_loggers", default=())


def check_logger(name: str) -> str:
    """The tracker's name when it is known and installed, else one clear error."""
    if name not in LOGGERS:
        raise ConfigurationError(f"--logger {name} is not one of {', '.join(LOGGERS)}")
    module, hint = LOGGERS[name]
    if importlib.util.find_spec(module) is None:
        raise ConfigurationError(f"--logger {name} needs the tracking extra, which is not installed: {hint}")
    return name


@contextmanager
def use_loggers(names: Sequence[str] | str | None) -> Iterator[tuple[str, ...]]:
    """Every run started inside records to these trackers (checked first: a missing extra fails
    before any work is done)."""
    if isinstance(names, str):
        names = [names]
    chosen = tuple(dict.fromkeys(check_logger(n) for n in (names or ())))
    token = _active.set(chosen)
    try:
        yield chosen
    finally:
        _active.reset(token)


def active_loggers() -> tuple[str, ...]:
    return _active.get()


def tracking_callbacks(run_folder: Path, title: str) -> list[Callback]:
    """The callbacks of the trackers chosen with :func:`use_loggers` (none by default)."""
    out: list[Callback] = []
    for name in active_loggers():
        if name == "tensorboard":
            out.append(TensorBoardLogger(Path(run_folder) / TENSORBOARD_FOLDER, title))
    return out


def scalar_tag(key: str) -> str:
    """Epoch-log key -> TensorBoard tag: ``train_loss`` -> ``train/loss``, ``val_dice_lobe1`` ->
    ``val/dice_lobe1``, ``train_lr`` -> ``lr``, ``ema_val_mean_dice`` -> ``ema/val_mean_dice``."""
    if key == "train_lr":
        return "lr"
    for prefix in ("train_", "val_", "ema_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return f"run/{key}"


class TensorBoardLogger(Callback):
    """One event file per (re)start of a run; scalars at each epoch (step = epoch), the progress
    figure every ``figure_every`` epochs and at the end."""

    def __init__(self, log_dir: Path, title: str = "", figure_every: int = 10):
        self.log_dir = Path(log_dir)
        self.title = title
        self.figure_every = max(1, int(figure_every))
        self.writer = None

    def on_fit_start(self, module, state: LoopState) -> None:
        if state.epoch >= state.epochs:
            return  # finished already: the loop returns without on_fit_end, nothing to record
        from tensorboardX import SummaryWriter

        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(logdir=str(self.log_dir))
        if state.epoch == 0 and self.title:
            self.writer.add_text("run", self.title, 0)
        log.info("recording to TensorBoard in %s", self.log_dir)

    def on_epoch_end(self, module, state: LoopState, logs: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in logs.items():
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                self.writer.add_scalar(scalar_tag(key), float(value), state.epoch)
        if state.epoch % self.figure_every == 0 or state.epoch >= state.epochs:
            self._figure(module, state)
        self.writer.flush()

    def _figure(self, module, state: LoopState) -> None:
        fig = progress_figure(state.history, self.title, getattr(module, "monitor", None))
        self.writer.add_figure("progress", fig, state.epoch, close=True)

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def on_interrupt(self, module, state: LoopState) -> None:
        self._close()

    def on_fit_end(self, module, state: LoopState) -> None:
        self._close()
