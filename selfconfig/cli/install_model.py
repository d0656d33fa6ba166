"""selfconfig_install_model model.zip [--results ROOT] [--overwrite]"""

from __future__ import annotations

import argparse
import sys

from selfconfig.cli.common import add_common_args, add_root_args, roots_from, run, setup_logging
from selfconfig.cli.validate import Parser, parse


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="selfconfig_install_model",
                                description="Check a model package and install it into the results root, where "
                                            "selfconfig_predict finds it (no dataset needed).")
    p.add_argument("package", help="the .zip written by selfconfig_export_model")
    p.add_argument("--overwrite", action="store_true", help="replace files of an installed model that differ")
    add_root_args(p)
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv, "install_model")
    setup_logging(args)
    from selfconfig.inference.install import install_model

    res = install_model(args.package, roots=roots_from(args), overwrite=args.overwrite)
    print(f"installed {res.card.get('model_id')} into {res.target}")
    print(f"predict with: {res.predict_command}")
    return 0


def entry() -> None:
    sys.exit(run(main))
