"""selfconfig_pretrain -d NAME -tr STRATEGY [-c CONFIG] [--epochs E] [--iters-per-epoch I]

Pre-trains a surrogate strategy on the unlabeled pool (training cases without labels + imagesUn)
and writes results/NAME/pretrain/<Strategy>__<plans>__<config>/checkpoint.pt.
"""

from __future__ import annotations

import argparse
import sys

from selfconfig.cli.common import (CONVERGE_KEYS, add_common_args, add_convergence_args, add_logger_arg, add_plans_arg, add_root_args, add_tag_arg,
                                   add_wait_arg, roots_from, run, setup_logging)
from selfconfig.cli.launch import add_distributed_args, launch, wants_launch
from selfconfig.cli.validate import Parser, parse


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="selfconfig_pretrain", description="Pre-train a surrogate task on unlabeled scans.")
    p.add_argument("-tr", "--trainer", required=True, help="surrogate strategy, e.g. SurrogateFlip")
    p.add_argument("-d", "--dataset", help="dataset (optional when only one is preprocessed)")
    p.add_argument("-c", "--configuration", help="configuration (default: the plans' recommended one)")
    add_plans_arg(p)
    p.add_argument("--epochs", type=int, help="pre-training epochs")
    p.add_argument("--iters-per-epoch", type=int, help="pre-training iterations per epoch")
    p.add_argument("--lr", type=float, help="pre-training learning rate (default: the task's)")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget of the pre-training (the schedule is fitted to it)")
    p.add_argument("--val-iters", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--checkpoint-minutes", type=float,
                   help="write checkpoint_latest whenever this many minutes passed since the last (default 5)")
    p.add_argument("--overwrite", action="store_true", help="pre-train again even if a checkpoint exists")
    p.add_argument("--device", help="cpu, cuda or cuda:N")
    add_convergence_args(p, dest="pretrain_until_converged", what="pre-training")
    add_distributed_args(p)
    add_tag_arg(p)
    add_logger_arg(p)
    add_root_args(p)
    add_wait_arg(p, "pre-training")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv, "pretrain")
    setup_logging(args)
    if wants_launch(args):
        return launch("selfconfig.cli.pretrain", argv, args.nproc_per_node)
    from selfconfig.pretext.api import run_pretraining
    from selfconfig.training.distributed import is_writer

    overrides = {"pretrain_epochs": args.epochs, "pretrain_iters_per_epoch": args.iters_per_epoch,
                 "pretrain_lr": args.lr, "val_iters": args.val_iters, "batch_size": args.batch_size,
                 "num_workers": args.num_workers, "precision": args.precision,
                 "pretrain_max_minutes": args.max_minutes, "checkpoint_minutes": args.checkpoint_minutes,
                 "pretrain_until_converged": args.pretrain_until_converged,
                 **{k: getattr(args, k) for k in CONVERGE_KEYS}}
    from selfconfig.training.tracking import use_loggers

    with use_loggers(args.logger):
        res = run_pretraining(args.trainer, args.dataset, configuration=args.configuration, plans_name=args.plans,
                              hyperparameters=overrides, overwrite=args.overwrite, device=args.device,
                              roots=roots_from(args), progress=not args.no_progress, tag=args.tag,
                              wait=args.wait)
    if not is_writer():
        return 0  # rank 0 reports for all
    # the held-out accuracy and any warning about it were logged by run_pretraining (both paths)
    state = "pre-trained" if res.trained else "already pre-trained"
    print(f"{state}: {res.checkpoint}")
    if (res.checkpoint.parent / "report.html").is_file():
        print(f"report: {res.checkpoint.parent / 'report.html'}")
    return 0


def entry() -> None:
    sys.exit(run(main))


if __name__ == "__main__":  # python -m selfconfig.cli.pretrain (what torchrun starts)
    sys.exit(run(main, prog="selfconfig_pretrain"))
