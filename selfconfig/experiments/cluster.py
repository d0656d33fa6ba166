"""The experiment grid as Dask tasks: a thin layer over the grid's cell list.

Each pre-training is one task and each cell (strategy x fraction x fold) is one task that depends
on its strategy's pre-training; pre-trainings are submitted first and with a higher priority, so
the cluster starts them before anything else while Scratch/ImageNet cells fill the free workers.
A cell of a GPU plan asks for one ``GPU`` worker resource. A worker runs the very function the
one-process grid runs (:func:`selfconfig.experiments.cells.run_cell`), so a finished cell (scores
on the shared results root) is skipped, an interrupted one resumes from its latest checkpoint,
and the rows are the same. The cell's run-folder lock (:mod:`selfconfig.locking`) makes a second
execution of the same cell (a retry after a lost worker whose cell had in fact finished, or a
second grid on the same root) wait and then skip. When a worker dies, the scheduler hands its task to another worker
(``distributed.scheduler.allowed-failures`` times, 3 by default).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from selfconfig.dask_cluster import GPU_RESOURCE, connect, share_of_cores, worker_resources, workers_per_host
from selfconfig.device import pick_device
from selfconfig.errors import SelfconfigError
from selfconfig.experiments.cells import Cell, run_cell
from selfconfig.paths import Roots
from selfconfig.training.builder import resolve_settings
from selfconfig.training.context import DatasetContext, open_dataset
from selfconfig.training.registry import get_trainer

log = logging.getLogger(__name__)

PRETRAIN_PRIORITY = 10  # Dask runs higher priorities first


class CellFailedError(SelfconfigError):
    """A cell's worker died more often than the scheduler allows."""


@dataclass(frozen=True)
class GridSpec:
    """What a worker needs to open the grid's dataset itself (small, picklable)."""

    roots: Roots
    dataset: str
    configuration: str
    plans_name: str
    tag: str
    device: str | None
    raw_dir: str
    workers_on_host: dict  # host -> worker processes there when the grid was submitted

    def open(self) -> DatasetContext:
        return open_dataset(self.dataset, self.configuration, self.plans_name, self.roots, tag=self.tag)


def wants_gpu(data: DatasetContext, device: str | None) -> bool:
    """Cells of a GPU plan ask for one GPU each, unless the user asked for the CPU."""
    return data.plans.budget.device != "cpu" and not (device or "").startswith("cpu")


def worker_device(requested: str | None) -> torch.device:
    """The device on this worker: as requested; with several GPUs on one machine, a local
    cluster's worker k (workers are named 0..N-1) takes GPU k mod the number of GPUs."""
    dev = pick_device(requested)
    if dev.type == "cuda" and dev.index is None and torch.cuda.device_count() > 1:
        from distributed import get_worker

        try:
            name = get_worker().name
        except ValueError:  # not on a worker
            return dev
        if isinstance(name, int):
            return torch.device(f"cuda:{name % torch.cuda.device_count()}")
    return dev


