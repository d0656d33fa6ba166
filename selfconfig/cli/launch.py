"""``--nproc-per-node N``: start the same command under ``torchrun`` on this machine, N processes
(one per GPU; on a CPU machine, N gloo processes). Several machines: call ``torchrun`` yourself
with its rendezvous flags (documentation/distributed.md)."""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from selfconfig.errors import ConfigurationError

log = logging.getLogger(__name__)

FLAG = "--nproc-per-node"


def add_distributed_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(FLAG, type=int, dest="nproc_per_node", metavar="N",
                        help="distributed data-parallel training on this machine: start N processes under torchrun "
                             "(one per GPU); the plans' batch is split over them (documentation/distributed.md)")


def strip_flag(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc-per-node N`` / ``--nproc-per-node=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == FLAG:
            skip = True
        elif not a.startswith(FLAG + "="):
            out.append(a)
    return out


def wants_launch(args: argparse.Namespace) -> bool:
    """True when this process should start torchrun instead of training itself."""
    n = getattr(args, "nproc_per_node", None)
    if n is None:
        return False
    if n < 1:
        raise ConfigurationError(f"{FLAG} must be at least 1, got {n}")
    from selfconfig.training.distributed import launched_by_torchrun

    if launched_by_torchrun():
        log.warning("%s is ignored inside torchrun (it already started the processes)", FLAG)
        return False
    batch = getattr(args, "batch_size", None)
    if n > 1 and batch and batch % n:
        raise ConfigurationError(f"--batch-size {batch} (the global batch) does not split evenly over {n} processes; "
                                 f"pass a multiple of {n}")
    return n > 1


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_args(module: str, argv: list[str], nproc: int) -> list[str]:
    """torchrun's arguments for ``python -m module argv`` in ``nproc`` processes on this machine
    (they meet on a free port of the loopback interface)."""
    return ["--nnodes=1", f"--nproc-per-node={nproc}", "--master-addr=127.0.0.1",
            f"--master-port={free_loopback_port()}", "-m", module, *strip_flag(argv)]


def launch(module: str, argv: list[str] | None, nproc: int) -> int:
    """Run ``python -m module argv`` under torchrun with ``nproc`` processes; the exit code of the
    first process that failed (each printed its own one-line error), else 0."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run as torchrun

    args = torchrun_args(module, list(sys.argv[1:] if argv is None else argv), nproc)
    log.info("starting %d processes: torchrun %s", nproc, " ".join(args))
    try:
        torchrun(get_args_parser().parse_args(args))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        code = failure.exitcode if failure.exitcode and failure.exitcode > 0 else 1
        prog = f"selfconfig_{module.rsplit('.', 1)[-1]}"
        print(f"{prog}: rank {rank} stopped with exit code {code}; the other ranks were stopped", file=sys.stderr)
        return code
    return 0
