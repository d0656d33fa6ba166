"""selfconfig_export_model -d NAME -tr TRAINER [-c CONFIG ...] [-frac F] [-f FOLD ...] -o model.zip"""

from __future__ import annotations

import argparse
import sys

from selfconfig.cli.common import (add_common_args, add_plans_arg, add_root_args, add_tag_arg, roots_from, run,
                                   setup_logging)
from selfconfig.cli.validate import Parser


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="selfconfig_export_model",
                                description="Write a trained model (plans, checkpoints, post-processing, model card) "
                                            "into one zip that selfconfig_install_model installs elsewhere.")
    p.add_argument("-d", "--dataset", help="dataset (optional when only one)")
    p.add_argument("-tr", "--trainer", nargs="+", default=["Scratch"],
                   help="trainer (default Scratch); several with several -c for an ensemble")
    p.add_argument("-c", "--configuration", nargs="+", help="configuration(s) (default: the recommended one)")
    p.add_argument("-frac", "--fraction", type=float, help="label fraction (default: the only one trained)")
    p.add_argument("-f", "--folds", nargs="+", help="folds (default: every finished fold)")
    add_plans_arg(p)
    p.add_argument("--checkpoint", default="final", choices=["final", "best"], help="which checkpoint to export")
    p.add_argument("--postprocessing", help="post-processing file to ship (default: the one "
                                            "selfconfig_find_best_configuration decided for these members, if any)")
    p.add_argument("-o", "--output", required=True, help="the .zip to write")
    add_tag_arg(p)
    add_root_args(p)
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # one-line errors (Parser); -o is a .zip, not a folder
    setup_logging(args)
    from selfconfig.inference.export import export_model
    from selfconfig.training.registry import get_trainer

    def describe(name: str) -> str:
        try:
            return getattr(get_trainer(name), "description", "") or ""
        except Exception:  # a custom trainer not importable here: the card still records its name and class
            return ""

    card = export_model(args.output, trainer=args.trainer, dataset=args.dataset, configuration=args.configuration,
                        fraction=args.fraction, folds=args.folds, plans_name=args.plans, checkpoint=args.checkpoint,
                        postprocessing=args.postprocessing, tag=args.tag, roots=roots_from(args),
                        describe=describe)
    n = sum(len(m["checkpoints"]) for m in card["members"])
    print(f"exported {card['model_id']} ({n} checkpoint(s), folds {card['folds']}) to {args.output}")
    return 0


def entry() -> None:
    sys.exit(run(main))
