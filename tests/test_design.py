"""The shape of the orchestration: no function in the run engine (training/, pretext/,
experiments/) grows past about a screen, so that a run reads as a few named steps."""

from __future__ import annotations

import ast
from pathlib import Path

import selfconfig

PACKAGE = Path(selfconfig.__file__).parent
#: the packages whose functions are kept short, and how long one may be (lines, docstring included)
SHORT_FUNCTIONS = ("training", "pretext", "experiments")
MAX_LINES = 60


def long_functions(source: str, where: str, limit: int = MAX_LINES) -> list[str]:
    """``where:line name (n lines)`` of each function (or method) of ``source`` longer than ``limit``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                out.append(f"{where}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_the_length_check_catches_a_long_function():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    assert long_functions(f"def f():\n{body}", "m.py") == [f"m.py:1 f ({MAX_LINES + 1} lines)"]
    assert not long_functions(f"def f():\n{body[: body.rindex('    x')]}", "m.py")


def test_no_long_function_in_the_run_engine():
    found = []
    for package in SHORT_FUNCTIONS:
        for path in sorted((PACKAGE / package).rglob("*.py")):
            found += long_functions(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not found, "functions longer than %d lines (split them into named steps):\n%s" % (
        MAX_LINES, "\n".join(found))
