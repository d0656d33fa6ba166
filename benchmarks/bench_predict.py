"""Prediction time per case, selfconfig vs nnU-Net v2, with the same U-Net, patch and mirroring.

Set-up (not timed):
1. LUNG_LOBES with ``--train-cases`` labeled and ``--cases`` test cases (synthetic 3D CT).
2. selfconfig plans and preprocesses it (3d). ``--plan cpu`` (default): selfconfig's CPU plan with
   the CPU throughput fixed by ``--cpu-gflops`` (so the network does not depend on the load of the
   moment); ``--plan gpu8``: its 8 GB GPU plan, the same patch and network as nnU-Net's 3d_fullres.
3. selfconfig trains Scratch for 1 epoch of 1 iteration (a real run folder with a final checkpoint).
4. nnU-Net fingerprints and plans Dataset501 (a copy of the same training cases); then
   nnunet_make_model.py rewrites its 3d_fullres plan to selfconfig's patch, spacing, normalisation
   and PlainConvUNet topology and saves a randomly initialised fold_0/checkpoint_final.pth that
   allows test-time mirroring along the selfconfig plan's ``mirror_axes`` (in nnU-Net's axis order).
   Both networks' parameter counts and shape lists are compared (they must be equal).

Timed (each in a fresh subprocess; peak memory = summed PSS/RSS of the process tree):
    selfconfig_predict -i IN -o OUT -tr Scratch -frac 1.0 -f 0 -c 3d [--no-tta]
    nnUNetv2_predict   -i IN -o OUT -d 501 -c 3d_fullres -f 0 [--disable_tta] -npp 1 -nps 1 -device cpu
on a folder with 1 case and on one with all ``--cases`` cases, mirroring off and/or on, step size
0.5 for both. Mirroring on runs every subset of the plan's mirror axes: 2**len(mirror_axes)
mirrorings for both tools (8 when the plan mirrors all three axes, 4 when its mirror rule leaves one
out; the report and the JSON give each tool's axes and count). Then
    per-case time = (t(N cases) - t(1 case)) / (N - 1)       (medians over repetitions)
    start-up time = t(1 case) - per-case time                  (imports, model loading, workers)
selfconfig's default precision is bf16 autocast on CPUs with fast bfloat16 (float32 otherwise);
nnU-Net always predicts in float32 on the CPU. ``--selfconfig-precision fp32`` (or ``both``) adds a
float32 selfconfig row (``selfconfig_predict --precision fp32``).

Usage (with the selfconfig virtualenv's python):
    .venv/bin/python benchmarks/bench_predict.py --cases 6 --repeats 3 --out /tmp/bench/predict.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (BENCH_DIR, NNUNET_DATASET_ID, NNUNET_DATASET_NAME, SELFCONFIG_DATASET_NAME,  # noqa: E402
                    Measurement, fail, fmt, fmt_ratio, fresh_dir, machine_info, make_lung_lobes, make_nnunet_dataset,
                    markdown_table, median, nnunet_env, nnunet_exe, nnunet_missing_reason, run_checked,
                    run_measured, selfconfig_env, selfconfig_exe, write_json)

NNUNET_MODEL = "nnUNetTrainer__nnUNetPlans__3d_fullres"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--cases", type=int, default=6, help="test cases to predict (default 6, at least 2)")
    p.add_argument("--train-cases", type=int, default=10, help="labeled cases for the set-up (default 10)")
    p.add_argument("--repeats", type=int, default=3, help="repetitions of every timed command (default 3)")
    p.add_argument("--mirroring", choices=["off", "on", "both"], default="both",
                   help="test-time mirroring (default both)")
    p.add_argument("--selfconfig-precision", choices=["auto", "fp32", "both"], default="auto",
                   help="auto = as shipped (bf16 on CPUs with fast bf16); fp32; or both rows")
    p.add_argument("--plan", choices=["cpu", "gpu8"], default="cpu",
                   help="selfconfig plan to benchmark: its CPU plan (default) or its 8 GB GPU plan (nnU-Net-sized)")
    p.add_argument("--cpu-gflops", type=float, default=25.0,
                   help="--plan cpu: CPU throughput the planner assumes (fixed for reproducible plans)")
    p.add_argument("--step-size", type=float, default=0.5, help="sliding-window step of both tools (default 0.5)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/selfconfig_bench"), help="scratch folder")
    p.add_argument("--out", type=Path, help="JSON results (default WORKDIR/predict.json)")
    p.add_argument("--skip-nnunet", action="store_true", help="only run selfconfig")
    p.add_argument("--reuse-setup", action="store_true", help="reuse models from an earlier run in WORKDIR")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per run before it is killed")
    return p


class Setup:
    """Folders and environments shared by the set-up and the timed runs."""

    def __init__(self, work: Path):
        self.work = work
        self.sc_raw = work / "raw_selfconfig"
        self.sc_pre = work / "preprocessed_selfconfig"
        self.sc_res = work / "results_selfconfig"
        self.nn_raw = work / "raw_nnunet"
        self.nn_pre = work / "preprocessed_nnunet"
        self.nn_res = work / "results_nnunet"
        self.logs = work / "logs"
        self.sc_env = selfconfig_env(self.sc_raw, self.sc_pre, self.sc_res)
        self.nn_env = nnunet_env(self.nn_raw, self.nn_pre, self.nn_res)

    @property
    def sc_plans(self) -> Path:
        return self.sc_pre / SELFCONFIG_DATASET_NAME / "plans.json"

    @property
    def sc_checkpoint(self) -> Path:
        return (self.sc_res / SELFCONFIG_DATASET_NAME / "Scratch__selfconfigPlans__3d" / "frac_1.0" / "fold_0"
                / "checkpoint_final.pt")

    @property
    def nn_model(self) -> Path:
        return self.nn_res / NNUNET_DATASET_NAME / NNUNET_MODEL


def setup_selfconfig(s: Setup, args: argparse.Namespace) -> None:
    plan_flags = ["--gpu-memory-gb", "8"] if args.plan == "gpu8" else ["--cpu-gflops", str(args.cpu_gflops)]
    fresh_dir(s.sc_pre)
    fresh_dir(s.sc_res)
    print("set-up: selfconfig plan + preprocess ...", file=sys.stderr, flush=True)
    run_checked([selfconfig_exe("selfconfig_plan_and_preprocess"), "-d", SELFCONFIG_DATASET_NAME, "-c", "3d",
                 "-np", "2", "--no-progress", *plan_flags], env=s.sc_env, cwd=s.work,
                log=s.logs / "setup_selfconfig_plan.log", what="selfconfig_plan_and_preprocess")
    print("set-up: selfconfig 1-iteration training ...", file=sys.stderr, flush=True)
    run_checked([selfconfig_exe("selfconfig_train"), "-d", SELFCONFIG_DATASET_NAME, "-c", "3d", "-tr", "Scratch",
                 "-f", "0", "--epochs", "1", "--iters-per-epoch", "1", "--val-iters", "1",
                 "--no-final-validation", "--no-progress"], env=s.sc_env, cwd=s.work,
                log=s.logs / "setup_selfconfig_train.log", what="selfconfig_train")


def setup_nnunet(s: Setup, src: Path) -> dict:
    make_nnunet_dataset(src, s.nn_raw)
    fresh_dir(s.nn_pre)
    fresh_dir(s.nn_res)
    print("set-up: nnU-Net fingerprint + plan ...", file=sys.stderr, flush=True)
    run_checked([nnunet_exe("nnUNetv2_extract_fingerprint"), "-d", str(NNUNET_DATASET_ID), "-np", "2"],
                env=s.nn_env, cwd=s.work, log=s.logs / "setup_nnunet_fingerprint.log",
                what="nnUNetv2_extract_fingerprint")
    run_checked([nnunet_exe("nnUNetv2_plan_experiment"), "-d", str(NNUNET_DATASET_ID)],
                env=s.nn_env, cwd=s.work, log=s.logs / "setup_nnunet_plan.log", what="nnUNetv2_plan_experiment")
    print("set-up: nnU-Net model with selfconfig's plan ...", file=sys.stderr, flush=True)
    log = s.logs / "setup_nnunet_model.log"
    m = run_measured("nnunet_make_model", [
        nnunet_exe("python"), str(BENCH_DIR / "nnunet_make_model.py"), "--selfconfig-plans", str(s.sc_plans),
        "--nnunet-preprocessed", str(s.nn_pre / NNUNET_DATASET_NAME),
        "--dataset-json", str(s.nn_raw / NNUNET_DATASET_NAME / "dataset.json"), "--model-dir", str(s.nn_model)],
        env=s.nn_env, cwd=s.work, log=log)
    if not m.ok:
        fail("nnunet_make_model.py", m)
    info = json.loads(log.read_text().strip().splitlines()[-1])
    (s.nn_model / "bench_model_info.json").write_text(json.dumps(info, indent=2))
    return info


def selfconfig_network_info(plans_path: Path) -> dict:
    """Parameters of selfconfig's network for the plan, built the way its predictor builds it."""
    from selfconfig.inference.predictor import build_network_for
    from selfconfig.plans import Plans
    from selfconfig.precision import resolve_precision

    plans = Plans.from_dict(json.loads(plans_path.read_text()))
    net = build_network_for(plans, "3d")
    cfg = plans.configuration("3d")
    return {"parameters": int(sum(t.numel() for t in net.parameters())),
            "parameter_shapes": sorted([list(t.shape) for t in net.parameters()]),
            "patch_size": list(cfg.patch_size), "features_per_stage": list(cfg.network.encoder.features_per_stage),
            "mirror_axes": list(cfg.axes_to_mirror()), "mirror_axes_reason": cfg.mirror_axes_reason,
            "auto_precision_on_cpu": resolve_precision("auto", "cpu")}


