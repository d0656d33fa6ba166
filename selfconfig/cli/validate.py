"""Every command's arguments, checked in one place before anything is written or deleted.

Each ``selfconfig_*`` command parses with :class:`Parser` and then calls :func:`parse`, which
checks the parsed values by their destination name (``epochs``, ``lr``, ``fraction``, ``fold``,
``dataset``, ``output`` ...), so a flag means the same thing and is refused the same way in every
command, and a flag added later is covered by adding its name to a table here. A refusal is a
:class:`ConfigurationError`: one line, exit code 2, nothing written.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

from selfconfig.errors import ConfigurationError
from selfconfig.paths import check_plain_name


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``prog: error: ...``) with exit code 2, like ours."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: integer flags and their smallest allowed value
INT_AT_LEAST = {
    "epochs": 1, "iters_per_epoch": 1, "val_iters": 1, "pretrain_epochs": 1, "pretrain_iters_per_epoch": 1,
    "batch_size": 1, "checkpoint_every": 1, "num_workers": 0, "seed": 0, "num_processes": 1, "cases": 1,
    "workers": 1, "overwrite_id": 1, "converge_patience": 1,
}
#: float flags that must be finite and > 0
POSITIVE_FLOATS = ("lr", "pretrain_lr", "gpu_memory_gb", "cpu_seconds", "cpu_gflops", "checkpoint_minutes",
                   "max_minutes", "overwrite_target_spacing")
#: float flags in (0, 1] (single values or lists)
UNIT_INTERVAL = ("fraction", "fractions", "step_size", "converge_tail", "converge_interval")
#: names that become one folder or file name under a root
PLAIN_NAMES = {"dataset": "dataset name", "tag": "run tag", "plans": "plans name", "plans_name": "plans name",
               "configuration": "configuration name", "configurations": "configuration name"}
FOLD_RE = re.compile(r"^(all|[0-9]+)$")
DEVICE_RE = re.compile(r"^(cpu|mps|cuda(:[0-9]+)?)$")
MAX_FOLD = 4


def _flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {a.dest: "/".join(a.option_strings) or a.dest for a in parser._actions}


def _values(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def check_fold(text: str, flag: str = "-f") -> int | str:
    """``0``..``4`` or ``all``."""
    t = str(text).strip()
    if not FOLD_RE.match(t) or (t != "all" and int(t) > MAX_FOLD):
        raise ConfigurationError(f"{flag}: fold {text} does not exist; use 0..{MAX_FOLD} or 'all'")
    return "all" if t == "all" else int(t)


def check_values(args: argparse.Namespace, flags: dict[str, str]) -> None:
    """Types, ranges and finiteness of every numeric and name flag that is set."""
    for dest, low in INT_AT_LEAST.items():
        v = getattr(args, dest, None)
        if v is not None and (not isinstance(v, int) or v < low):
            raise ConfigurationError(f"{flags.get(dest, dest)} must be at least {low} (an integer), got {v}")
    for dest in POSITIVE_FLOATS:
        for v in _values(getattr(args, dest, None)):
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigurationError(f"{flags.get(dest, dest)} must be a finite number greater than 0, got {v}")
    for dest in UNIT_INTERVAL:
        for v in _values(getattr(args, dest, None)):
            if v is not None and not (math.isfinite(v) and 0 < v <= 1):
                raise ConfigurationError(f"{flags.get(dest, dest)} {v:g} is out of range: it must be in (0, 1]")
    fr = getattr(args, "fractions", None)
    if fr and len(set(fr)) != len(fr):
        raise ConfigurationError(f"{flags.get('fractions')} lists a fraction twice: {' '.join(f'{f:g}' for f in fr)}")
    for dest in ("fold", "folds"):
        values = [v for v in _values(getattr(args, dest, None)) if v is not None]
        for v in values:
            check_fold(v, flags.get(dest, dest))
        if len(set(map(str, values))) != len(values):
            raise ConfigurationError(f"{flags.get(dest, dest)} lists a fold twice: {' '.join(map(str, values))}")
    for dest, what in PLAIN_NAMES.items():
        for v in _values(getattr(args, dest, None)):
            if v is not None and not (dest == "tag" and v == ""):
                check_plain_name(v, what, flags.get(dest, dest))
    device = getattr(args, "device", None)
    if device is not None and not DEVICE_RE.match(device):
        raise ConfigurationError(f"--device {device!r} is not a device: use cpu, cuda or cuda:N")
    if getattr(args, "continue_training", False) and getattr(args, "overwrite", False):
        raise ConfigurationError("--continue and --overwrite contradict each other: resume the run, or discard it")


def check_paths(args: argparse.Namespace, flags: dict[str, str]) -> None:
    """Root folders are folders; inputs exist; an output is not an existing file nor an input."""
    for dest in ("raw", "preprocessed", "results"):
        v = getattr(args, dest, None)
        if v and Path(v).exists() and not Path(v).is_dir():
            raise ConfigurationError(f"--{dest} {v} is a file; the {dest} root must be a folder")
    for dest in ("input", "predictions", "reference", "labels", "pretrained_weights"):
        v = getattr(args, dest, None)
        if v and not Path(v).exists():
            raise ConfigurationError(f"{flags.get(dest, dest)} {v} does not exist; check the path")
    out = getattr(args, "output", None)
    if out:
        o = Path(out)
        if o.exists() and not o.is_dir():
            raise ConfigurationError(f"{flags.get('output', '-o')} {out} is an existing file; the output is a folder: "
                                     f"pick a folder name (nothing was written)")
        v = getattr(args, "input", None)  # prediction: evaluate's -o beside its inputs is fine
        if v and Path(v).exists():
            if o.resolve() == (Path(v).resolve() if Path(v).is_dir() else Path(v).resolve().parent):
                raise ConfigurationError(
                    f"{flags.get('output', '-o')} {out} is the folder that holds the input ({v}); outputs could "
                    f"replace the scans: pick another output folder (nothing was written)")


def check_trainers(args: argparse.Namespace, command: str) -> None:
    """Resolve every ``-tr`` now (a user's module is imported only here, when named), so that a
    typo or a broken file is refused before anything runs."""
    names = _values(getattr(args, "trainers", None) or getattr(args, "trainer", None))
    if command == "predict":
        for n in names:  # names a run folder only; nothing is imported
            check_plain_name(n, "trainer name (the run folder's <Trainer> part)", "-tr")
        return
    from selfconfig.training.registry import get_trainer

    if len(set(names)) != len(names):
        raise ConfigurationError(f"-tr lists a trainer twice: {' '.join(names)}")
    for n in names:
        cls = get_trainer(n)
        if command == "pretrain" and not getattr(cls, "uses_pretraining", False):
            raise ConfigurationError(f"trainer {n} has no pre-training stage; pick a Surrogate* strategy")


def parse(parser: argparse.ArgumentParser, argv: list[str] | None, command: str) -> argparse.Namespace:
    """Parse ``argv`` and check everything; the one entry every command uses."""
    args = parser.parse_args(argv)
    if getattr(args, "list", False):
        return args
    flags = _flags(parser)
    check_values(args, flags)
    check_paths(args, flags)
    if command in ("train", "pretrain", "experiment", "predict"):
        check_trainers(args, command)
    return args
