"""Trainer registry: ``-tr NAME`` finds a trainer by name, ``-tr module:Class`` or an entry point in
the group ``selfconfig.trainers`` finds a user's trainer without editing the installed package."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path

from selfconfig.errors import TrainerNotFoundError

log = logging.getLogger(__name__)

_TRAINERS: dict[str, type] = {}
ENTRY_POINT_GROUP = "selfconfig.trainers"


def register_trainer(cls: type | None = None, *, name: str | None = None):
    """Class decorator: make a trainer available as ``-tr NAME`` (default: the class name)."""

    def add(c: type) -> type:
        key = name or c.__dict__.get("name") or c.__name__
        if key in _TRAINERS and _TRAINERS[key] is not c:
            log.warning("trainer %r registered again (%s replaces %s)", key, c, _TRAINERS[key])
        c.name = key
        _TRAINERS[key] = c
        return c

    return add(cls) if cls is not None else add


def _load_builtin() -> None:
    importlib.import_module("trainers")  # registers the shipped strategies


def available_trainers() -> list[str]:
    _load_builtin()
    names = set(_TRAINERS)
    try:
        names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # broken third-party metadata must not break the listing
        pass
    return sorted(names)


def get_trainer(name: str) -> type:
    """Resolve ``name``: registry > ``module:Class`` (module importable or a path to a .py file) > entry point."""
    _load_builtin()
    if name in _TRAINERS:
        return _TRAINERS[name]
    if ":" in name:
        module, _, attr = name.rpartition(":")
        try:
            if module.endswith(".py") or "/" in module:
                path = Path(module).resolve()
                if not path.is_file():
                    raise FileNotFoundError(f"{path} does not exist")
                # a private module name: a user file named like an installed module must not replace it
                mod_name = f"selfconfig_user_trainers.{path.stem}_{abs(hash(str(path))) % 10**8}"
                spec = importlib.util.spec_from_file_location(mod_name, path)
                mod = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = mod
                spec.loader.exec_module(mod)
            else:
                mod = importlib.import_module(module)
            cls = getattr(mod, attr)
        except (ImportError, AttributeError, FileNotFoundError, OSError) as e:
            raise TrainerNotFoundError(f"trainer {name!r} cannot be loaded ({type(e).__name__}: {_first_line(e)}); "
                                       f"check that the module is importable (PYTHONPATH) and defines {attr}")
        except SyntaxError as e:
            raise TrainerNotFoundError(f"trainer {name!r}: {e.filename}, line {e.lineno}: syntax error ({e.msg}); "
                                       f"fix the file") from None
        except Exception as e:  # noqa: BLE001 - the user's module failed while being imported
            raise TrainerNotFoundError(f"trainer {name!r}: importing {module} failed ({type(e).__name__}: "
                                       f"{_first_line(e)}); fix the module") from None
        _check_trainer_class(cls, name)
        if not getattr(cls, "name", None) or cls.name != attr:
            cls.name = getattr(cls, "name", None) if "name" in cls.__dict__ else attr
        return cls
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                cls = ep.load()
            except Exception as e:  # noqa: BLE001 - a broken plug-in is one line, not a traceback
                raise TrainerNotFoundError(f"trainer {name!r} (entry point {ep.value}) cannot be loaded "
                                           f"({type(e).__name__}: {_first_line(e)})") from None
            _check_trainer_class(cls, name)
            cls.name = name
            return cls
    raise TrainerNotFoundError(f"unknown trainer {name!r}; available: {', '.join(available_trainers())} "
                               f"(or module:Class for your own)")


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _check_trainer_class(obj, name: str) -> None:
    """``-tr`` must name a Trainer subclass, not a function, a module attribute or another class."""
    from selfconfig.training.trainer import Trainer

    if not isinstance(obj, type) or not issubclass(obj, Trainer):
        kind = f"class {obj.__name__}" if isinstance(obj, type) else type(obj).__name__
        raise TrainerNotFoundError(f"trainer {name!r} is a {kind}, not a trainer: it must be a subclass of "
                                   f"selfconfig.training.trainer.Trainer (e.g. of trainers.Scratch)")
