"""Plug-ins found by name: trainers (entry-point group ``selfconfig.trainers``) and planners
(``selfconfig.planners``).

The shipped ones are entry points of this package, declared in its pyproject.toml and found
exactly like a third party's, so the engine never imports the ``trainers`` or ``planners``
package by name (``tests/test_layers.py`` holds it to that). A class that is not registered is
loaded from ``module:Class`` (an importable module) or ``path/to/file.py:Class``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from selfconfig.errors import SelfconfigError


@dataclass(frozen=True)
class Kind:
    """One kind of plug-in: its entry-point group, its word in messages and the error it raises."""

    group: str
    what: str  # "trainer", "planner"
    error: type[SelfconfigError]


def _entry_points(kind: Kind) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=kind.group)}


def available(kind: Kind) -> list[str]:
    """The registered names of ``kind`` (the shipped ones and every installed package's)."""
    return sorted(_registered(kind))


def _registered(kind: Kind) -> dict[str, EntryPoint]:
    """The entry points of ``kind``; none at all means that selfconfig itself is not installed
    (its metadata declares the shipped plug-ins), which a source checkout on PYTHONPATH is not."""
    found = _entry_points(kind)
    if not found:
        raise kind.error(f"no {kind.what}s are registered (entry-point group {kind.group} is empty): selfconfig is "
                         f"not installed; install it with `pip install -e .` in its source folder (or `make venv`)")
    return found


def load(kind: Kind, name: str) -> tuple[object, str]:
    """The object ``name`` refers to and the name it goes by: an entry point's name, or the
    attribute's of ``module:Class`` / ``file.py:Class``."""
    if ":" in name:
        return _load_path(kind, name), name.rpartition(":")[2]
    found = _registered(kind)
    if name not in found:
        raise kind.error(f"unknown {kind.what} {name!r}; available: {', '.join(sorted(found))} "
                         f"(or module:Class for your own)")
    ep = found[name]
    try:
        return ep.load(), name
    except Exception as e:  # noqa: BLE001 - a broken plug-in is one line, not a traceback
        raise kind.error(f"{kind.what} {name!r} (entry point {ep.value}) cannot be loaded "
                         f"({type(e).__name__}: {first_line(e)}); reinstall the package that provides it") from None


def _load_path(kind: Kind, name: str) -> object:
    module, _, attr = name.rpartition(":")
    try:
        is_file = module.endswith(".py") or "/" in module
        mod = _import_file(module, kind) if is_file else importlib.import_module(module)
        return getattr(mod, attr)
    except (ImportError, AttributeError, FileNotFoundError, OSError) as e:
        raise kind.error(f"{kind.what} {name!r} cannot be loaded ({type(e).__name__}: {first_line(e)}); "
                         f"check that the module is importable (PYTHONPATH) and defines {attr}") from None
    except SyntaxError as e:
        raise kind.error(f"{kind.what} {name!r}: {e.filename}, line {e.lineno}: syntax error ({e.msg}); "
                         f"fix the file") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while being imported
        raise kind.error(f"{kind.what} {name!r}: importing {module} failed ({type(e).__name__}: "
                         f"{first_line(e)}); fix the module") from None


def _import_file(module: str, kind: Kind):
    """Import a .py file under a private module name: a user file named like an installed module
    must not replace it."""
    path = Path(module).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    mod_name = f"selfconfig_user_{kind.what}s.{path.stem}_{abs(hash(str(path))) % 10**8}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    return mod


def first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__
