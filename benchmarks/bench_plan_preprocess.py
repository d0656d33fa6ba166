"""Plan + preprocess, selfconfig vs nnU-Net v2, on the same synthetic 3D dataset.

What is timed (each repetition, each tool, a fresh subprocess and a fresh, empty preprocessed root):

* selfconfig: ``selfconfig_plan_and_preprocess -d LUNG_LOBES -c 3d -np 2`` as shipped: verify the
  dataset, fingerprint, plan every configuration (on a CPU this includes a short measurement of the
  CPU's training throughput for the 3D and the 2D network), preprocess the 3d configuration.
  Extra rows with other flags via ``--selfconfig-args`` (default adds ``--gpu-memory-gb 8``: the
  GPU plan, the same patch and network as nnU-Net's 3d_fullres, and no CPU measurement).
* nnU-Net v2: ``nnUNetv2_plan_and_preprocess -d 501 -c 3d_fullres -np 2`` as shipped: fingerprint
  extraction (``-npfp`` default 8 processes), planning of 2d/3d_fullres/3d_lowres, preprocessing of
  3d_fullres with 2 processes. Without ``--verify_dataset_integrity`` it does not verify the dataset.

Memory is the peak of the summed RSS and PSS over the whole process tree, sampled every 50 ms
from /proc (see common.py). Reported: medians over the repetitions; tools alternate within each
repetition so that a burst of load from elsewhere hits both.

Usage (with the selfconfig virtualenv's python):
    .venv/bin/python benchmarks/bench_plan_preprocess.py --repeats 3 --out /tmp/bench/plan.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (NNUNET_DATASET_ID, SELFCONFIG_DATASET_NAME, Measurement, fmt, fmt_ratio,  # noqa: E402
                    fresh_dir, machine_info, make_lung_lobes, make_nnunet_dataset, markdown_table, median,
                    nnunet_env, nnunet_exe, nnunet_missing_reason, run_measured, selfconfig_env,
                    selfconfig_exe, write_json)

DEFAULT_SELFCONFIG_VARIANTS = ["", "--gpu-memory-gb 8"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--cases", type=int, default=20, help="training cases (default 20)")
    p.add_argument("--repeats", type=int, default=3, help="repetitions per tool (default 3)")
    p.add_argument("--num-processes", "-np", type=int, default=2, help="-np of both tools (default 2)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/selfconfig_bench"), help="scratch folder")
    p.add_argument("--out", type=Path, help="JSON results (default WORKDIR/plan_preprocess.json)")
    p.add_argument("--skip-nnunet", action="store_true", help="only run selfconfig")
    p.add_argument("--skip-selfconfig", action="store_true", help="only run nnU-Net")
    p.add_argument("--selfconfig-args", action="append", default=None, metavar="ARGS",
                   help="extra selfconfig flags; one row per use ('' = as shipped). "
                        f"Default: {DEFAULT_SELFCONFIG_VARIANTS}")
    p.add_argument("--nnunet-args", default="", metavar="ARGS",
                   help="extra nnU-Net flags, e.g. '-npfp 2' (default: none, as shipped)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run before it is killed")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = args.workdir.resolve()
    out_json = args.out or work / "plan_preprocess.json"
    variants = args.selfconfig_args if args.selfconfig_args is not None else DEFAULT_SELFCONFIG_VARIANTS
    if args.skip_selfconfig:
        variants = []

    run_nnunet = not args.skip_nnunet
    if run_nnunet and (reason := nnunet_missing_reason()):
        print(f"skipping nnU-Net: {reason}", file=sys.stderr)
        run_nnunet = False

    sc_raw = work / "selfconfig_raw"
    src = make_lung_lobes(sc_raw, n_train=args.cases, n_test=0)
    nn_raw = work / "nnunet_raw"
    if run_nnunet:
        make_nnunet_dataset(src, nn_raw)

    # each entry: (row label, command builder)
    jobs: list[tuple[str, list[str], dict]] = []
    for v in variants:
        cmd = [selfconfig_exe("selfconfig_plan_and_preprocess"), "-d", SELFCONFIG_DATASET_NAME, "-c", "3d",
               "-np", str(args.num_processes), "--no-progress", *shlex.split(v)]
        label = "selfconfig" + (f" {v}" if v else "")
        jobs.append((label, cmd, selfconfig_env(sc_raw, work / "pp_selfconfig", work / "results_selfconfig")))
    if run_nnunet:
        cmd = [nnunet_exe("nnUNetv2_plan_and_preprocess"), "-d", str(NNUNET_DATASET_ID), "-c", "3d_fullres",
               "-np", str(args.num_processes), *shlex.split(args.nnunet_args)]
        label = "nnU-Net v2" + (f" {args.nnunet_args}" if args.nnunet_args else "")
        jobs.append((label, cmd, nnunet_env(nn_raw, work / "pp_nnunet", work / "results_nnunet")))
    if not jobs:
        print("nothing to run", file=sys.stderr)
        return 1

    load_before = machine_info().get("loadavg_1_5_15")
    runs: dict[str, list[Measurement]] = {label: [] for label, _, _ in jobs}
    for rep in range(args.repeats):
        for i, (label, cmd, env) in enumerate(jobs):
            pp_root = Path(env.get("SELFCONFIG_PREPROCESSED") or env["nnUNet_preprocessed"])
            fresh_dir(pp_root)
            print(f"[{rep + 1}/{args.repeats}] {label} ...", file=sys.stderr, flush=True)
            m = run_measured(label, cmd, env=env, cwd=work, log=work / "logs" / f"plan_{i}_rep{rep}.log",
                             timeout=args.timeout)
            print(f"    {m.wall_s:.1f} s, peak tree RSS {m.peak_tree_rss_mb:.0f} MB, PSS {m.peak_tree_pss_mb:.0f} MB, "
                  f"exit {m.returncode}", file=sys.stderr, flush=True)
            if not m.ok:
                print(f"    FAILED: see {m.log}", file=sys.stderr)
            runs[label].append(m)

    summary = summarise(runs)
    nn_label = next((label for label in runs if label.startswith("nnU-Net")), None)
    header = ["tool / command", "ok runs", "median wall s (min-max)", "median peak tree RSS MB",
              "median peak tree PSS MB", "max single-process RSS MB", "wall vs nnU-Net", "PSS vs nnU-Net"]
    rows = []
    for label, s in summary.items():
        base = summary.get(nn_label) if nn_label else None
        rows.append([label, f"{s['ok_runs']}/{s['runs']}",
                     f"{fmt(s['median_wall_s'])} ({fmt(s['min_wall_s'])}-{fmt(s['max_wall_s'])})",
                     fmt(s["median_peak_tree_rss_mb"], 0), fmt(s["median_peak_tree_pss_mb"], 0),
                     fmt(s["median_max_single_rss_mb"], 0),
                     fmt_ratio(s["median_wall_s"], base and base["median_wall_s"]),
                     fmt_ratio(s["median_peak_tree_pss_mb"], base and base["median_peak_tree_pss_mb"])])
    info = machine_info()
    print(f"\n### Plan + preprocess, {args.cases} cases LUNG_LOBES (3D), -np {args.num_processes}, "
          f"{args.repeats} repetition(s); {info.get('cpus')} CPUs, load average (1/5/15 min) {load_before} "
          f"before, {info.get('loadavg_1_5_15')} after\n")
    print(markdown_table(header, rows))
    print("\nRatios are tool / nnU-Net (below 1 = faster or smaller). Memory: peak of the summed RSS "
          "(a shared page counts in every process that maps it) and PSS (shared pages split between "
          "the processes) over the process tree; single-process RSS is what /usr/bin/time -v reports.")
    write_json(out_json, {"benchmark": "plan_preprocess", "cases": args.cases, "repeats": args.repeats,
                          "num_processes": args.num_processes, "machine": info, "loadavg_before": load_before,
                          "summary": summary,
                          "commands": {label: cmd for label, cmd, _ in jobs},
                          "runs": {k: v for k, v in runs.items()}})
    print(f"\nJSON written to {out_json}")
    return 0 if all(s["ok_runs"] == s["runs"] for s in summary.values()) else 1


def summarise(runs: dict[str, list[Measurement]]) -> dict[str, dict]:
    out = {}
    for label, ms in runs.items():
        ok = [m for m in ms if m.ok]
        walls = [m.wall_s for m in ok]
        out[label] = {
            "runs": len(ms), "ok_runs": len(ok),
            "median_wall_s": median(walls), "min_wall_s": min(walls) if walls else None,
            "max_wall_s": max(walls) if walls else None,
            "median_peak_tree_rss_mb": median([m.peak_tree_rss_mb for m in ok]),
            "median_peak_tree_pss_mb": median([m.peak_tree_pss_mb for m in ok]),
            "median_max_single_rss_mb": median([m.max_single_rss_mb for m in ok]),
            "max_processes": max((m.max_processes for m in ok), default=None),
        }
    return out


if __name__ == "__main__":
    sys.exit(main())
