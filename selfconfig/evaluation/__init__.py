"""Metrics (Dice, kappa, AUC, FROC) and folder/table evaluation that writes summary.json."""

from __future__ import annotations

from selfconfig.evaluation.evaluate import (
    evaluate_classification_csv,
    evaluate_segmentation_folder,
    froc_from_tables,
)
from selfconfig.evaluation.metrics import (
    LUNA_FP_RATES,
    accuracy,
    dice_per_class,
    froc,
    nanmean,
    quadratic_weighted_kappa,
    roc_auc,
    segmentation_case_metrics,
)

__all__ = [
    "LUNA_FP_RATES",
    "accuracy",
    "dice_per_class",
    "evaluate_classification_csv",
    "evaluate_segmentation_folder",
    "froc",
    "froc_from_tables",
    "nanmean",
    "quadratic_weighted_kappa",
    "roc_auc",
    "segmentation_case_metrics",
]
