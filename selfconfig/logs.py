"""Logging set-up shared by the commands and the engine: the console handler, and the log file of
a run folder (``training.log``, ``pretraining.log``) that the engine opens while a run is inside.

It lives below every engine package so that training and inference may use it; the CLI imports
it from here (:mod:`selfconfig.cli.common` re-exports it).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

NOISY_LOGGERS = ("matplotlib", "PIL", "filelock")


def configure_logging(level: int = logging.INFO, log_file: Path | None = None) -> None:
    """Root logger at ``level`` with one console handler on stderr (added once)."""
    root = logging.getLogger()
    root.setLevel(level)
    if not any(getattr(h, "_selfconfig_console", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        h._selfconfig_console = True  # type: ignore[attr-defined]
        root.addHandler(h)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if log_file is not None:
        add_log_file(log_file)


class LogFile:
    """Context manager: also log to ``path`` (e.g. training.log in the run folder) while inside;
    the root logger's level and handlers are restored on exit. ``enabled=False`` (a distributed
    run's ranks other than 0) writes no file."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.handler: logging.Handler | None = None

    def __enter__(self) -> logging.Handler | None:
        self.level = logging.getLogger().level
        if self.enabled:
            self.handler = add_log_file(self.path)
        return self.handler

    def __exit__(self, *exc) -> None:
        root = logging.getLogger()
        if self.handler is not None:
            root.removeHandler(self.handler)
            self.handler.close()
        root.setLevel(self.level)


def add_log_file(path: Path) -> logging.Handler:
    """Also log to ``path``; prefer :class:`LogFile`, which undoes this. Returns the handler."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h = logging.FileHandler(path)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    h.setLevel(logging.INFO)
    root = logging.getLogger()
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)  # the log file records INFO even when the caller set up no logging
    root.addHandler(h)
    return h
