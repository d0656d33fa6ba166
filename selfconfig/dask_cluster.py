"""Dask as an optional engine: connect to a scheduler (or start a local cluster) and map work over it.

selfconfig writes no scheduler of its own. ``--scheduler ADDRESS`` attaches to a running
``dask.distributed`` scheduler (one started by hand, by dask-jobqueue on a SLURM or PBS queue, or
by any other Dask deployment); ``--scheduler local:N`` starts a :class:`distributed.LocalCluster`
of N single-threaded worker processes on the loopback interface. Dask lives in the
``selfconfig[cluster]`` extra; without it, :func:`require_dask` raises one clear line.

Workers read and write the same roots as the client, so on several machines the raw,
preprocessed and results roots must be on a shared file system.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any, Callable, Iterator, Sequence

from tqdm.auto import tqdm

from selfconfig.errors import ConfigurationError, SelfconfigError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'selfconfig[cluster]' (Dask distributed and dask-jobqueue)"
GPU_RESOURCE = "GPU"  # Dask worker resource a GPU cell asks for: start workers with --resources GPU=1
_LOCAL = re.compile(r"^local(?::(\d+))?$")


class ClusterUnavailableError(SelfconfigError):
    """``--scheduler`` was given but Dask is not installed, or the scheduler cannot be reached."""


def require_dask():
    """Import ``distributed`` or raise one line that says how to install it."""
    try:
        import distributed
    except ImportError as e:
        raise ClusterUnavailableError(f"--scheduler needs Dask, which is not installed: {INSTALL_HINT}") from e
    return distributed


def parse_scheduler(scheduler: str) -> tuple[str, int | None]:
    """``local:N`` -> ("local", N); anything else is a scheduler address -> (address, None)."""
    s = scheduler.strip()
    m = _LOCAL.match(s)
    if m:
        n = int(m.group(1) or 2)
        if n < 1:
            raise ConfigurationError(f"--scheduler {scheduler}: a local cluster needs at least 1 worker")
        return "local", n
    if not s:
        raise ConfigurationError("--scheduler is empty: give a scheduler address (tcp://HOST:8786) or local:N")
    return s, None


def check_scheduler(scheduler: str) -> None:
    """Refuse a bad ``--scheduler`` (or a missing Dask) before any work is done."""
    require_dask()
    parse_scheduler(scheduler)


@contextlib.contextmanager
def connect(scheduler: str, *, gpu_workers: bool = False, dashboard: bool = True,
            timeout: float = 30.0) -> Iterator[Any]:
    """Yield a ``distributed.Client`` for ``scheduler``; a local cluster is closed on exit.

    ``gpu_workers``: the workers of a local cluster advertise one ``GPU`` resource each (a cell of
    a GPU plan asks for it). Workers of a remote cluster declare their own resources.
    """
    distributed = require_dask()
    address, n_workers = parse_scheduler(scheduler)
    if n_workers is not None:
        import dask

        # single-threaded worker processes on the loopback interface only (the dashboard, when bokeh
        # is installed, too); not daemonic, so that a cell may start its own data-loader workers
        with dask.config.set({"distributed.worker.daemon": False}):
            cluster = distributed.LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address="127.0.0.1:0" if dashboard else None,
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its HTTP server: any free port
                resources={GPU_RESOURCE: 1} if gpu_workers else None, silence_logs=logging.WARNING)
            try:
                with distributed.Client(cluster) as client:
                    log.info("local Dask cluster: %d worker(s) at %s%s", n_workers, cluster.scheduler_address,
                             f", dashboard {client.dashboard_link}" if dashboard and cluster.dashboard_link else "")
                    yield client
            finally:
                cluster.close()
        return
    try:
        client = distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError) as e:
        raise ClusterUnavailableError(f"cannot reach the Dask scheduler at {address} ({e}); start it first "
                                      f"(dask scheduler, or a dask-jobqueue cluster) or use --scheduler local:N") from e
    with client:
        n = len(client.scheduler_info().get("workers", {}))
        log.info("Dask scheduler %s: %d worker(s) connected now, dashboard %s", address, n, client.dashboard_link)
        yield client


def worker_resources(client) -> list[dict]:
    """The resources every connected worker declares (e.g. ``{"GPU": 1}``)."""
    return [w.get("resources", {}) for w in client.scheduler_info().get("workers", {}).values()]


def workers_per_host(client) -> dict[str, int]:
    """How many worker processes each host runs now (they share its cores)."""
    from distributed.comm import get_address_host

    counts: dict[str, int] = {}
    for address in client.scheduler_info().get("workers", {}):
        host = get_address_host(address)
        counts[host] = counts.get(host, 0) + 1
    return counts


def share_of_cores(workers_on_host: dict[str, int]) -> int:
    """On a worker: this host's cores divided among the worker processes that run on it.

    Dask starts worker processes with OMP_NUM_THREADS=1; a training would then use one core of
    a many-core node. A worker that joined after the count assumes it is alone."""
    import os

    from distributed import get_worker
    from distributed.comm import get_address_host

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        n = workers_on_host.get(get_address_host(get_worker().address), 1)
    except ValueError:  # not on a worker
        n = 1
    return max(1, cores // max(1, n))


def _call(fn: Callable, args: tuple):
    return fn(*args)


class DaskPool:
    """The :class:`selfconfig.parallel.WorkerPool` interface over a Dask client: ``map`` keeps order."""

    def __init__(self, client):
        self.client = client

    def __enter__(self) -> "DaskPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:  # the client's owner closes it
        pass

    def map(self, fn: Callable, arg_tuples: Sequence[tuple], desc: str = "", progress: bool = True) -> list[Any]:
        from distributed import as_completed

        arg_tuples = list(arg_tuples)
        if not arg_tuples:
            return []
        futures = [self.client.submit(_call, fn, a, pure=False, key=f"{desc or 'task'}-{i}-{id(arg_tuples)}")
                   for i, a in enumerate(arg_tuples)]
        try:
            with tqdm(total=len(futures), desc=desc, disable=not progress, leave=False) as bar:
                for f in as_completed(futures):
                    f.result()  # raises the worker's exception here
                    bar.update()
            return self.client.gather(futures)
        finally:
            self.client.cancel([f for f in futures if not f.done()])


@contextlib.contextmanager
def dask_pool(scheduler: str) -> Iterator[DaskPool]:
    with connect(scheduler, dashboard=False) as client:
        yield DaskPool(client)
