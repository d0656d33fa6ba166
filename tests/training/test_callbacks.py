"""The writing callbacks: when checkpoint_best.pt is written, how often progress.png is drawn."""

from __future__ import annotations

import pytest
import torch

from selfconfig.checkpoint import load_checkpoint
from selfconfig.training import callbacks
from selfconfig.training.callbacks import CheckpointCallback, ProgressPlot
from selfconfig.training.loop import Callback, LoopState, fit


class _Module:
    monitor = "val_dice"

    def __init__(self):
        self.w = torch.zeros(3)

    def state_dict(self):
        return {"network": {"w": self.w}}  # the live tensor, as a network's state_dict gives it


def _end_epoch(cb: CheckpointCallback, module: _Module, state: LoopState, metric: float,
             weight: float | None = None) -> None:
    """One epoch with smoothed metric ``metric`` whose weights are all ``weight`` (default: ``metric``)."""
    module.w.fill_(metric if weight is None else weight)  # in place, as an optimizer step changes the weights
    state.epoch += 1
    state.ema_metric = metric
    cb.on_epoch_end(module, state, {})


def _best_weight(folder) -> float:
    return float(load_checkpoint(folder / "checkpoint_best.pt")["module"]["network"]["w"][0])


def test_the_best_epoch_is_written_with_the_next_latest_checkpoint(tmp_path):
    cb, module = CheckpointCallback(tmp_path, dict, every=3, minutes=None), _Module()
    state = LoopState(epochs=10, iters_per_epoch=5)
    _end_epoch(cb, module, state, 0.2)
    _end_epoch(cb, module, state, 0.5)  # the best
    assert not (tmp_path / "checkpoint_best.pt").exists(), "kept in memory, not written every improvement"
    _end_epoch(cb, module, state, 0.4, weight=0.1)  # a worse epoch 3 changes the live weights; checkpoint_latest is due
    assert (tmp_path / "checkpoint_latest.pt").exists()
    assert _best_weight(tmp_path) == pytest.approx(0.5), "the best epoch's own weights, copied when it ended"
    assert load_checkpoint(tmp_path / "checkpoint_best.pt")["loop"]["epoch"] == 2
    assert state.best_metric == pytest.approx(0.5)
    _end_epoch(cb, module, state, 0.7)
    cb.on_fit_end(module, state)
    assert _best_weight(tmp_path) == pytest.approx(0.7)
    assert (tmp_path / "checkpoint_final.pt").exists() and not (tmp_path / "checkpoint_latest.pt").exists()


def test_the_best_epoch_is_written_on_an_interrupt(tmp_path):
    cb, module = CheckpointCallback(tmp_path, dict, every=100, minutes=None), _Module()
    state = LoopState(epochs=10, iters_per_epoch=5)
    _end_epoch(cb, module, state, 0.3)
    cb.on_interrupt(module, state)
    assert _best_weight(tmp_path) == pytest.approx(0.3)
    assert (tmp_path / "checkpoint_latest.pt").exists()


class _FailingModule(_Module):
    """Trains one epoch (validation metric 0.6), then fails in the second."""

    def train_step(self, batch, state):
        if state.epoch == 1:
            raise RuntimeError("boom")
        self.w.fill_(0.6)
        return {"loss": 1.0}

    def validation_step(self, batch):
        return {}

    def validation_end(self, outputs):
        return {"val_dice": 0.6}


def test_the_best_epoch_outlives_a_failed_run(tmp_path):
    seen = []

    class _Watch(Callback):
        def on_exception(self, module, state, error):
            seen.append(str(error))

    module, state = _FailingModule(), LoopState(epochs=5, iters_per_epoch=2)
    cbs = [CheckpointCallback(tmp_path, dict, every=100, minutes=None), _Watch()]
    with pytest.raises(RuntimeError, match="boom"):
        fit(module, state, lambda start: iter(lambda: {}, None), lambda: [{}], cbs, progress=False)
    assert seen == ["boom"], "every callback hears of the failure, and the error itself is raised"
    assert _best_weight(tmp_path) == pytest.approx(0.6)
    assert not (tmp_path / "checkpoint_final.pt").exists()


@pytest.fixture
def drawings(monkeypatch):
    """The epoch count of the history each drawing of progress.png showed."""
    shown: list[int] = []
    monkeypatch.setattr(callbacks, "plot_progress", lambda history, path, title, metric, converge=None: shown.append(
        len(history["train_loss"])))
    return shown


def _epoch(plot: ProgressPlot, state: LoopState) -> None:
    state.history.setdefault("train_loss", []).append(1.0)
    state.epoch += 1
    plot.on_epoch_end(_Module(), state, {"train_loss": 1.0})


def test_progress_plot_is_drawn_first_then_throttled_and_at_the_end(tmp_path, drawings, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock[0])
    plot, state = ProgressPlot(tmp_path / "progress.png", every_seconds=30), LoopState(epochs=10, iters_per_epoch=5)
    _epoch(plot, state)  # the first epoch is always drawn
    for _ in range(3):  # 10 s per epoch: not yet 30 s since the first drawing
        clock[0] += 10
        _epoch(plot, state)
    assert drawings == [1, 4]  # the fourth epoch ended 30 s after the first drawing
    clock[0] += 10
    _epoch(plot, state)
    assert drawings == [1, 4]
    plot.on_fit_end(_Module(), state)  # the end is always drawn, with every epoch
    assert drawings == [1, 4, 5]
    plot.on_fit_end(_Module(), state)  # nothing new: not drawn twice
    assert drawings == [1, 4, 5]


def test_progress_plot_catches_up_on_an_interrupt(tmp_path, drawings):
    plot, state = ProgressPlot(tmp_path / "progress.png", every_seconds=3600), LoopState(epochs=10, iters_per_epoch=5)
    plot.on_interrupt(_Module(), state)  # interrupted before the first epoch ended: nothing to draw
    assert drawings == []
    _epoch(plot, state)
    _epoch(plot, state)
    plot.on_interrupt(_Module(), state)
    assert drawings == [1, 2]


def test_progress_plot_every_epoch_when_asked(tmp_path, drawings):
    plot, state = ProgressPlot(tmp_path / "progress.png", every_seconds=0), LoopState(epochs=3, iters_per_epoch=5)
    for _ in range(3):
        _epoch(plot, state)
    plot.on_fit_end(_Module(), state)
    assert drawings == [1, 2, 3]
