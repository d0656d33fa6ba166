"""Trainers by name: ``-tr NAME`` is an entry point of the group ``selfconfig.trainers`` (the
shipped strategies are this package's own entry points, found exactly like a third party's);
``-tr module:Class`` or ``-tr path/to/file.py:Class`` loads a user's trainer without editing or
reinstalling anything (:mod:`selfconfig.plugins`)."""

from __future__ import annotations

from selfconfig import plugins
from selfconfig.errors import TrainerNotFoundError

TRAINERS = plugins.Kind("selfconfig.trainers", "trainer", TrainerNotFoundError)


def available_trainers() -> list[str]:
    return plugins.available(TRAINERS)


def get_trainer(name: str) -> type:
    """The trainer class ``name`` refers to; its ``name`` (the run folder's ``<Trainer>`` part) is
    the entry point's name, or the class's own for ``module:Class``."""
    cls, as_name = plugins.load(TRAINERS, name)
    _check_trainer_class(cls, name)
    if ":" not in name:
        cls.name = as_name
    return cls


def _check_trainer_class(obj, name: str) -> None:
    """``-tr`` must name a Trainer subclass, not a function, a module attribute or another class."""
    from selfconfig.training.trainer import Trainer

    if not isinstance(obj, type) or not issubclass(obj, Trainer):
        kind = f"class {obj.__name__}" if isinstance(obj, type) else type(obj).__name__
        raise TrainerNotFoundError(f"trainer {name!r} is a {kind}, not a trainer: it must be a subclass of "
                                   f"selfconfig.training.trainer.Trainer (e.g. of trainers.Scratch)")