def link_inputs(src: Path, dst: Path, n: int) -> list[str]:
    """``dst`` holds the first ``n`` test images (hard links, else copies); returns their case ids."""
    fresh_dir(dst)
    files = sorted(src.glob("*_0000.nii.gz"))[:n]
    for f in files:
        try:
            (dst / f.name).hardlink_to(f)
        except OSError:
            shutil.copy2(f, dst / f.name)
    return [f.name[: -len("_0000.nii.gz")] for f in files]


def mirrorings(axes: list[int], mirroring: bool) -> int:
    """Network evaluations per window: every subset of the mirror axes (the identity included)."""
    return 2 ** len(axes) if mirroring else 1


def tool_mirror_axes(tools: list[str], sc_info: dict, nn_info: dict | None) -> dict[str, list[int]]:
    """The axes each tool mirrors at test time: selfconfig its plan's, nnU-Net those its checkpoint
    allows (a model from before nnunet_make_model.py wrote them: every axis)."""
    nn_axes = None if nn_info is None else nn_info.get("mirror_axes", list(range(len(nn_info["patch_size"]))))
    return {t: (nn_axes if t.startswith("nnU-Net") else sc_info["mirror_axes"]) for t in tools}


def commands(tool: str, inp: Path, out: Path, mirroring: bool, step: float) -> list[str]:
    if tool.startswith("selfconfig"):
        base = [selfconfig_exe("selfconfig_predict"), "--no-progress"] + (["--precision", "fp32"] if tool.endswith("fp32") else [])
        cmd = [*base, "-i", str(inp), "-o", str(out), "-tr", "Scratch", "-frac", "1.0", "-f", "0", "-c", "3d",
               "--step-size", str(step), "--device", "cpu"]
        return cmd + ([] if mirroring else ["--no-tta"])
    cmd = [nnunet_exe("nnUNetv2_predict"), "-i", str(inp), "-o", str(out), "-d", str(NNUNET_DATASET_ID),
           "-c", "3d_fullres", "-f", "0", "-npp", "1", "-nps", "1", "-device", "cpu", "-step_size", str(step),
           "--disable_progress_bar"]
    return cmd + ([] if mirroring else ["--disable_tta"])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cases < 2:
        sys.exit("--cases must be at least 2 (per-case time = (t(N) - t(1)) / (N - 1))")
    work = (args.workdir / "predict").resolve()
    out_json = args.out or args.workdir.resolve() / "predict.json"
    s = Setup(work)
    run_nnunet = not args.skip_nnunet
    if run_nnunet and (reason := nnunet_missing_reason()):
        print(f"skipping nnU-Net: {reason}", file=sys.stderr)
        run_nnunet = False

    src = make_lung_lobes(s.sc_raw, n_train=args.train_cases, n_test=args.cases)
    reuse = args.reuse_setup and s.sc_checkpoint.is_file() and (not run_nnunet or (s.nn_model / "fold_0").is_dir())
    if not reuse:
        setup_selfconfig(s, args)
    sc_info = selfconfig_network_info(s.sc_plans)
    nn_info = None
    if run_nnunet:
        nn_info = (json.loads((s.nn_model / "bench_model_info.json").read_text()) if reuse
                   else setup_nnunet(s, src))
        same = nn_info["parameter_shapes"] == sc_info["parameter_shapes"]
        print(f"parameters: selfconfig {sc_info['parameters']:,}, nnU-Net {nn_info['parameters']:,}; "
              f"identical parameter shapes: {same}", file=sys.stderr)

    inputs = {1: s.work / "input_1", args.cases: s.work / f"input_{args.cases}"}
    test_images = src / "imagesTs"
    for n, folder in inputs.items():
        link_inputs(test_images, folder, n)

    tools = []
    if args.selfconfig_precision in ("auto", "both"):
        tools.append(f"selfconfig ({sc_info['auto_precision_on_cpu']}, as shipped)")
    if args.selfconfig_precision in ("fp32", "both"):
        tools.append("selfconfig fp32")
    if run_nnunet:
        tools.append("nnU-Net v2 (fp32)")
    mirror_settings = {"off": [False], "on": [True], "both": [False, True]}[args.mirroring]

    args.load_before = machine_info().get("loadavg_1_5_15")
    runs: dict[str, list[Measurement]] = {}
    for rep in range(args.repeats):
        for mirroring in mirror_settings:
            for n, inp in inputs.items():
                for tool in tools:
                    key = f"{tool}|mirroring={'on' if mirroring else 'off'}|n={n}"
                    out = fresh_dir(s.work / "output")
                    env = s.nn_env if tool.startswith("nnU-Net") else s.sc_env
                    print(f"[{rep + 1}/{args.repeats}] {key} ...", file=sys.stderr, flush=True)
                    slug = key.replace(" ", "_").replace("|", "_").replace("(", "").replace(")", "").replace(",", "")
                    m = run_measured(key, commands(tool, inp, out, mirroring, args.step_size), env=env, cwd=s.work,
                                     log=s.logs / f"{slug}_rep{rep}.log", timeout=args.timeout)
                    written = sorted(p.name for p in out.glob("*.nii.gz"))
                    m.extra["outputs"] = len(written)
                    if m.ok and len(written) != n:
                        m.returncode = -1000  # ran, but did not write every case
                    print(f"    {m.wall_s:.1f} s, peak tree PSS {m.peak_tree_pss_mb:.0f} MB, exit {m.returncode}, "
                          f"{len(written)}/{n} outputs", file=sys.stderr, flush=True)
                    runs.setdefault(key, []).append(m)

    summary = summarise(runs, tools, mirror_settings, args.cases, tool_mirror_axes(tools, sc_info, nn_info))
    print_report(summary, sc_info, nn_info, args)
    write_json(out_json, {"benchmark": "predict", "cases": args.cases, "repeats": args.repeats, "plan": args.plan,
                          "step_size": args.step_size, "machine": machine_info(), "loadavg_before": args.load_before,
                          "selfconfig_network": {k: v for k, v in sc_info.items() if k != "parameter_shapes"},
                          "nnunet_network": nn_info and {k: v for k, v in nn_info.items() if k != "parameter_shapes"},
                          "identical_parameter_shapes":
                              nn_info and nn_info["parameter_shapes"] == sc_info["parameter_shapes"],
                          "summary": summary, "runs": runs})
    print(f"\nJSON written to {out_json}")
    return 0 if all(r.ok for ms in runs.values() for r in ms) else 1


