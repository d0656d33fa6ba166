"""selfconfig_make_example NAME [--cases N] [--seed S] [--overwrite]"""

from __future__ import annotations

import argparse
import inspect
import sys

from selfconfig.cli.validate import Parser, parse
from selfconfig.cli.common import add_common_args, add_root_args, roots_from, run, setup_logging


def build_parser() -> argparse.ArgumentParser:
    from selfconfig.examples import EXAMPLES

    p = Parser(prog="selfconfig_make_example",
                                description="Write one of the paper's four applications as a SYNTHETIC raw dataset.")
    p.add_argument("name", help=" | ".join(EXAMPLES))
    p.add_argument("--cases", type=int, help="number of labeled training cases (scans for NODULE_FPR); "
                                             "test and unlabeled splits scale with it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    p.add_argument("--exist-ok", action="store_true", help="keep an existing dataset of that name and succeed")
    add_root_args(p)
    add_common_args(p)
    return p


def sizes_for(name: str, cases: int | None) -> dict:
    """Scale the generator's default split sizes so that training has ``cases`` cases."""
    if cases is None:
        return {}
    import importlib

    from selfconfig.examples import get_example

    fn = importlib.import_module(get_example(name).module).generate
    params = inspect.signature(fn).parameters
    train_key = next(k for k in ("n_train", "n_train_scans") if k in params)
    base = params[train_key].default
    out = {}
    for k, prm in params.items():
        if k.startswith("n_") and isinstance(prm.default, int):
            out[k] = max(1, round(prm.default * cases / base))
    out[train_key] = cases
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv, "make_example")
    setup_logging(args)
    from selfconfig.examples import make_example

    roots = roots_from(args)
    from selfconfig.examples import get_example

    existing = roots.raw / get_example(args.name).name
    if args.exist_ok and not args.overwrite and (existing / "dataset.json").is_file():
        print(f"{existing} exists: kept (use --overwrite to write it again)")
        return 0
    out = make_example(args.name, roots.raw, seed=args.seed, overwrite=args.overwrite, **sizes_for(args.name, args.cases))
    print(f"wrote {out} (SYNTHETIC data; see its dataset.json)")
    return 0


def entry() -> None:
    sys.exit(run(main))
