"""``selfconfig_predict`` with a chosen numeric precision (the CLI has no such flag yet).

Why: on CPUs with fast bfloat16 selfconfig predicts under bf16 autocast by default, while nnU-Net
predicts in float32 on the CPU. To compare float32 with float32, this does what
``selfconfig.inference.api.predict`` does, with ``Predictor(precision=...)``. Same arguments as the
CLI's subset used by bench_predict.py, plus ``--precision auto|fp32|bf16``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-i", "--input", required=True, type=Path)
    p.add_argument("-o", "--output", required=True, type=Path)
    p.add_argument("-tr", "--trainer", default="Scratch")
    p.add_argument("-d", "--dataset")
    p.add_argument("-c", "--configuration")
    p.add_argument("-frac", "--fraction", type=float)
    p.add_argument("-f", "--folds", nargs="+")
    p.add_argument("-p", "--plans", default="selfconfigPlans")
    p.add_argument("--no-tta", action="store_true")
    p.add_argument("--step-size", type=float, default=0.5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from selfconfig.inference.api import find_checkpoints, predict_files
    from selfconfig.inference.inputs import discover_inputs
    from selfconfig.inference.predictor import Predictor
    from selfconfig.paths import Roots, resolve_dataset_name
    from selfconfig.planning import load_plans
    from selfconfig.training.context import pick_device

    roots = Roots.resolve()
    name = resolve_dataset_name(args.dataset, roots, need="preprocessed")
    plans = load_plans(roots.preprocessed / name, args.plans)
    configuration = args.configuration or plans.recommended_configuration
    paths = find_checkpoints(roots, name, args.trainer, args.plans, configuration, args.fraction, args.folds)
    device = pick_device(args.device)
    predictor = Predictor.from_checkpoints(paths, device, tta=not args.no_tta, step_size=args.step_size,
                                           precision=args.precision)
    cases = discover_inputs(args.input, len(predictor.plans.channel_names))
    logging.info("predicting %d case(s), precision %s, mirroring %s", len(cases), predictor.precision,
                 "off" if args.no_tta else "on")
    predict_files(predictor, cases, args.output, progress=False)
    print(f"predicted {len(cases)} case(s) with precision {predictor.precision} into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
