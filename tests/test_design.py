"""The shape of the code: no function in the run engine (training/, pretext/, experiments/) grows
past about a screen, so that a run reads as a few named steps; and no dead code in the engine or
the shipped plug-ins (vulture, with tests/dead_code_allowlist.py for the uses it cannot see)."""

from __future__ import annotations

import ast
from pathlib import Path

import selfconfig

PACKAGE = Path(selfconfig.__file__).parent
ROOT = PACKAGE.parent
#: where dead code is looked for; the tests, benchmarks and documented examples count as callers
CHECKED = ("selfconfig", "trainers", "planners")
CALLERS = ("tests", "benchmarks", "documentation/examples")
ALLOWLIST = ROOT / "tests" / "dead_code_allowlist.py"
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


def dead_code(paths: list[Path], checked: list[Path], base: Path = ROOT) -> list[str]:
    """``file:line: unused <kind> 'name'`` (file relative to ``base``) for each definition in
    ``checked`` that nothing in ``paths`` (which include ``checked``) uses."""
    import vulture

    v = vulture.Vulture()
    v.scavenge([str(p) for p in paths])
    roots = [p.resolve() for p in checked]
    found = []
    for item in v.get_unused_code(min_confidence=60):
        where = Path(item.filename).resolve()
        if any(where == r or r in where.parents for r in roots):
            found.append(f"{where.relative_to(base.resolve())}:{item.first_lineno}: {item.message}")
    return found


def test_the_dead_code_check_finds_an_uncalled_helper(tmp_path):
    (tmp_path / "lib.py").write_text("def used():\n    return 1\n\n\ndef orphan():\n    return 2\n")
    (tmp_path / "main.py").write_text("from lib import used\nprint(used())\n")
    found = dead_code([tmp_path], [tmp_path / "lib.py"], base=tmp_path)
    assert len(found) == 1 and "orphan" in found[0]


def test_no_dead_code():
    checked = [ROOT / name for name in CHECKED]
    found = dead_code([*checked, *(ROOT / name for name in CALLERS), ALLOWLIST], checked)
    assert not found, ("definitions nothing calls (delete them; a use vulture cannot see goes into "
                       "tests/dead_code_allowlist.py with its reason):\n" + "\n".join(found))
