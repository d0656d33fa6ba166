"""Layers import downwards only (documentation/extending.md, "Layers"):

cli -> API façades -> experiments -> plug-ins (trainers, planners) -> pretext -> inference /
training -> data, planning -> networks, preprocessing, augment, evaluation -> dataset, plans ->
logs, checkpoint, device, paths, plugins -> utils -> errors.

Every ``import`` of every module of the package and of the plug-in packages ``trainers/`` and
``planners/`` is read with :mod:`ast` (also the ones inside functions, where the upward imports
used to hide, and ``importlib.import_module("...")`` calls) and checked against that order. The
engine (``selfconfig/``) never imports a plug-in package at all: it finds trainers and planners
through their entry points, the shipped ones exactly like a third party's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import selfconfig

PACKAGE = Path(selfconfig.__file__).parent
#: the shipped plug-ins: they import the engine, the engine never imports them
PLUGIN_PACKAGES = ("trainers", "planners")

#: lowest first; a module may import its own package and anything on a lower layer
LAYERS: list[set[str]] = [
    {"errors"},
    {"utils"},  # atomic writes turn OS errors into selfconfig errors
    {"parallel", "dask_cluster", "precision", "paths", "logs", "checkpoint", "device", "plugins", "locking"},
    {"dataset", "plans"},
    {"fingerprint", "preprocessing", "networks", "augment", "evaluation", "examples"},
    {"data", "planning"},
    {"training", "inference"},
    {"pretext"},
    set(PLUGIN_PACKAGES),
    {"experiments"},
    {"api"},
    {"cli", "testing"},
]

#: the API functions behind the commands compose training with inference (the final validation);
#: they sit above the engine, although they live in the package they front
API_MODULES = {"selfconfig.training.api", "selfconfig.pretext.api"}


def is_plugin(module: str) -> bool:
    return module.split(".")[0] in PLUGIN_PACKAGES


def layer_of(module: str) -> int:
    if module in API_MODULES:
        part = "api"
    elif is_plugin(module):
        part = module.split(".")[0]
    else:
        parts = module.split(".")
        part = parts[1] if len(parts) > 1 else ""
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise KeyError(f"{module}: its package {part!r} has no layer in tests/test_layers.py; give it one")


def unit_of(module: str) -> str:
    """What an import may always reach: its own package (selfconfig.training.*), or itself."""
    if module in API_MODULES:
        return module
    parts = module.split(".")
    return parts[0] if is_plugin(module) else ".".join(parts[:2])


def module_name(path: Path) -> str:
    """The dotted name of a file of the package or of a plug-in package."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every selfconfig or plug-in import in ``source``, relative ones resolved,
    ``importlib.import_module("name")`` included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "selfconfig":  # from selfconfig import paths
                found += [(node.lineno, f"selfconfig.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return [(line, m) for line, m in found if m == "selfconfig" or m.startswith("selfconfig.") or is_plugin(m)]


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    here = layer_of(module)
    out = []
    for line, target in imported_modules(source, module, is_package):
        if is_plugin(target) and not is_plugin(module):
            out.append(f"{module}:{line} imports {target}: the engine finds plug-ins through their entry points "
                       f"(selfconfig.plugins), never by importing the {target.split('.')[0]} package")
            continue
        if target == "selfconfig" or unit_of(target) == unit_of(module):
            continue
        if layer_of(target) >= here:
            out.append(f"{module}:{line} imports {target} (layer {LAYERS[layer_of(target)]} is not below "
                       f"{LAYERS[here]})")
    return out


def test_the_checker_catches_an_upward_import():
    """The rule itself: an engine module importing the CLI, or training importing inference, fails."""
    assert violations("from selfconfig.cli.common import LogFile\n", "selfconfig.training.run")
    assert violations("def f():\n    from selfconfig.inference.validation import validate_run\n",
                      "selfconfig.training.run")
    assert violations("from selfconfig.training.checkpoint import load_checkpoint\n",
                      "selfconfig.inference.predictor")
    assert violations("from ..training import run\n", "selfconfig.inference.predictor")
    assert violations("from selfconfig import experiments\n", "selfconfig.training.run")
    assert violations("import selfconfig.cli.train\n", "selfconfig.experiments.grid")
    assert not violations("from selfconfig.checkpoint import load_checkpoint\n", "selfconfig.inference.predictor")
    assert not violations("from selfconfig.inference.validation import validate_run\n", "selfconfig.training.api")
    assert violations("from selfconfig.training.api import train\n", "selfconfig.experiments.grid")
    with pytest.raises(KeyError):
        layer_of("selfconfig.newpackage.thing")


@pytest.mark.parametrize("source,module,refused", [
    # the engine never imports a plug-in package, not even from the top layer or by a string
    ("import trainers\n", "selfconfig.training.registry", True),
    ("def f():\n    from planners import DefaultPlanner\n", "selfconfig.planning", True),
    ("importlib.import_module('trainers')\n", "selfconfig.training.registry", True),
    ("from trainers.scratch import Scratch\n", "selfconfig.cli.train", True),
    # plug-ins import the engine below them, not the commands or the experiment grid above
    ("from selfconfig.pretext.trainer import SurrogateTrainer\n", "trainers.surrogate_flip", False),
    ("from planners.default import DefaultPlanner\n", "planners.resnet", False),
    ("from selfconfig.cli.common import run\n", "trainers.scratch", True),
    ("from selfconfig.experiments.grid import run_cell\n", "planners.default", True),
])
def test_the_checker_keeps_plugins_out_of_the_engine(source, module, refused):
    assert bool(violations(source, module)) is refused


def test_every_module_imports_downwards_only():
    problems = []
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50
    plugins = [p for name in PLUGIN_PACKAGES for p in sorted((PACKAGE.parent / name).rglob("*.py"))]
    assert {p.parent.name for p in plugins} == set(PLUGIN_PACKAGES)
    for path in modules + plugins:
        name = module_name(path)
        if name == "selfconfig":
            continue
        problems += violations(path.read_text(), name, path.name == "__init__.py")
    assert not problems, "upward imports:\n" + "\n".join(problems)
