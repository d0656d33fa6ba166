"""selfconfig_evaluate -pred PRED -ref REF [-d NAME | -l LABELS_JSON] [-o OUT]

Segmentation: PRED and REF are folders of label files. Classification: PRED is a predictions CSV
(selfconfig_predict's predictions.csv) and REF a labels table (case,label).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from selfconfig.cli.validate import Parser, parse
from selfconfig.cli.common import add_common_args, add_root_args, roots_from, run, setup_logging
from selfconfig.errors import ConfigurationError


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="selfconfig_evaluate", description="Score predictions against references.")
    p.add_argument("-pred", "--predictions", required=True, help="folder of predicted label files, or predictions CSV")
    p.add_argument("-ref", "--reference", required=True, help="folder of reference label files, or labels CSV")
    p.add_argument("-d", "--dataset", help="take label names from this raw dataset's dataset.json")
    p.add_argument("-l", "--labels", help="a dataset.json (or any JSON with a 'labels' map) giving the label names")
    p.add_argument("-o", "--output", help="where summary.json and per_case.csv go (default: next to the predictions)")
    p.add_argument("-img", "--images", help="folder of the scans (CASE_0000.nii.gz ...) the overlays are drawn on "
                                            "(default: imagesTr/imagesTs beside a labelsTr/labelsTs reference)")
    p.add_argument("--no-overlays", action="store_true",
                   help="segmentation: no overlays/ PNGs; classification: no confusion matrix or ROC PNGs")
    add_root_args(p)
    add_common_args(p)
    return p


def _labels(args) -> dict:
    if args.labels:
        try:
            data = json.loads(Path(args.labels).read_bytes().decode("utf-8"))
            # a list is an nnU-Net v2 region (scored as the voxels holding any of its values)
            return {str(k): [int(x) for x in v] if isinstance(v, list) else int(v)
                    for k, v in data.get("labels", data).items()}
        except (ValueError, TypeError, AttributeError) as e:
            raise ConfigurationError(f"-l {args.labels} is not a JSON object with a 'labels' map of integers "
                                     f"(or lists of them for regions) ({type(e).__name__})") from None
    from selfconfig.dataset.schema import load_dataset_json
    from selfconfig.paths import resolve_dataset_name

    roots = roots_from(args)
    name = resolve_dataset_name(args.dataset, roots, need="raw")
    return load_dataset_json(roots.raw / name).labels


def _images(args, ref: Path) -> dict[str, list[Path]] | None:
    """Case -> scan files: from --images, else from imagesTr/imagesTs beside labelsTr/labelsTs."""
    from selfconfig.dataset.cases import channel_files

    if args.images:
        if not Path(args.images).is_dir():
            raise ConfigurationError(f"--images {args.images} is not a folder; pass the folder of the CASE_0000 files")
        return channel_files(Path(args.images))
    beside = ref.parent / ref.name.replace("labels", "images", 1)
    if args.no_overlays or not ref.name.startswith("labels") or not beside.is_dir():
        return None
    return channel_files(beside)


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv, "evaluate")
    setup_logging(args)
    from selfconfig.evaluation.evaluate import evaluate_classification_csv, evaluate_segmentation_folder
    from selfconfig.evaluation.overlays import figure_paths

    labels = _labels(args)
    pred, ref = Path(args.predictions), Path(args.reference)
    if pred.is_dir() != ref.is_dir():
        raise ConfigurationError("give two folders (segmentation) or two CSV files (classification)")
    if pred.is_dir():
        s = evaluate_segmentation_folder(pred, ref, labels, output_dir=args.output, images=_images(args, ref),
                                         overlays=not args.no_overlays)
        print(f"{s['n_cases']} case(s); Dice per class:")
        for name, value in s["mean"]["dice_per_class"].items():
            print(f"  {name:28s} {value:.4f}")
        print(f"  {'mean':28s} {s['mean']['mean_dice']:.4f}")
    else:
        s = evaluate_classification_csv(pred, ref, labels, output_dir=args.output, figures=not args.no_overlays)
        for k, v in s["metrics"].items():
            print(f"  {k:28s} {v:.4f}" if isinstance(v, float) else f"  {k:28s} {v}")
    out = Path(args.output) if args.output else (pred if pred.is_dir() else pred.parent)
    print(f"summary: {out / 'summary.json'}")
    for picture in figure_paths(s):
        print(f"figure:  {out / picture}")
    return 0


def entry() -> None:
    sys.exit(run(main))
