"""Process-parallel map with a progress bar, over one pool that several stages share.

Workers are started with the ``spawn`` method: the parent may hold torch/OpenMP threads, and a
forked child inheriting them can deadlock. Starting a worker costs about a second of imports,
so plan-and-preprocess creates one pool and hands it to every stage.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm


def _call(args):
    fn, a = args
    return fn(*a)


class WorkerPool:
    """``with WorkerPool(n) as pool: pool.map(fn, args)``; processes start on first use."""

    def __init__(self, num_processes: int = 1):
        self.num_processes = max(1, int(num_processes))
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def map(self, fn: Callable, arg_tuples: Sequence[tuple], desc: str = "", progress: bool = True) -> list[Any]:
        """``[fn(*a) for a in arg_tuples]``, in order."""
        arg_tuples = list(arg_tuples)
        bar = tqdm(total=len(arg_tuples), desc=desc, disable=not progress, leave=False)
        try:
            if self.num_processes <= 1 or len(arg_tuples) <= 1:
                out = []
                for a in arg_tuples:
                    out.append(fn(*a))
                    bar.update()
                return out
            if self._executor is None:
                self._executor = ProcessPoolExecutor(max_workers=self.num_processes, mp_context=mp.get_context("spawn"))
            out = []
            for r in self._executor.map(_call, [(fn, a) for a in arg_tuples]):
                out.append(r)
                bar.update()
            return out
        finally:
            bar.close()
