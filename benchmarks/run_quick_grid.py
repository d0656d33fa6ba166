"""One application's quick grid, as documentation/results.md reports it, with its wall time and
the reference that says whether the quick cells have learned.

In a fresh folder (``--workdir``/NAME), one step after the other, each timed:

    selfconfig_make_example NAME
    selfconfig_plan_and_preprocess -d NAME --cpu-seconds 0.25          # a plan for short budgets
    selfconfig_experiment -d NAME -tr STRATEGIES --budget quick        # 4 fractions x 3 folds

``-f`` runs some of the folds and ``--resume`` continues in the same work folder: the example and
its plan are kept, the experiment skips the cells it finished before (and reports only the folds of
the call, so resume with every fold the report should hold), and ``timing.json`` adds the part's
seconds to the grid's (``grid_parts`` lists each part). A long grid then runs in two parts as

    .venv/bin/python benchmarks/run_quick_grid.py SKIN_SEG -tr Scratch ImageNet SurrogateColor -f 0 --reference
    .venv/bin/python benchmarks/run_quick_grid.py SKIN_SEG -tr Scratch ImageNet SurrogateColor --resume

then, with ``--reference``, the same plan's Scratch at 100 % of fold 0 trained four times as many
iterations (``--epochs`` 4x the quick budget's, its wall-clock cap 4x too) into a separate results
folder, and the ratio of the quick cell's test metric to the reference's (issue: at least 0.8).

Writes results.csv, paired.csv, summary.md, figure.png and ``timing.json`` (the machine, every
step's seconds, the iterations per cell, the reference) into ``--out`` (default
documentation/results/NAME). Run it on an otherwise idle machine:

    .venv/bin/python benchmarks/run_quick_grid.py LUNG_LOBES -tr Scratch SurrogateFlip --reference
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fresh_dir, machine_info, run_step, selfconfig_env, selfconfig_exe, test_row  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _test_metric(results_csv: Path, strategy: str, fraction: float, fold: int) -> float | None:
    try:
        return float(test_row(results_csv, fraction, fold, strategy)["value"])
    except KeyError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("-tr", "--trainers", nargs="+", required=True)
    ap.add_argument("-c", "--configuration")
    ap.add_argument("--cpu-seconds", type=float, default=0.25)
    ap.add_argument("--reference", action="store_true", help="also train Scratch 100 %% fold 0 four times longer")
    ap.add_argument("-f", "--folds", nargs="+", type=int, help="these folds only (default: the budget's 0-2)")
    ap.add_argument("--resume", action="store_true",
                    help="continue in the work folder: keep the example, the plan and the finished cells")
    ap.add_argument("--workdir", default="/tmp/sc_quick_grids")
    ap.add_argument("--out", help="default: documentation/results/DATASET")
    args = ap.parse_args()

    out = Path(args.out) if args.out else REPO / "documentation" / "results" / args.dataset
    work = Path(args.workdir) / args.dataset
    plans_file = work / "preprocessed" / args.dataset / "plans.json"
    resuming = args.resume and plans_file.is_file()
    if args.resume and not resuming:
        print(f"nothing to resume in {work} (no plans.json): starting afresh")
    if not resuming:
        fresh_dir(work)
    env = selfconfig_env(work / "raw", work / "preprocessed", work / "results")
    earlier = json.loads((out / "timing.json").read_text()) if resuming and (out / "timing.json").is_file() else {}
    timing: dict = {"dataset": args.dataset, "trainers": args.trainers,
                    "started": earlier.get("started", time.strftime("%Y-%m-%d %H:%M:%S")),
                    "machine": machine_info(), "seconds": dict(earlier.get("seconds", {})),
                    "grid_parts": list(earlier.get("grid_parts", []))}
    sec = timing["seconds"]
    if not resuming:
        sec["make_example"] = run_step("make_example", [selfconfig_exe("selfconfig_make_example"), args.dataset],
                                       env, work)
        sec["plan_and_preprocess"] = run_step("plan_and_preprocess", [
            selfconfig_exe("selfconfig_plan_and_preprocess"), "-d", args.dataset,
            "--cpu-seconds", str(args.cpu_seconds), "--no-progress"], env, work)
    exp = [selfconfig_exe("selfconfig_experiment"), "-d", args.dataset, "-tr", *args.trainers, "--budget", "quick",
           "--no-progress"] + (["-c", args.configuration] if args.configuration else [])
    if args.folds:
        exp += ["-f", *map(str, args.folds)]
    part = run_step("grid", exp, env, work)
    timing["grid_parts"].append({"folds": args.folds or "all", "seconds": part,
                                 "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    sec["grid"] = round(sum(p["seconds"] for p in timing["grid_parts"]), 1)

    # what the plan and the budget gave each cell
    os.environ.update({k: env[k] for k in ("SELFCONFIG_RAW", "SELFCONFIG_PREPROCESSED", "SELFCONFIG_RESULTS")})
    from selfconfig.experiments.budgets import budget_hyperparameters, get_budget, pretext_cost
    from selfconfig.experiments.grid import choose_configuration
    from selfconfig.plans import Plans
    from selfconfig.training.registry import get_trainer

    plans = Plans.load(work / "preprocessed" / args.dataset / "plans.json")
    config_name = args.configuration or choose_configuration(plans, args.trainers, None)
    config = plans.configuration(config_name)
    quick = get_budget("quick")
    budget = plans.budget
    timing["machine"].update({"precision": budget.precision, "cpu_gflops": budget.cpu_gflops,
                              "cpu_gflops_by_encoder": budget.cpu_gflops_by_encoder})
    timing["configuration"] = {"name": config_name, "patch_size": list(config.patch_size),
                               "batch_size": config.batch_size, "spacing": [round(s, 3) for s in config.spacing],
                               "estimated_iteration_seconds": config.estimated_iteration_seconds}
    per_strategy = {}
    for s in args.trainers:
        cls = get_trainer(s)
        task = "classification" if plans.task == "classification" else "segmentation"
        hp = budget_hyperparameters(quick, config, pretext_cost(getattr(cls, "pretext_task", None), config, task, budget))
        per_strategy[s] = {"iterations": hp["epochs"] * hp["iters_per_epoch"],
                           "pretrain_iterations": (hp["pretrain_epochs"] * hp["pretrain_iters_per_epoch"]
                                                   if getattr(cls, "uses_pretraining", False) else None)}
    timing["per_strategy"] = per_strategy

    exp_dir = work / "results" / args.dataset / "experiment"
    if args.reference:
        hp = budget_hyperparameters(quick, config)
        ref_env = selfconfig_env(work / "raw", work / "preprocessed", work / "reference")
        ref_cmd = [selfconfig_exe("selfconfig_experiment"), "-d", args.dataset, "-tr", "Scratch", "-frac", "1.0", "-f", "0",
                   "--budget", "quick", "--epochs", str(4 * hp["epochs"]), "--max-minutes", str(4 * quick.train_minutes),
                   "--no-progress", "-c", config_name]
        sec["reference"] = run_step("reference", ref_cmd, ref_env, work)
        ref = _test_metric(work / "reference" / args.dataset / "experiment" / "results.csv", "Scratch", 1.0, 0)
        mine = _test_metric(exp_dir / "results.csv", "Scratch", 1.0, 0)
        timing["reference"] = {"iterations": 4 * hp["epochs"] * hp["iters_per_epoch"], "test": ref,
                               "quick_fold0_test": mine,
                               "ratio": round(mine / ref, 3) if ref and mine is not None else None}
    elif "reference" in earlier:
        timing["reference"] = earlier["reference"]
        mine = _test_metric(exp_dir / "results.csv", "Scratch", 1.0, 0)
        if mine is not None:  # fold 0 may have run in this part
            ref = timing["reference"]["test"]
            timing["reference"].update(quick_fold0_test=mine, ratio=round(mine / ref, 3) if ref else None)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.csv", "paired.csv", "summary.md", "figure.png"):
        if (exp_dir / name).is_file():
            shutil.copy2(exp_dir / name, out / name)
    timing["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    (out / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    print(json.dumps(timing, indent=2))


if __name__ == "__main__":
    main()
