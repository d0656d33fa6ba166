"""selfconfig's side of bench_vs_nnunet.py: Scratch with weight snapshots at given iterations.

``selfconfig_train -tr selfconfig_snapshots:ScratchSnapshots`` (with ``benchmarks/`` on PYTHONPATH)
trains exactly as ``-tr Scratch`` and, in addition, saves the network's weights after each of the
iterations listed in the environment variable ``SELFCONFIG_BENCH_SNAPSHOTS`` (comma-separated) as
``snapshot_<it>.pt`` in the run folder, with the loop's seconds so far (training steps and the
per-epoch validation, as ``--max-minutes`` counts them). The final weights are always a snapshot.
"""

from __future__ import annotations

import os

import torch

from selfconfig.training.loop import Callback
from trainers import Scratch

ENV = "SELFCONFIG_BENCH_SNAPSHOTS"


def wanted_snapshots() -> list[int]:
    text = os.environ.get(ENV, "").strip()
    return sorted({int(v) for v in text.split(",") if v.strip()})


class _Snapshots(Callback):
    def __init__(self, folder):
        self.folder = folder
        self.left = wanted_snapshots()
        self.saved: list[int] = []

    def _save(self, module, state) -> None:
        it = int(state.global_step)
        torch.save({"network": module.network.state_dict(), "iterations": it,
                    "loop_seconds": float(state.elapsed_seconds)}, self.folder / f"snapshot_{it}.pt")
        self.saved.append(it)

    def _maybe(self, module, state) -> None:
        while self.left and state.global_step >= self.left[0]:
            it = self.left.pop(0)
            if it == state.global_step:
                self._save(module, state)

    def on_step_end(self, module, state):
        self._maybe(module, state)

    def on_epoch_end(self, module, state, logs):
        self._maybe(module, state)

    def on_fit_end(self, module, state):
        if state.global_step not in self.saved:
            self._save(module, state)


class ScratchSnapshots(Scratch):
    """Scratch that also saves weight snapshots (see the module's docstring)."""

    def extra_callbacks(self, run):
        return [*super().extra_callbacks(run), _Snapshots(run.run_dir)]
