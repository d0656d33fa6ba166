"""Distributed data-parallel training under ``torchrun`` (one process per GPU, or several CPU
processes): gloo on the CPU, NCCL on CUDA.

What it means for a run (every part of it hooks in through :mod:`selfconfig.training.builder`):

* the plans' batch is the *global* batch: each of the ``W`` processes (ranks) samples
  ``batch / W`` patches per iteration, from its own seed derived from (seed, rank);
* the networks start identical (rank 0's parameters and buffers are broadcast), and at every
  optimiser step the gradients are averaged over the ranks before the step, so the weights stay
  identical. This is what :class:`torch.nn.parallel.DistributedDataParallel` does; it is done at
  the optimiser step (:meth:`selfconfig.training.modules.OptimizationMixin.optimizer_step`)
  instead of by wrapping the network, so that GAN pretext tasks with two optimisers and a
  gradient penalty's double backward work unchanged;
* only rank 0 validates, logs, plots and writes checkpoints; every rank reads them
  (``--continue``, the pre-trained weights), so several nodes need a shared results folder.

Outside ``torchrun`` (no process group) every function here answers for a single process.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections import defaultdict

import torch
import torch.distributed as tdist

from selfconfig.errors import ConfigurationError
from selfconfig.training.loop import Callback

log = logging.getLogger(__name__)

#: how long a rank waits for the others (e.g. while rank 0 waits for another job's pre-training)
TIMEOUT = datetime.timedelta(minutes=60)


def is_distributed() -> bool:
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    return tdist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return tdist.get_world_size() if is_distributed() else 1


def is_writer() -> bool:
    """Only rank 0 writes checkpoints, logs, plots and validation."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def setup(device: torch.device) -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment (once), and return
    this rank's device: ``cuda:LOCAL_RANK`` on a GPU machine, else the CPU. Without torchrun, or
    when the caller already joined a group, ``device`` is returned as it is."""
    if tdist.is_available() and tdist.is_initialized():
        return _rank_device(device)
    if not launched_by_torchrun():
        return device
    backend = "nccl" if device.type == "cuda" else "gloo"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local)
    tdist.init_process_group(backend, timeout=TIMEOUT)
    if rank() != 0:
        logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))  # rank 0 speaks for all
    log.info("distributed training: %d processes (%s), this is rank %d", world_size(), backend, rank())
    return _rank_device(device)


def _rank_device(device: torch.device) -> torch.device:
    if device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return device


def local_batch_size(global_batch: int) -> int:
    """This rank's share of the plan's (global) batch."""
    w = world_size()
    if global_batch % w:
        raise ConfigurationError(
            f"the batch of {global_batch} does not split evenly over {w} processes; pass --batch-size "
            f"{max(w, global_batch - global_batch % w)} or {global_batch + w - global_batch % w} (the global batch), "
            f"or start {_divisors_hint(global_batch)} processes")
    return global_batch // w


def _divisors_hint(n: int) -> str:
    return " or ".join(str(d) for d in range(1, n + 1) if n % d == 0 and d > 1) or "1"


def rank_seed(seed: int) -> int:
    """Rank 0 keeps ``seed`` (so one process reproduces a single-process run's stream); rank r
    gets its own, fixed seed from (seed, r)."""
    r = rank()
    return int(seed) if r == 0 else int(seed) + 7919 * r + 1_000_003


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def max_over_ranks(value: float) -> float:
    """The largest ``value`` of all ranks (e.g. the loop's elapsed time, so that a wall-clock budget
    stops every rank at the same step)."""
    if not is_distributed():
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if tdist.get_backend() == "nccl" else None
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return float(t.item())


def barrier() -> None:
    if is_distributed():
        if tdist.get_backend() == "nccl":
            tdist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            tdist.barrier()


def writer_first(fn):
    """``fn()`` on rank 0, then on the other ranks (e.g. when it may create a file they then read)."""
    if not is_distributed():
        return fn()
    result = fn() if is_writer() else None
    barrier()
    return result if is_writer() else fn()


def networks_of(module) -> list[torch.nn.Module]:
    """The networks a loop module trains (a pretext task's ``modules()``, else its nn.Module attributes)."""
    if callable(getattr(module, "modules", None)):
        return list(module.modules().values())
    return [v for v in vars(module).values() if isinstance(v, torch.nn.Module)]


def broadcast_state(module) -> None:
    """Make every rank's networks (parameters and buffers) equal to rank 0's."""
    if not is_distributed():
        return
    with torch.no_grad():
        for net in networks_of(module):
            for t in list(net.parameters()) + list(net.buffers()):
                tdist.broadcast(t.data, src=0)


def average_gradients(params) -> None:
    """Average the gradients of ``params`` over the ranks (one all-reduce per device and dtype).

    Every rank runs the same graph, so the same parameters have gradients on every rank."""
    if not is_distributed():
        return
    groups: dict[tuple, list[torch.Tensor]] = defaultdict(list)
    for p in params:
        if p.grad is not None:
            groups[(p.grad.device, p.grad.dtype)].append(p.grad)
    w = world_size()
    for grads in groups.values():
        flat = torch._utils._flatten_dense_tensors(grads)
        tdist.all_reduce(flat)
        flat /= w
        for g, avg in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            g.copy_(avg)


def reseed_rank_streams(module, seed: int, step: int) -> None:
    """After resuming from rank 0's checkpoint, give the other ranks their own augmentation and
    task random streams again (from seed, rank and the step), so that they do not repeat rank 0's."""
    if rank() == 0:
        return
    s = rank_seed(seed) + 104729 * int(step)
    augmenter = getattr(module, "augmenter", None)
    if augmenter is not None and hasattr(augmenter, "generator"):
        augmenter.generator.manual_seed(s + 1)
    rng = getattr(module, "rng", None)
    if isinstance(rng, torch.Generator):
        rng.manual_seed(s + 2)
    torch.manual_seed(s + 3)


class SyncCallback(Callback):
    """Start from rank 0's networks; keep the buffers (e.g. batch-norm statistics) equal to rank 0's
    at every epoch end, so validation and checkpoints see the same networks on every rank."""

    def on_fit_start(self, module, state) -> None:
        broadcast_state(module)

    def on_epoch_end(self, module, state, logs) -> None:
        with torch.no_grad():
            for net in networks_of(module):
                for b in net.buffers():
                    tdist.broadcast(b.data, src=0)
