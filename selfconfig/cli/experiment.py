"""selfconfig_experiment -d NAME -tr Scratch SurrogateFlip [ImageNet ...] -frac 0.1 0.25 0.5 1.0 -f 0 1 2 3 4 [--budget quick|full] [--epochs N] [--scheduler ADDRESS|local:N]"""

from __future__ import annotations

import argparse
import sys

from selfconfig.cli.common import (add_common_args, add_logger_arg, add_plans_arg, add_root_args, add_wait_arg,
                                   roots_from, run, setup_logging)
from selfconfig.cli.validate import Parser, parse


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="selfconfig_experiment",
        description="The paper's protocol: every strategy x label fraction x fold, scored on the test set and the "
                    "validation folds; writes results.csv, paired.csv, summary.md (with the paper's claims on the "
                    "bundled examples) and figure.png.")
    p.add_argument("-d", "--dataset", help="dataset (optional when only one is preprocessed)")
    p.add_argument("-tr", "--trainers", nargs="+", default=["Scratch"], help="strategies (Scratch first: the baseline)")
    p.add_argument("-frac", "--fractions", nargs="+", type=float, default=[0.1, 0.25, 0.5, 1.0])
    p.add_argument("-f", "--folds", nargs="+",
                   help="folds (default: the budget's: demo 0, quick 0 1 2, full 0 1 2 3 4)")
    p.add_argument("-c", "--configuration", help="default: the recommended one (its _imagenet twin with ImageNet)")
    add_plans_arg(p)
    p.add_argument("--budget", default="quick", choices=["demo", "quick", "converge", "full"],
                   help="quick: 60 s of estimated iterations per cell (300 on a plan made with --cpu-seconds 0.25), "
                        "folds 0-2 (LUNG_LOBES, 2 strategies: 56 min on a 2-core CPU); converge: every cell and "
                        "pre-training until converged (--until-converged; capped at 20 min of estimated iterations), "
                        "folds 0-2; full: trainer defaults, 5 folds")
    p.add_argument("--epochs", type=int,
                   help="fine-tuning epochs of every cell instead of the budget's; finished cells with fewer "
                        "epochs are extended")
    p.add_argument("--iters-per-epoch", type=int, help="iterations per epoch instead of the budget's (new cells)")
    p.add_argument("--pretrain-epochs", type=int,
                   help="pre-training epochs instead of the budget's (a pre-training made with other settings is "
                        "refused, naming them)")
    p.add_argument("--max-minutes", type=float,
                   help="wall-clock budget of every cell's training (the schedule is fitted to it; new cells)")
    p.add_argument("--pretrain-max-minutes", type=float, help="wall-clock budget of each pre-training")
    p.add_argument("--device", help="cpu, cuda or cuda:N")
    p.add_argument("--inflate-3d", action="store_const", const=True, help="ImageNet on 3D: kernel inflation")
    p.add_argument("--pretrained-weights", help="ImageNet: weights file (ResNet planners)")
    add_logger_arg(p)
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the cells as tasks on a Dask cluster: a scheduler address (tcp://HOST:8786) or local:N "
                        "(a local cluster of N workers); needs pip install 'selfconfig[cluster]'")
    add_root_args(p)
    add_wait_arg(p, "cells' run")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv, "experiment")
    setup_logging(args)
    from selfconfig.cli.train import overrides_from, parse_fold
    from selfconfig.experiments.grid import run_experiment

    overrides = overrides_from(args, ("inflate_3d", "pretrained_weights", "epochs", "iters_per_epoch",
                                      "pretrain_epochs", "max_minutes", "pretrain_max_minutes"))
    from selfconfig.training.tracking import use_loggers

    folds = [parse_fold(f) for f in args.folds] if args.folds else None
    with use_loggers(args.logger):
        res = run_experiment(args.dataset, args.trainers, args.fractions, folds,
                             configuration=args.configuration, plans_name=args.plans, budget=args.budget,
                             roots=roots_from(args), device=args.device, progress=not args.no_progress,
                             overrides=overrides, scheduler=args.scheduler, wait=args.wait)
    print(res.summary_text)
    print(f"results: {res.results_csv}")
    print(f"paired:  {res.paired_csv}")
    print(f"summary: {res.summary_md}")
    print(f"figure:  {res.figure}")
    print(f"report:  {res.report}")
    for picture in res.pictures:
        print(f"picture: {picture}")
    return 0


def entry() -> None:
    sys.exit(run(main))