def summarise(runs: dict[str, list[Measurement]], tools: list[str], mirror_settings: list[bool], n: int,
              mirror_axes: dict[str, list[int]]) -> list[dict]:
    rows = []
    for mirroring in mirror_settings:
        m = "on" if mirroring else "off"
        for tool in tools:
            one = [r for r in runs[f"{tool}|mirroring={m}|n=1"] if r.ok]
            many = [r for r in runs[f"{tool}|mirroring={m}|n={n}"] if r.ok]
            t1 = median([r.wall_s for r in one])
            tn = median([r.wall_s for r in many])
            per_case = None if t1 is None or tn is None else (tn - t1) / (n - 1)
            rows.append({
                "tool": tool, "mirroring": m, "mirror_axes": mirror_axes[tool] if mirroring else [],
                "mirrorings": mirrorings(mirror_axes[tool], mirroring), "cases": n, "ok_runs": f"{len(one) + len(many)}/"
                f"{len(runs[f'{tool}|mirroring={m}|n=1']) + len(runs[f'{tool}|mirroring={m}|n={n}'])}",
                "median_wall_1_case_s": t1, "median_wall_n_cases_s": tn, "per_case_s": per_case,
                "startup_s": None if per_case is None else t1 - per_case,
                "median_peak_tree_pss_mb": median([r.peak_tree_pss_mb for r in many]),
                "median_peak_tree_rss_mb": median([r.peak_tree_rss_mb for r in many]),
            })
    return rows


