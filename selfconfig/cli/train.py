"""selfconfig_train -tr TRAINER [-d NAME] [-c CONFIG] [-f FOLD] [-frac F] [--epochs E] ..."""

from __future__ import annotations

import argparse
import sys

from selfconfig.cli.common import (CONVERGE_KEYS, add_common_args, add_convergence_args, add_logger_arg, add_plans_arg, add_root_args, add_tag_arg,
                                   add_wait_arg, roots_from, run, setup_logging)
from selfconfig.cli.launch import add_distributed_args, launch, wants_launch
from selfconfig.cli.validate import Parser, parse


def add_hyperparameter_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hyperparameters (default: the trainer's, see documentation/training.md)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--iters-per-epoch", type=int)
    g.add_argument("--val-iters", type=int, help="validation batches per epoch")
    g.add_argument("--lr", type=float, help="initial learning rate")
    g.add_argument("--warmup-fraction", type=float,
                   help="linear learning-rate warm-up over this fraction of the run's iterations (default: the trainer's)")
    g.add_argument("--optimizer", choices=["sgd", "adamw"], help="default: adamw on CPU, sgd (nnU-Net's) on GPU")
    g.add_argument("--batch-size", type=int, help="default: the plans' batch size")
    g.add_argument("--seed", type=int)
    g.add_argument("--num-workers", type=int, help="background loader processes")
    g.add_argument("--checkpoint-every", type=int, help="epochs between checkpoint_latest writes")
    g.add_argument("--checkpoint-minutes", type=float,
                   help="also write checkpoint_latest whenever this many minutes passed since the last (default 5)")
    g.add_argument("--class-weights", choices=["balanced"], help="classification: weight classes by inverse frequency")
    g.add_argument("--no-augment", dest="augment", action="store_const", const=False, help="switch augmentation off")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: fp16 on CUDA, bf16 on CPUs with fast bfloat16, else fp32")
    g.add_argument("--max-minutes", type=float,
                   help="wall-clock budget: stop after this many minutes of training (the learning-rate schedule is "
                        "fitted to it from the measured speed; --epochs x --iters-per-epoch stays the upper bound)")
    g.add_argument("--pretrain-epochs", type=int, help="surrogate strategies: pre-training epochs (if it must run)")
    g.add_argument("--pretrain-iters-per-epoch", type=int)
    g.add_argument("--pretrain-lr", type=float)
    g.add_argument("--pretrain-max-minutes", type=float, help="surrogate strategies: wall-clock budget of the pre-training")
    g.add_argument("--pretrain-until-converged", action="store_const", const=True,
                   help="surrogate strategies: pre-train until the held-out pretext score converged")
    g.add_argument("--pretrained-weights", help="ImageNet: a torchvision-format ResNet state dict (or another "
                                                "EfficientNet-Lite0 file)")
    g.add_argument("--inflate-3d", action="store_const", const=True,
                   help="ImageNet on 3D data: inflate the 2D kernels along depth instead of refusing")
    g.add_argument("--no-final-validation", dest="final_validation", action="store_const", const=False,
                   help="skip predicting the validation cases at the end")
    g.add_argument("--npz", dest="save_probabilities", action="store_const", const=True,
                   help="the final validation also saves the probabilities (CASE_probabilities.npz), which "
                        "selfconfig_find_best_configuration ensembles (it predicts them itself when missing)")


HP_KEYS = ("epochs", "iters_per_epoch", "val_iters", "lr", "warmup_fraction", "optimizer", "batch_size", "seed", "num_workers", "checkpoint_every",
           "checkpoint_minutes", "class_weights", "augment", "final_validation", "precision", "pretrain_epochs",
           "pretrain_iters_per_epoch", "pretrain_lr", "pretrained_weights", "inflate_3d", "max_minutes",
           "pretrain_max_minutes", "save_probabilities", "until_converged", "pretrain_until_converged", *CONVERGE_KEYS)


#: iteration counts a run cannot do without (0 would train nothing and fail later, unclearly)
AT_LEAST_ONE = ("epochs", "iters_per_epoch", "pretrain_epochs", "pretrain_iters_per_epoch")


def overrides_from(args: argparse.Namespace, keys=HP_KEYS) -> dict:
    """The hyperparameters given on the command line (flag ``--a-b`` sets ``a_b``)."""
    from selfconfig.errors import ConfigurationError

    given = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    for k in AT_LEAST_ONE:
        if k in given and given[k] < 1:
            raise ConfigurationError(f"--{k.replace('_', '-')} must be at least 1, got {given[k]}")
    return given


def parse_fold(text: str) -> int | str:
    return "all" if text == "all" else int(text)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="selfconfig_train", description="Train one fold at one label fraction.")
    p.add_argument("-tr", "--trainer", default="Scratch", help="trainer name or module:Class (default Scratch)")
    p.add_argument("-d", "--dataset", help="dataset (optional when only one is preprocessed)")
    p.add_argument("-c", "--configuration", help="configuration (default: the plans' recommended one)")
    p.add_argument("-f", "--fold", default="0", help="fold 0..4 or 'all' (default 0)")
    p.add_argument("-frac", "--fraction", type=float, default=1.0, help="fraction of the fold's labeled cases (0, 1]")
    add_plans_arg(p)
    p.add_argument("--continue", dest="continue_training", action="store_true",
                   help="resume an interrupted run, or extend a finished one with more --epochs")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run in the same folder")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--list", action="store_true", help="list the available trainers and exit")
    add_distributed_args(p)
    add_hyperparameter_args(p)
    add_convergence_args(p)
    add_tag_arg(p)
    add_logger_arg(p)
    add_root_args(p)
    add_wait_arg(p, "run")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv, "train")
    setup_logging(args)
    if args.list:
        from selfconfig.training.registry import available_trainers, get_trainer

        for name in available_trainers():
            print(f"{name:20s} {getattr(get_trainer(name), 'description', '')}")
        return 0
    if wants_launch(args):
        return launch("selfconfig.cli.train", argv, args.nproc_per_node)
    from selfconfig.training.api import train
    from selfconfig.training.distributed import is_writer
    from selfconfig.training.tracking import use_loggers

    with use_loggers(args.logger):
        res = train(args.trainer, args.dataset, configuration=args.configuration, fold=parse_fold(args.fold),
                    fraction=args.fraction, plans_name=args.plans, hyperparameters=overrides_from(args),
                    continue_training=args.continue_training, overwrite=args.overwrite, device=args.device,
                    roots=roots_from(args), progress=not args.no_progress, tag=args.tag, wait=args.wait)
    if not is_writer():
        return 0  # rank 0 reports for all
    print(f"run folder: {res.run_dir}")
    if (res.run_dir / "report.html").is_file():
        print(f"report:     {res.run_dir / 'report.html'}")
    if res.validation:
        from selfconfig.inference.validation import headline

        print(f"validation: {headline(res.validation)} ({res.run_dir / 'validation' / 'summary.json'})")
    return 0


def entry() -> None:
    sys.exit(run(main))


if __name__ == "__main__":  # python -m selfconfig.cli.train (what torchrun starts)
    sys.exit(run(main, prog="selfconfig_train"))
