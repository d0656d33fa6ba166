"""What the header fuzzing shares: how many examples, the outcome tally, and the one check every
generated file must pass: the read returns exactly what the file claims, or it is refused with
one line that names the file and one of the fields that are wrong.

``SELFCONFIG_FUZZ_EXAMPLES`` sets the examples per reader (the suite's default is small; the
benchmark run, ``benchmarks/fuzz_headers.py``, asks for 1,000 or more and random seeds);
``SELFCONFIG_FUZZ_REPORT`` names a JSON file that receives the tally at the end.
"""

from __future__ import annotations

import atexit
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings

from selfconfig.errors import ImageReadError

EXAMPLES = int(os.environ.get("SELFCONFIG_FUZZ_EXAMPLES", "120"))
RANDOM = bool(os.environ.get("SELFCONFIG_FUZZ_RANDOM"))

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])

TALLY: dict[str, Counter] = defaultdict(Counter)


def _write_report() -> None:
    target = os.environ.get("SELFCONFIG_FUZZ_REPORT")
    if target and TALLY:
        Path(target).write_text(json.dumps({k: dict(v) for k, v in TALLY.items()}, indent=2, sort_keys=True) + "\n")


atexit.register(_write_report)


@dataclass
class Expect:
    """The oracle for one generated file: the fields that are wrong (empty: the file is valid)
    with the words a refusal may name for each, and, for a valid file, what a read must return."""

    problems: dict[str, tuple[str, ...]] = field(default_factory=dict)
    array: np.ndarray | None = None  # (C, Z, Y, X)
    spacing: tuple[float, ...] | None = None  # (z, y, x)
    direction: np.ndarray | None = None  # 3x3, columns = x, y, z axes (LPS)
    origin: tuple[float, ...] | None = None
    #: faults after which the data are still whole (a gzip trailer cut off): a refusal naming one
    #: of these words, or an exact read, are both right
    maybe: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def bad(self, name: str, *words: str) -> None:
        self.problems[name] = words or (name,)


def check_read(reader: str, read, path: Path, expect: Expect) -> None:
    """Read ``path`` and hold the result against ``expect``; count the outcome."""
    try:
        arr, geometry = read(path)
    except ImageReadError as e:
        msg = str(e)
        assert expect.problems or expect.maybe, f"a valid file was refused: {msg}"
        assert "\n" not in msg.strip(), msg
        assert str(path) in msg or path.name in msg, f"the refusal does not name the file: {msg}"
        words = [w for ws in (expect.problems or expect.maybe).values() for w in ws]
        assert any(w.lower() in msg.lower() for w in words), f"the refusal names none of {words}: {msg}"
        TALLY[reader]["refused"] += 1
        for name in expect.problems or expect.maybe:
            TALLY[reader][f"refused: {name}"] += 1
        return
    assert not expect.problems, f"read although {sorted(expect.problems)} are wrong: {geometry}"
    TALLY[reader]["read" if expect.array is not None else "read (array not decoded by the oracle)"] += 1
    if expect.array is not None:
        assert arr.shape == expect.array.shape, (arr.shape, expect.array.shape)
        np.testing.assert_allclose(arr, expect.array, rtol=1e-5, atol=1e-4)
    if expect.spacing is not None:
        np.testing.assert_allclose(geometry.spacing, expect.spacing, rtol=1e-5)
    if expect.direction is not None:
        np.testing.assert_allclose(np.asarray(geometry.direction).reshape(3, 3), expect.direction, atol=2e-3)
    if expect.origin is not None:
        np.testing.assert_allclose(geometry.origin, expect.origin, rtol=1e-5, atol=1e-3)


def check_claimed_size_only(reader: str, read, path: Path, size) -> None:
    """For a file the oracle does not decode (another codec or layout): a one-line refusal naming
    the file, or a read of the size the header claims."""
    try:
        arr, _ = read(path)
    except ImageReadError as e:
        assert "\n" not in str(e).strip() and path.name in str(e), str(e)
        TALLY[reader]["refused (other layout)"] += 1
        return
    assert size is not None and tuple(arr.shape[2:]) == tuple(size), (arr.shape, size)
    TALLY[reader]["read (other layout, size checked)"] += 1
