"""selfconfig_predict -i IN -o OUT -tr TRAINER [-d NAME] [-c CONFIG [CONFIG ...]] [-frac F] [-f FOLDS]
[--postprocessing FILE] [--no-tta] ..."""

from __future__ import annotations

import argparse
import sys

from selfconfig.cli.validate import Parser, parse
from selfconfig.cli.common import (add_common_args, add_plans_arg, add_root_args, add_tag_arg, add_wait_arg,
                                   roots_from, run, setup_logging)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="selfconfig_predict",
                                description="Predict a folder of scans (or one scan) with trained folds.")
    p.add_argument("-i", "--input", required=True, help="a folder of cases, a single image file or a DICOM series folder")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("-tr", "--trainer", nargs="+", default=["Scratch"],
                   help="trainer of the run (default Scratch); several with several -c: one per configuration")
    p.add_argument("-d", "--dataset", help="dataset the model was trained on (optional when only one)")
    p.add_argument("-c", "--configuration", nargs="+",
                   help="configuration (default: the plans' recommended one); several: an ensemble, the mean of "
                        "their probabilities")
    p.add_argument("-frac", "--fraction", type=float, help="label fraction of the run (default: the only one trained)")
    p.add_argument("-f", "--folds", nargs="+", help="folds to ensemble (default: every finished fold)")
    add_plans_arg(p)
    p.add_argument("-chk", "--checkpoint", default="final", choices=["final", "best", "latest"],
                   help="which checkpoint of each fold: final (default; after the annealing tail of a run trained "
                        "until converged), best (the best validation score: whole scans with --until-converged), "
                        "latest (an interrupted run)")
    p.add_argument("--no-tta", action="store_true", help="no mirroring test-time augmentation")
    p.add_argument("--save-probabilities", action="store_true", help="also write CASE_probabilities.npz")
    p.add_argument("--postprocessing", help="post-processing file written by selfconfig_find_best_configuration "
                                            "(keeps the largest component of the classes it names)")
    p.add_argument("--step-size", type=float, default=0.5, help="sliding-window step as a fraction of the patch")
    p.add_argument("--device", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: fp16 on CUDA, bf16 on CPUs with fast bfloat16, else fp32")
    p.add_argument("--stitch", default="auto", choices=["auto", "device", "cpu"],
                   help="GPU runs: where a 3D case's windows are stitched; auto: on the GPU unless the volume "
                        "would take more than half its free memory (a large CT), then on the CPU")
    add_tag_arg(p)
    add_root_args(p)
    add_wait_arg(p, "output")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv, "predict")
    setup_logging(args)
    from selfconfig.inference.api import predict

    res = predict(args.input, args.output, trainer=args.trainer, dataset=args.dataset,
                  configuration=args.configuration, fraction=args.fraction, folds=args.folds,
                  plans_name=args.plans, checkpoint=args.checkpoint, tta=not args.no_tta,
                  save_probabilities=args.save_probabilities, step_size=args.step_size, device=args.device,
                  roots=roots_from(args), progress=not args.no_progress, tag=args.tag, precision=args.precision,
                  postprocessing=args.postprocessing, stitch=args.stitch, wait=args.wait)
    print(f"predicted {len(res.cases)} case(s) with {len(res.checkpoints)} model(s) into {res.output}")
    return 0


def entry() -> None:
    sys.exit(run(main))