def _prepare_worker(spec: GridSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """Give torch this worker's share of the host's cores; no loader workers in a daemonic worker."""
    import multiprocessing

    torch.set_num_threads(share_of_cores(spec.workers_on_host))
    if multiprocessing.current_process().daemon and overrides.get("num_workers") != 0:
        log.warning("this Dask worker is a daemonic process, which may not start data-loader workers: loading in "
                    "the training process instead (start workers with DASK_DISTRIBUTED__WORKER__DAEMON=False)")
        overrides = {**overrides, "num_workers": 0}
    return overrides


def _pretrain_task(spec: GridSpec, strategy: str, overrides: dict[str, Any]) -> str:
    overrides = _prepare_worker(spec, overrides)
    data, cls = spec.open(), get_trainer(strategy)
    settings = resolve_settings(cls, overrides, worker_device(spec.device))
    return str(cls(settings.hp).ensure_pretrained(data, settings.device, progress=False))


def _cell_task(spec: GridSpec, cell: Cell, overrides: dict[str, Any], *after: Any) -> list[dict]:
    """Run one cell on a worker; ``after``: the pre-training it waits for (its result is unused)."""
    overrides = _prepare_worker(spec, overrides)
    data, cls = spec.open(), get_trainer(cell.strategy)
    # a second execution of the cell (a retry after a lost worker whose cell had in fact finished)
    # waits for the first and then finds it finished
    return run_cell(cls, data, cell, overrides, worker_device(spec.device), Path(spec.raw_dir), False, wait=True)


def _describe(cell: Cell) -> str:
    return f"{cell.strategy} frac {cell.fraction:g} fold {cell.fold}"


def run_cells_on_cluster(scheduler: str, data: DatasetContext, cells: list[Cell], hp_overrides: dict[str, dict],
                         device: str | None, raw_dir: Path, progress: bool = True) -> list[dict]:
    """Run ``cells`` (and their pre-trainings) as Dask tasks; the rows in the order of ``cells``."""
    gpu = wants_gpu(data, device)
    data.splits()  # written once here, not by several workers at the same time
    with connect(scheduler, gpu_workers=gpu) as client:
        spec = GridSpec(data.roots, data.dataset, data.configuration, data.plans.plans_name, data.tag, device,
                        str(raw_dir), workers_per_host(client))
        if gpu and not any(r.get(GPU_RESOURCE) for r in worker_resources(client)):
            log.warning("the cells of this GPU plan ask for one %s resource each, and no connected worker has one: "
                        "they wait until workers started with --resources %s=1 join", GPU_RESOURCE, GPU_RESOURCE)
        pre, futures = _submit(client, spec, cells, hp_overrides, {GPU_RESOURCE: 1} if gpu else None)
        what = {f.key: f"pre-training {s}" for s, f in pre.items()}
        what.update({f.key: _describe(c) for f, c in zip(futures, cells)})
        log.info("experiment on the Dask cluster: %d pre-training(s) and %d cell(s) submitted", len(pre), len(cells))
        try:
            _wait_for([*pre.values(), *futures], what, progress)
        finally:
            client.cancel([f for f in [*pre.values(), *futures] if not f.done()])
        rows: list[dict] = []
        for r in client.gather(futures):
            rows += r
        return rows


def _submit(client, spec: GridSpec, cells: list[Cell], hp_overrides: dict[str, dict],
            resources: dict | None) -> tuple[dict[str, Any], list]:
    """Submit one task per pre-training (first, at a higher priority) and one per cell, which
    waits for its strategy's pre-training."""
    token = uuid.uuid4().hex[:8]
    pre = {}
    for s in dict.fromkeys(c.strategy for c in cells):
        if getattr(get_trainer(s), "uses_pretraining", False):
            pre[s] = client.submit(_pretrain_task, spec, s, hp_overrides[s], key=f"pretrain-{s}-{token}",
                                   resources=resources, priority=PRETRAIN_PRIORITY, pure=False)
    futures = [client.submit(_cell_task, spec, c, hp_overrides[c.strategy],
                             *([pre[c.strategy]] if c.strategy in pre else []), key=f"cell-{i}-{c.strategy}-{token}",
                             resources=resources, pure=False)
               for i, c in enumerate(cells)]
    return pre, futures


def _wait_for(futures: list, what: dict[str, str], progress: bool) -> None:
    """Wait for every task, as they finish; a task that failed for good ends the grid (one line)."""
    from distributed import as_completed
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    bar = tqdm(total=len(what), desc="experiment (dask)", disable=not progress)
    try:
        for done, f in enumerate(as_completed(futures), start=1):
            try:
                f.result()
            except KilledWorker as e:
                raise CellFailedError(f"{what[f.key]}: its worker died each time it ran ({e}); out of memory? "
                                      f"Finished cells are kept: rerun the experiment to go on") from e
            except FutureCancelledError as e:
                raise CellFailedError(f"{what[f.key]} was cancelled on the cluster; rerun the experiment "
                                      f"to go on") from e
            bar.update()
            bar.set_postfix_str(what[f.key])
            log.info("done %d/%d: %s", done, len(what), what[f.key])
    finally:
        bar.close()
