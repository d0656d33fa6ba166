"""Background loading: worker processes read and crop; the training loop only consumes batches.

Batches are indexed: batch ``i`` is a pure function of the seed and ``i`` (see
:class:`~selfconfig.data.sampler.PatchSampler`), so resuming at iteration ``i`` reproduces the
uninterrupted run exactly. Workers never augment: augmentation runs batched on the training
device (:mod:`selfconfig.augment`).
"""

from __future__ import annotations

import functools
import itertools
import os
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from selfconfig.data.sampler import PatchSampler


class _IndexedBatches(Dataset):
    def __init__(self, sampler: PatchSampler):
        self.sampler = sampler

    def __len__(self) -> int:  # effectively unbounded
        return 2 ** 62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.asarray(v)) for k, v in self.sampler.sample(int(index)).items()}


class _CountFrom(Sampler):
    def __init__(self, start: int, stop: int | None):
        self.start, self.stop = int(start), stop

    def __iter__(self):
        return iter(range(self.start, self.stop)) if self.stop is not None else itertools.count(self.start)

    def __len__(self) -> int:
        return (self.stop - self.start) if self.stop is not None else 2 ** 62


def _worker_init(_, low_priority: bool = False):
    import signal

    torch.set_num_threads(1)  # workers only crop; leave the cores to the training step
    if low_priority:
        # training on the CPU: the step's threads use every core, and a crop can wait for the
        # moments they leave idle (the worker needs ~1 % of a core to keep up there)
        try:
            os.nice(10)
        except OSError:  # pragma: no cover - not permitted in some sandboxes
            pass
    # Ctrl-C in a terminal (and `kill` of a process group) reaches the workers too: they leave it
    # to the training process, which finishes its step, writes checkpoint_latest and stops them
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def default_num_workers() -> int:
    """Workers only read and crop, which is cheap: 1 on small machines, up to 4 on large ones."""
    n = os.cpu_count() or 1
    return 1 if n <= 4 else min(4, n // 4)


def batch_stream(sampler: PatchSampler, start: int = 0, stop: int | None = None, num_workers: int | None = None,
                 pin_memory: bool = False, prefetch: int = 4, low_priority: bool = False
                 ) -> Iterator[dict[str, torch.Tensor]]:
    """Iterate batches ``start, start+1, ...`` (until ``stop``) produced by background workers.

    ``low_priority``: run the workers at a lower scheduling priority (``nice`` +10), for training
    on the CPU, where the training step's threads and the workers share the same cores.
    """
    num_workers = default_num_workers() if num_workers is None else num_workers
    kwargs = {}
    if num_workers > 0:
        kwargs = {"prefetch_factor": prefetch, "persistent_workers": False,
                  "worker_init_fn": functools.partial(_worker_init, low_priority=low_priority)}
    loader = DataLoader(_IndexedBatches(sampler), batch_size=None, sampler=_CountFrom(start, stop),
                        num_workers=num_workers, pin_memory=pin_memory, **kwargs)
    return iter(loader)
