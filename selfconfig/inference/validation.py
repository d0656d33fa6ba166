"""Score a finished run on its validation fold: predict the raw validation cases whole (exactly
as ``selfconfig_predict`` would) and evaluate them against their references."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from selfconfig.dataset.cases import discover_cases
from selfconfig.dataset.schema import load_dataset_json
from selfconfig.inference.api import predict_files
from selfconfig.inference.predictor import Predictor
from selfconfig.utils import read_json

log = logging.getLogger(__name__)


def raw_cases(raw_dir: Path, split: str, ids: list[str] | None = None):
    info = load_dataset_json(raw_dir)
    cases, _ = discover_cases(raw_dir, info, split)
    if ids is not None:
        keep = set(ids)
        cases = [c for c in cases if c.case_id in keep]
    return info, cases


def evaluate_predictions(pred_dir: Path, raw_dir: Path, split: str, cases: list, output_dir: Path) -> dict:
    """Score predictions of ``cases`` (of ``split``) against the raw references, with the
    overlays drawn on the raw scans."""
    from selfconfig.evaluation.evaluate import evaluate_classification_csv, evaluate_segmentation_folder

    info = load_dataset_json(raw_dir)
    case_ids = [c.case_id for c in cases]
    if info.task == "segmentation":
        ref_dir = raw_dir / ("labelsTr" if split == "train" else "labelsTs")
        return evaluate_segmentation_folder(pred_dir, ref_dir, info.labels, output_dir=output_dir, case_ids=case_ids,
                                            images={c.case_id: c.images for c in cases})
    table = raw_dir / (info.labels_file if split == "train" else info.test_labels_file)
    return evaluate_classification_csv(pred_dir / "predictions.csv", table, info.labels, output_dir=output_dir,
                                       case_ids=case_ids)


def predict_and_score(predictor: Predictor, raw_dir: Path, split: str, case_ids: list[str] | None, out_dir: Path,
                      progress: bool = True, save_probabilities: bool = False) -> dict:
    info, cases = raw_cases(raw_dir, split, case_ids)
    inputs = {c.case_id: c.images for c in cases}
    predict_files(predictor, inputs, out_dir, save_probabilities=save_probabilities, progress=progress)
    return evaluate_predictions(out_dir, raw_dir, split, cases, out_dir)


def validate_run(run_dir: Path, data, val_ids: list[str], device: torch.device, tta: bool = True,
                 progress: bool = True, save_probabilities: bool | None = None) -> dict | None:
    """Predict and score the run's validation cases into ``run_dir/validation``.
    ``save_probabilities=None``: as the run's hyperparameters say (``selfconfig_train --npz``)."""
    if save_probabilities is None:
        hp_file = Path(run_dir) / "hyperparameters.json"
        save_probabilities = bool(hp_file.is_file() and read_json(hp_file).get("save_probabilities"))
    raw_dir = data.roots.raw / data.dataset
    if not (raw_dir / "dataset.json").is_file():
        log.warning("raw dataset %s not found: skipping the final validation", raw_dir)
        return None
    predictor = Predictor.from_checkpoints([run_dir / "checkpoint_final.pt"], device, tta=tta)
    summary = predict_and_score(predictor, raw_dir, "train", val_ids, run_dir / "validation", progress,
                                save_probabilities)
    log.info("validation of %s: %s", run_dir, headline(summary))
    return summary


def headline(summary: dict) -> str:
    if summary.get("task") == "segmentation":
        return f"mean Dice {summary['mean']['mean_dice']:.4f}"
    m = summary.get("metrics", {})
    return ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))
