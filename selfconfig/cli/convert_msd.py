"""selfconfig_convert_msd -i TaskNN_Name [-overwrite_id ID] [-np N]

Converts a Medical Segmentation Decathlon task folder into an nnU-Net v2 raw dataset
``DatasetNNN_Name`` under the raw root (4D images split into one file per channel), as
``nnUNetv2_convert_MSD_dataset`` does; plan it with ``selfconfig_plan_and_preprocess -d NNN``.
"""

from __future__ import annotations

import argparse
import sys

from selfconfig.cli.validate import Parser, parse
from selfconfig.cli.common import add_common_args, add_root_args, roots_from, run, setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="selfconfig_convert_msd",
               description="Convert a Medical Segmentation Decathlon task (TaskNN_Name) into an "
                           "nnU-Net v2 raw dataset DatasetNNN_Name.")
    p.add_argument("-i", "--input", required=True, help="the MSD task folder, e.g. Task04_Hippocampus")
    p.add_argument("-overwrite_id", "--overwrite-id", type=int, default=None,
                   help="dataset id of the result (default: the task number, e.g. 4 -> Dataset004_Hippocampus)")
    p.add_argument("-np", "--num-processes", type=int, default=1, help="processes that split the 4D images")
    add_root_args(p)
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv, "convert_msd")
    setup_logging(args)
    from selfconfig.dataset.msd import convert_msd_dataset
    from selfconfig.errors import ConfigurationError

    if args.num_processes < 1:
        raise ConfigurationError(f"-np {args.num_processes}: use at least 1 process")
    res = convert_msd_dataset(args.input, roots=roots_from(args), overwrite_id=args.overwrite_id,
                              num_processes=args.num_processes, progress=not args.no_progress)
    print(f"wrote {res.target}: {res.n_training} training and {res.n_test} test case(s), "
          f"{res.n_channels} channel(s) each; next: selfconfig_plan_and_preprocess -d {res.dataset_name}")
    return 0


def entry() -> None:
    sys.exit(run(main))
