"""What every ``selfconfig_*`` command shares: root-folder flags, logging, error handling."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path
from typing import Callable

from selfconfig.errors import SelfconfigError, VerificationError
from selfconfig.logs import LogFile, add_log_file, configure_logging  # noqa: F401  (re-exported)
from selfconfig.paths import DEFAULT_PLANS_NAME, Roots


def add_root_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data roots (flag > environment variable > ./selfconfig_data/...)")
    g.add_argument("--raw", help="raw datasets root (env SELFCONFIG_RAW)")
    g.add_argument("--preprocessed", help="preprocessed data root (env SELFCONFIG_PREPROCESSED)")
    g.add_argument("--results", help="results root (env SELFCONFIG_RESULTS)")


def add_plans_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--plans", default=DEFAULT_PLANS_NAME, help="plans name")


def add_tag_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tag", default="", help="run tag: the runs named <Trainer>__<plans>__<config>__<tag> "
                                                  "(e.g. 'quick' for the experiment's quick budget)")


def add_logger_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--logger", action="append", choices=["tensorboard"],
                        help="also record losses, metrics, learning rate and the progress figure to this tracker "
                             "(<run folder>/tensorboard; needs: pip install 'selfconfig[tracking]')")


#: the convergence rule's flags (``--converge-patience`` sets ``converge_patience`` ...)
CONVERGE_KEYS = ("converge_patience", "converge_margin", "converge_tail", "converge_interval", "converge_signal")


def add_convergence_args(parser: argparse.ArgumentParser, dest: str = "until_converged", what: str = "run") -> None:
    """``--until-converged`` and the rule's parameters (documentation/training.md, "Train until converged")."""
    g = parser.add_argument_group("train until converged (documentation/training.md)")
    g.add_argument("--until-converged", dest=dest, action="store_const", const=True,
                   help=f"score the {what} at regular intervals (validation on whole scans; a pre-training: its "
                        f"held-out pretext score), keep checkpoint_best, and after a plateau anneal the learning "
                        f"rate to zero and stop; --epochs and --max-minutes stay caps")
    g.add_argument("--converge-patience", type=int, help="scores in a row without a gain above the margin (default 5)")
    g.add_argument("--converge-margin", type=float, help="the gain that counts, in the score's units (default 0.005)")
    g.add_argument("--converge-signal", type=float,
                   help="a plateau only once its level (the mean of the scores since the last gain) stands above "
                        "the first score by this many times their scatter (default 2; 0: off)")
    g.add_argument("--converge-tail", type=float,
                   help="annealing tail as a fraction of the iterations trained before the plateau (default 0.1)")
    g.add_argument("--converge-interval", type=float,
                   help="scoring spacing as a fraction of the run's horizon, at least an epoch (default 0.03)")


def add_wait_arg(parser: argparse.ArgumentParser, what: str = "run") -> None:
    parser.add_argument("--wait", action="store_true",
                        help=f"when another process holds the {what} folder, wait for it to finish instead of "
                             "refusing (a run folder has one owner at a time)")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="switch progress bars off")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def roots_from(args: argparse.Namespace) -> Roots:
    return Roots.resolve(getattr(args, "raw", None), getattr(args, "preprocessed", None),
                         getattr(args, "results", None))


def setup_logging(args: argparse.Namespace | None = None, log_file: Path | None = None) -> None:
    level = logging.INFO
    if args is not None and getattr(args, "verbose", False):
        level = logging.DEBUG
    elif args is not None and getattr(args, "quiet", False):
        level = logging.WARNING
    logging.raiseExceptions = False  # a full disk under training.log must not print logging's tracebacks
    configure_logging(level, log_file)


def run(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None, prog: str = "") -> int:
    """Run a command; user errors become one line (per problem) on stderr and exit code 2."""
    prog = prog or Path(sys.argv[0]).name
    try:
        code = main(argv)
        return int(code or 0)
    except VerificationError as e:
        print(f"{prog}: {len(e.problems)} problem(s) found; nothing was written:", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        return e.exit_code
    except SelfconfigError as e:
        msg = " ".join(str(e).split("\n")) if "\n" not in str(e).strip() else str(e)
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a write the code did not wrap: still one line naming the file, never a traceback
        from selfconfig.utils import write_error

        if e.errno in (errno.ENOSPC, errno.EDQUOT) or "requested and" in str(e):
            msg = str(write_error(Path(e.filename or "an output file"), e))
        else:
            msg = f"{e.strerror or e}: {e.filename}" if e.filename else (e.strerror or str(e))
        print(f"{prog}: error: {' '.join(msg.split())}", file=sys.stderr)
        return 2
