"""The long header-fuzzing run: every reader's property test with N random examples (the suite
runs a fixed set of 120 per reader), its seed recorded, and the tally of outcomes per reader
(exact reads, refusals by the field that was wrong).

    .venv/bin/python benchmarks/fuzz_headers.py --examples 1000 --out /tmp/fuzz_headers.json

A failure prints Hypothesis's smallest failing example (and the run exits non-zero); rerun it
with the printed ``--seed``. Counts, not seconds, are the result.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["tests/dataset/test_header_fuzz.py", "tests/dataset/test_header_fuzz_dicom_2d.py"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=1000, help="generated files per reader (default 1000)")
    p.add_argument("--seed", type=int, help="Hypothesis seed (default: a random one, printed)")
    p.add_argument("--out", type=Path, help="write the tally, seed and result here (JSON)")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "tally.json"
        env = {**os.environ, "SELFCONFIG_FUZZ_EXAMPLES": str(args.examples), "SELFCONFIG_FUZZ_RANDOM": "1",
               "SELFCONFIG_FUZZ_REPORT": str(report)}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--hypothesis-seed={seed}", *MODULES]
        print(f"seed {seed}: {' '.join(cmd[2:])}", flush=True)
        rc = subprocess.call(cmd, cwd=ROOT, env=env)
        tally = json.loads(report.read_text()) if report.is_file() else {}
    print("\n| reader | examples | read exactly | refused | refusals by field |\n|---|---|---|---|---|")
    for reader, counts in sorted(tally.items()):
        read = sum(v for k, v in counts.items() if k.startswith("read"))
        refused = sum(v for k, v in counts.items() if k.startswith("refused") and ":" not in k)
        fields = ", ".join(f"{k.split(': ', 1)[1]} {v}" for k, v in sorted(counts.items()) if ": " in k)
        print(f"| {reader} | {read + refused} | {read} | {refused} | {fields} |")
    result = {"seed": seed, "examples_per_reader": args.examples, "passed": rc == 0, "tally": tally}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