def print_report(summary: list[dict], sc_info: dict, nn_info: dict | None, args: argparse.Namespace) -> None:
    info = machine_info()
    print(f"\n### Prediction, LUNG_LOBES 3D, {args.cases} test cases, {args.repeats} repetition(s), "
          f"plan '{args.plan}'; "
          f"{info.get('cpus')} CPUs, load average (1/5/15 min) {args.load_before} before, "
          f"{info.get('loadavg_1_5_15')} after\n")
    print(f"Network: patch {sc_info['patch_size']}, features {sc_info['features_per_stage']}; parameters "
          f"selfconfig {sc_info['parameters']:,}" + (f", nnU-Net {nn_info['parameters']:,} (identical parameter "
          f"shapes: {nn_info['parameter_shapes'] == sc_info['parameter_shapes']})" if nn_info else "") + "\n")
    if any(r["mirroring"] == "on" for r in summary):
        counts = {r["tool"]: (r["mirror_axes"], r["mirrorings"]) for r in summary if r["mirroring"] == "on"}
        print("Mirroring on: " + "; ".join(f"{t} mirrors axes {a} ({m} mirrorings)" for t, (a, m) in counts.items())
              + f". selfconfig's plan: {sc_info['mirror_axes_reason'] or 'every axis'}"
              + ("" if len({m for _, m in counts.values()}) == 1 else
                 ". NOT the same number of mirrorings: the per-case times compare different work") + "\n")
    header = ["tool", "mirroring", "mirrorings", f"total {args.cases} cases s", "1 case s", "per case s", "start-up s",
              "per case vs nnU-Net", f"peak tree PSS MB ({args.cases} cases)", "peak tree RSS MB"]
    base = {r["mirroring"]: r for r in summary if r["tool"].startswith("nnU-Net")}
    rows = []
    for r in summary:
        b = base.get(r["mirroring"])
        rows.append([r["tool"], r["mirroring"], str(r["mirrorings"]), fmt(r["median_wall_n_cases_s"]),
                     fmt(r["median_wall_1_case_s"]),
                     fmt(r["per_case_s"], 2), fmt(r["startup_s"]),
                     fmt_ratio(r["per_case_s"], b and b["per_case_s"]),
                     fmt(r["median_peak_tree_pss_mb"], 0), fmt(r["median_peak_tree_rss_mb"], 0)])
    print(markdown_table(header, rows))
    print("\nper case = (t(N) - t(1)) / (N - 1); start-up = t(1) - per case; medians of the repetitions. "
          "selfconfig 'auto' is bf16 autocast on CPUs with fast bfloat16; nnU-Net predicts in fp32 on the CPU.")


if __name__ == "__main__":
    sys.exit(main())
