"""selfconfig_plan_and_preprocess -d NAME [-c 2d 3d] [-np N] [-pl PLANNER] [--verify] [--gpu-memory-gb G] [--scheduler ADDRESS|local:N]"""

from __future__ import annotations

import argparse
import sys

from selfconfig.cli.validate import Parser, parse
from selfconfig.cli.common import add_common_args, add_root_args, roots_from, run, setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="selfconfig_plan_and_preprocess",
        description="Verify a raw dataset, fingerprint it, plan the configurations and preprocess every split.")
    p.add_argument("-d", "--dataset", help="dataset name or nnU-Net id (optional when only one raw dataset exists)")
    p.add_argument("-c", "--configurations", nargs="+", help="configurations to preprocess (default: all planned)")
    p.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="verify and preprocess the cases as tasks on a Dask cluster instead of -np local processes: "
                        "a scheduler address (tcp://HOST:8786) or local:N; needs pip install 'selfconfig[cluster]'")
    p.add_argument("-pl", "--planner", default="DefaultPlanner", help="planner class name or module:Class")
    p.add_argument("--plans-name", help="name of the plans (default: the planner's)")
    p.add_argument("--verify", action="store_true", help="only verify the dataset and report problems")
    p.add_argument("--gpu-memory-gb", type=float, help="plan for a GPU with this much memory (default: plan for this CPU)")
    p.add_argument("--cpu-seconds", type=float, default=1.0, help="CPU plans: target seconds per training iteration")
    p.add_argument("--cpu-gflops", type=float, help="CPU plans: effective GFLOP/s to assume instead of measuring")
    p.add_argument("--overwrite-target-spacing", type=float, nargs="+", metavar="MM",
                   help="plan the full-resolution configuration at this spacing instead of the data's median "
                        "(z y x for 3D, y x for 2D; nnU-Net's -overwrite_target_spacing); needs --plans-name")
    p.add_argument("--remeasure-cpu", action="store_true",
                   help="CPU plans: measure the throughput again instead of reusing this machine's earlier measurement")
    add_root_args(p)
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv, "plan")
    setup_logging(args)
    from selfconfig.planning import format_plans_summary, plan_and_preprocess

    res = plan_and_preprocess(
        args.dataset, configurations=args.configurations, planner=args.planner, num_processes=args.num_processes,
        verify_only=args.verify, gpu_memory_gb=args.gpu_memory_gb, cpu_target_seconds=args.cpu_seconds,
        cpu_gflops=args.cpu_gflops, roots=roots_from(args), progress=not args.no_progress,
        plans_name=args.plans_name, remeasure_cpu=args.remeasure_cpu, scheduler=args.scheduler,
        target_spacing=args.overwrite_target_spacing)
    n = res.verified_cases
    print(f"{res.dataset}: verified {n['train']} training, {n['test']} test and {n['unlabeled']} unlabeled case(s): no problems")
    for line in res.stale:
        print(f"preprocessed data out of date: {line}")
    if res.plans is not None:
        print(format_plans_summary(res.plans))
        print(f"plans written to {res.plans_path}")
        print(f"preprocessed {', '.join(res.preprocessed)} in {res.seconds:.1f} s")
    for w in res.warnings:  # last, where a reader looks: the dataset cannot train as it is
        print(f"WARNING: {w}", file=sys.stderr)
    return 0


def entry() -> None:
    sys.exit(run(main))
