"""Time to accuracy: Scratch with all labels under a wall-clock budget, scored on the held-out test set.

For one example dataset (made here, planned by this machine's planner), train Scratch on fold 0 with
100 % of the labels under ``--max-minutes`` (the learning-rate schedule is fitted to it), keep the
network's weights whenever the loop's clock passes one of ``--snapshots`` minutes, and score every
snapshot on the test scans at their own resolution (no test-time mirroring). Reported: the test
metric after each snapshot and the first snapshot at which it reaches each of ``--thresholds``.

Every snapshot comes from the same run, whose schedule decays towards ``--max-minutes``: the
2-minute snapshot still has a high learning rate, so it is a lower bound on what a dedicated
2-minute run (``--max-minutes 2``) reaches.

``--compare-fullres``: also train the full-resolution configuration (``3d``, what the planner of
earlier versions recommended) for the same minutes when the plan recommends ``3d_lowres``.
``--cpu-gflops`` / ``--precision fp32`` plan and train as a slower machine would (e.g. a 2-core CPU
without fast bf16 measured 40.6 GFLOP/s). ``--overwrite-target-spacing``: plan the full-resolution
configuration at a coarser (or finer) spacing than the data's (the plan-and-preprocess option of
the same name); the test scans are still scored at their own resolution.

    .venv/bin/python benchmarks/bench_time_to_accuracy.py --dataset LUNG_LOBES --max-minutes 10 \\
        [--snapshots 1 2 5 10] [--compare-fullres] [--cpu-gflops 40.6 --precision fp32] \\
        [--overwrite-target-spacing 2 2] [--batch-size B] [--out FILE.json]

Run it on an otherwise idle machine: the budget is wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def snapshot_trainer(base, minutes: list[float], folder: Path):
    """A subclass of trainer ``base`` that saves the network's weights at the given minutes of loop time."""
    import torch

    from selfconfig.training.loop import Callback

    class Snapshots(Callback):
        def __init__(self):
            self.left = sorted(minutes)

        def on_epoch_end(self, module, state, logs):
            while self.left and state.elapsed_seconds / 60 >= self.left[0] - 1e-9:
                m = self.left.pop(0)
                folder.mkdir(parents=True, exist_ok=True)
                torch.save({"network": module.network.state_dict(), "minutes": state.elapsed_seconds / 60,
                            "iterations": state.global_step}, folder / f"snapshot_{m:g}min.pt")

        def on_fit_end(self, module, state):  # the final weights count for every snapshot not reached
            for m in list(self.left):
                if state.elapsed_seconds / 60 >= m - 0.25:  # the run stops at the step that passes the budget
                    self.left.remove(m)
                    torch.save({"network": module.network.state_dict(), "minutes": state.elapsed_seconds / 60,
                                "iterations": state.global_step}, folder / f"snapshot_{m:g}min.pt")

    class SnapshotTrainer(base):
        name = base.name

        def extra_callbacks(self, run):
            return [*super().extra_callbacks(run), Snapshots()]

    return SnapshotTrainer


def score_snapshot(run_dir: Path, snap: Path, raw_dir: Path, test_ids: list[str], out: Path) -> dict:
    import torch

    from selfconfig.checkpoint import load_checkpoint, save_checkpoint
    from selfconfig.experiments.scoring import metric_value
    from selfconfig.inference.predictor import Predictor
    from selfconfig.inference.validation import predict_and_score

    final = load_checkpoint(run_dir / "checkpoint_final.pt")
    weights = torch.load(snap, map_location="cpu", weights_only=True)
    ckpt = {**final, "module": {"network": weights["network"]}}
    path = out / "checkpoint.pt"
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, ckpt)
    predictor = Predictor.from_checkpoints([path], torch.device("cpu"), tta=False)
    summary = predict_and_score(predictor, raw_dir, "test", test_ids, out / "test", progress=False)
    scores = metric_value(raw_dir, "test", test_ids, summary, out / "test")
    return {"minutes": round(float(weights["minutes"]), 2), "iterations": int(weights["iterations"]),
            "test": round(float(scores["value"]), 4), "metric": scores.get("metric")}


