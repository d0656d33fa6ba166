"""selfconfig_find_best_configuration -d NAME [-tr TRAINER ...] [-c CONFIG ...] [-frac F] [-f FOLD ...]

Compares the cross-validation results of the trained configurations and their ensembles, decides
the post-processing per class, and writes the decision and the predict command."""

from __future__ import annotations

import argparse
import sys

from selfconfig.cli.common import (add_common_args, add_plans_arg, add_root_args, add_tag_arg, roots_from, run,
                                   setup_logging)
from selfconfig.cli.validate import Parser, parse


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="selfconfig_find_best_configuration",
        description="Pick the best configuration (or ensemble of two) by cross-validated Dice and decide per "
                    "class whether keeping only the largest connected component helps.")
    p.add_argument("-d", "--dataset", help="dataset (optional when only one raw dataset exists)")
    p.add_argument("-tr", "--trainers", nargs="+", help="trainers to compare (default: every trained one)")
    p.add_argument("-c", "--configurations", nargs="+", help="configurations to compare (default: every trained one)")
    p.add_argument("-frac", "--fraction", type=float, help="label fraction (default: the only one trained)")
    p.add_argument("-f", "--folds", nargs="+", help="folds (default: those every candidate finished)")
    add_plans_arg(p)
    p.add_argument("--no-ensembles", action="store_true", help="compare single configurations only")
    p.add_argument("--device", help="cpu, cuda or cuda:N (for validation cases that must be predicted again)")
    add_tag_arg(p)
    add_root_args(p)
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv, "find_best_configuration")
    setup_logging(args)
    from selfconfig.experiments.best_configuration import find_best_configuration

    res = find_best_configuration(args.dataset, trainers=args.trainers, configurations=args.configurations,
                                  fraction=args.fraction, folds=args.folds, plans_name=args.plans, tag=args.tag,
                                  ensembles=not args.no_ensembles, device=args.device, roots=roots_from(args),
                                  progress=not args.no_progress)
    print((res.folder / "inference_instructions.txt").read_text(), end="")
    print(f"written to {res.folder}")
    return 0


def entry() -> None:
    sys.exit(run(main))
