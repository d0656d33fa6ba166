"""The experiment grid in one process against the same grid on a local Dask cluster of N workers.

Set-up (not timed): LUNG_LOBES phantoms (``--train-cases`` labeled, ``--test-cases`` test), planned
and preprocessed once (3d, CPU plan at a fixed ``--cpu-gflops``).

Timed, each in a fresh process and a fresh results root, the two modes alternating within every
repetition (the machine's load drifts; alternating keeps the drift off one side):

    run_experiment(LUNG_LOBES, Scratch SurrogateFlip, fractions 0.5 1.0, fold 0, tiny iteration counts)
    the same with scheduler="local:N"

Reported: wall time of each run (imports, cluster start and stop included), medians, and whether
both modes wrote the same results.csv (its run folders are relative to the results root).

    .venv/bin/python benchmarks/bench_grid.py --repeats 2 --out /tmp/bench/grid.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

RUN = """
import sys
from selfconfig.experiments.grid import run_experiment
from selfconfig.paths import Roots
roots = Roots.resolve()
overrides = {"epochs": 2, "iters_per_epoch": 5, "val_iters": 2, "num_workers": 0, "pretrain_epochs": 1,
             "pretrain_iters_per_epoch": 5, "tta": False, "precision": sys.argv[2]}
scheduler = sys.argv[1] if sys.argv[1] != "none" else None
res = run_experiment("LUNG_LOBES", ["Scratch", "SurrogateFlip"], [0.5, 1.0], [0], configuration="3d", roots=roots,
                     progress=False, overrides=overrides, scheduler=scheduler)
print(res.results_csv)
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--train-cases", type=int, default=6)
    p.add_argument("--test-cases", type=int, default=2)
    p.add_argument("--cpu-gflops", type=float, default=25.0)
    p.add_argument("--precision", default="fp32", choices=["fp32", "auto"],
                   help="fp32 (default): the same numbers with 1 or 2 torch threads; auto (bf16 on this CPU) rounds "
                        "gradients differently with another thread count, so the modes' scores differ slightly")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/selfconfig_bench/grid"))
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    from common import machine_info, make_lung_lobes

    import pandas as pd

    work = args.workdir.resolve()
    env = {**os.environ, "SELFCONFIG_RAW": str(work / "raw"), "SELFCONFIG_PREPROCESSED": str(work / "pre")}
    make_lung_lobes(work / "raw", n_train=args.train_cases, n_test=args.test_cases)
    if not (work / "pre" / "LUNG_LOBES" / "plans.json").is_file():
        from selfconfig.paths import Roots
        from selfconfig.planning import plan_and_preprocess

        plan_and_preprocess("LUNG_LOBES", configurations=["3d"], cpu_gflops=args.cpu_gflops, progress=False,
                            roots=Roots.resolve(work / "raw", work / "pre", work / "res"))
    modes = {"one process": "none", f"local Dask cluster, {args.workers} workers": f"local:{args.workers}"}
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    load_before = machine_info().get("loadavg_1_5_15")
    for rep in range(args.repeats):
        for mode, sched in modes.items():
            results = work / f"res_{sched.replace(':', '')}_{rep}"
            subprocess.run(["rm", "-rf", str(results)], check=True)
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", RUN, sched, args.precision], env={**env, "SELFCONFIG_RESULTS": str(results)},
                               capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                print(r.stderr[-3000:], file=sys.stderr)
                return 1
            csv = Path(r.stdout.strip().splitlines()[-1])
            df = pd.read_csv(csv)
            runs[mode].append({"wall_s": wall, "table": df.to_dict(orient="list")})
            print(f"[{rep + 1}/{args.repeats}] {mode}: {wall:.1f} s, {len(df)} rows", file=sys.stderr, flush=True)
    tables = [json.dumps(r["table"], sort_keys=True) for rs in runs.values() for r in rs]
    same = len(set(tables)) == 1
    summary = {m: {"walls_s": [r["wall_s"] for r in rs], "median_s": statistics.median(r["wall_s"] for r in rs)}
               for m, rs in runs.items()}
    base = summary["one process"]["median_s"]
    print("| mode | wall s per run | median s | vs one process |\n|---|---|---|---|")
    for m, s in summary.items():
        print(f"| {m} | {', '.join(f'{w:.1f}' for w in s['walls_s'])} | {s['median_s']:.1f} | "
              f"{s['median_s'] / base:.2f}x |")
    print(f"\nresults.csv identical in every run: {same}")
    out = args.out or work / "grid.json"
    out.write_text(json.dumps({"benchmark": "grid", "machine": machine_info(), "loadavg_before": load_before,
                               "summary": summary, "identical_results": same, "precision": args.precision,
                               "cells": "Scratch, SurrogateFlip x fractions 0.5, 1.0 x fold 0 (+1 pre-training)",
                               "runs": runs}, indent=2))
    print(f"JSON: {out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
