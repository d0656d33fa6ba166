"""Score one trained cell on a split with the dataset's primary metric.

Primary metric (dataset.json key ``metric``, else by task): ``mean_dice`` (segmentation),
``quadratic_weighted_kappa`` (classification with more than two classes), ``roc_auc``
(two classes), ``froc_auc_3fp`` (candidate classification with a nodules table: area under the
free-response ROC up to 3 false positives per scan, sensitivity over all true nodules of the
scans, so nodules that no candidate hit count as misses).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from selfconfig.dataset.schema import DatasetInfo, load_dataset_json
from selfconfig.errors import ConfigurationError

log = logging.getLogger(__name__)

METRICS = ("mean_dice", "quadratic_weighted_kappa", "roc_auc", "accuracy", "froc_auc_3fp")


def primary_metric(info: DatasetInfo) -> str:
    m = info.extra.get("metric")
    if m:
        if m not in METRICS:
            raise ConfigurationError(f"dataset.json metric {m!r} is not one of {', '.join(METRICS)}")
        return m
    if info.task == "segmentation":
        return "mean_dice"
    return "quadratic_weighted_kappa" if info.num_classes > 2 else "roc_auc"


def metric_value(raw_dir: Path, split: str, case_ids: list[str], summary: dict, pred_dir: Path) -> dict[str, float]:
    """The primary metric (key ``value``) and secondary ones from an evaluation summary."""
    info = load_dataset_json(raw_dir)
    name = primary_metric(info)
    out: dict[str, float] = {}
    if summary.get("task") == "segmentation":
        out["mean_dice"] = summary["mean"]["mean_dice"]
        for k, v in summary["mean"]["dice_per_class"].items():
            out[f"dice_{k}"] = v
    else:
        out.update({k: v for k, v in summary["metrics"].items() if isinstance(v, (int, float))})
        if name == "froc_auc_3fp":
            out.update(froc_for_split(raw_dir, info, split, case_ids, pred_dir / "predictions.csv"))
    if name not in out:
        raise ConfigurationError(f"metric {name} could not be computed for {raw_dir.name}")
    out["value"] = out[name]
    out["metric"] = name  # type: ignore[assignment]
    return out


def froc_for_split(raw_dir: Path, info: DatasetInfo, split: str, case_ids: list[str], pred_csv: Path) -> dict[str, float]:
    """FROC of the candidates ``case_ids`` over every true nodule of their scans."""
    from selfconfig.evaluation.evaluate import froc_from_tables

    table = raw_dir / (info.labels_file if split == "train" else info.test_labels_file)
    labels = pd.read_csv(table, dtype={"case": str, "scan_id": str})
    labels = labels[labels["case"].isin(set(case_ids))]
    nodules = pd.read_csv(raw_dir / info.extra.get("nodules_file", "nodules.csv"), dtype={"scan_id": str})
    scans = sorted(set(labels["scan_id"]))
    n_scans = len(scans)
    scans_file = raw_dir / info.extra.get("scans_file", "scans.csv")
    if split == "test" and scans_file.is_file():  # every test scan counts, also one without candidates
        scan_table = pd.read_csv(scans_file, dtype={"scan_id": str})
        scans = sorted(scan_table.loc[scan_table["split"] == "test", "scan_id"])
        n_scans = len(scans)
    nodules = nodules[nodules["scan_id"].isin(set(scans))]
    preds = pd.read_csv(pred_csv, dtype={"case": str})
    positive = next(n for n, v in info.labels.items() if v == 1)
    res = froc_from_tables(preds, labels, nodules, max_fp_per_scan=3.0, n_scans=n_scans, positive_class=positive)
    return {"froc_auc_3fp": float(res["area"]), "froc_cpm": float(res.get("cpm", float("nan"))),
            "n_scans": float(n_scans), "n_nodules": float(len(nodules))}