def machine() -> dict:
    import torch

    from planners.budget import cpu_model
    from selfconfig.precision import cpu_has_fast_bf16

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "fast_bf16": cpu_has_fast_bf16(), "load_average_at_start": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="LUNG_LOBES", help="example dataset (selfconfig_make_example NAME)")
    ap.add_argument("--max-minutes", type=float, default=10.0)
    ap.add_argument("--snapshots", type=float, nargs="+", default=[1, 2, 3, 5, 7, 10])
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.85])
    ap.add_argument("--configuration", help="default: the plans' recommended one")
    ap.add_argument("--compare-fullres", action="store_true", help="also train 3d when 3d_lowres is recommended")
    ap.add_argument("--cpu-gflops", type=float, help="plan as a machine of this measured throughput")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    ap.add_argument("--overwrite-target-spacing", type=float, nargs="+", metavar="MM",
                    help="plan the full-resolution configuration at this spacing (plans 'targetSpacingPlans')")
    ap.add_argument("--batch-size", type=int, help="train with this batch instead of the plan's")
    ap.add_argument("--workdir", default="/tmp/sc_bench_tta")
    ap.add_argument("--out", help="JSON file for the results (default: WORKDIR/DATASET.json)")
    args = ap.parse_args()

    from selfconfig.examples import make_example
    from selfconfig.inference.validation import raw_cases
    from selfconfig.paths import DEFAULT_PLANS_NAME, Roots
    from selfconfig.planning import plan_and_preprocess
    from selfconfig.training.context import open_dataset
    from selfconfig.training.registry import get_trainer
    from selfconfig.training.run import train_run
    from selfconfig.device import pick_device

    work = Path(args.workdir)
    roots = Roots(work / "raw", work / "preprocessed", work / "results")
    info = {"machine": machine(), "dataset": args.dataset, "max_minutes": args.max_minutes,
            "cpu_gflops_given": args.cpu_gflops, "precision": args.precision, "runs": []}
    if not (roots.raw / args.dataset / "dataset.json").is_file():
        make_example(args.dataset, roots.raw)
    t0 = time.perf_counter()
    plans_name = "targetSpacingPlans" if args.overwrite_target_spacing else DEFAULT_PLANS_NAME
    info["target_spacing_given"] = args.overwrite_target_spacing
    res = plan_and_preprocess(args.dataset, roots=roots, cpu_gflops=args.cpu_gflops, progress=False,
                              plans_name=plans_name, target_spacing=args.overwrite_target_spacing)
    info["plan_seconds"] = round(time.perf_counter() - t0, 1)
    plans = res.plans
    info["planned_gflops"] = plans.budget.cpu_gflops
    info["plan_note"] = plans.budget.cpu_measurement_note
    configs = [args.configuration or plans.recommended_configuration]
    if args.compare_fullres and configs[0].endswith("_lowres"):
        configs.append(configs[0].replace("_lowres", ""))
    raw_dir = roots.raw / args.dataset
    test_ids = [c.case_id for c in raw_cases(raw_dir, "test")[1]]
    for config in configs:
        data = open_dataset(args.dataset, config, plans_name=plans_name, roots=roots, tag="tta")
        cfg = data.config
        snaps = work / "snapshots" / config
        trainer = snapshot_trainer(get_trainer("Scratch"), [m for m in args.snapshots if m <= args.max_minutes],
                                   snaps)
        hp = {"max_minutes": args.max_minutes, "epochs": 100000, "iters_per_epoch": 10, "val_iters": 2,
              "precision": args.precision, "final_validation": False}
        if args.batch_size:
            hp["batch_size"] = args.batch_size
        t0 = time.perf_counter()
        run = train_run(trainer, data, 0, 1.0, hp, overwrite=True, device=pick_device("cpu"), progress=False)
        wall = time.perf_counter() - t0
        timing = json.loads((run.run_dir / "training_time.json").read_text())
        points = [score_snapshot(run.run_dir, p, raw_dir, test_ids, work / "scores" / config / p.stem)
                  for p in sorted(snaps.glob("snapshot_*.pt"), key=lambda p: float(p.stem[9:-3]))]
        reach = {f"{t:g}": next((p["minutes"] for p in points if p["test"] >= t), None) for t in args.thresholds}
        info["runs"].append({"configuration": config, "spacing": cfg.spacing, "patch": cfg.patch_size,
                             "batch": args.batch_size or cfg.batch_size, "planned_batch": cfg.batch_size,
                             "median_shape": cfg.median_shape,
                             "estimated_iteration_seconds": cfg.estimated_iteration_seconds,
                             "training": timing, "wall_seconds": round(wall, 1), "snapshots": points,
                             "minutes_to_reach": reach})
        print(f"{args.dataset} {config}: patch {cfg.patch_size} at {cfg.spacing}, {timing['iterations']} iterations "
              f"in {timing['minutes']} min", flush=True)
        for p in points:
            print(f"  {p['minutes']:5.2f} min  {p['iterations']:5d} it  test {p['metric']} {p['test']:.3f}", flush=True)
        print("  minutes to reach: " + ", ".join(f"{k}: {v if v is not None else '-'}" for k, v in reach.items()))
    out = Path(args.out) if args.out else work / f"{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
