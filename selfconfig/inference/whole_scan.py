"""Score a network in training on whole validation scans: what ``--until-converged`` judges a run by.

The preprocessed validation cases (already at the plan's resolution) are predicted whole with
the predictor's own sliding window (no mirroring), on the live network, and scored against their
preprocessed references: the mean Dice of the foreground labels (or regions) for segmentation,
nnU-Net's mean over cases per class, then over classes; the run's monitored metric (AUC for two
classes, else quadratic weighted kappa) on whole validation images for classification. Nothing
is written and no random stream is drawn from, so scoring leaves a bit-exact resume intact.

A cascade stage's cases are scored on the input its training sees: each case with its previous
stage's segmentation on the preprocessed grid (the cross-validation prediction that the run's own
validation batches read, :mod:`selfconfig.training.cascade`) appended as one-hot channels.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from selfconfig.data.sampler import CaseRef
from selfconfig.dataset.labels import LabelScheme
from selfconfig.evaluation.metrics import accuracy, dice_per_class, nanmean, quadratic_weighted_kappa, roc_auc
from selfconfig.inference.predictor import LoadedModel, Predictor
from selfconfig.preprocessing import storage
from selfconfig.preprocessing.previous_stage import append_previous_stage


def whole_scan_scorer(data, val_refs: list[CaseRef], device: torch.device,
                      precision: str = "auto") -> Callable[[nn.Module], float]:
    """``score(network) -> float`` for the validation cases ``val_refs`` of ``data`` (a
    :class:`~selfconfig.training.context.DatasetContext`), as the run's validation batches read
    them: for a cascade stage, each with its previous-stage label map (``CaseRef.previous_stage``)."""
    cascade = bool(data.config.previous_stage)
    if cascade and not all(r.previous_stage for r in val_refs):
        lacking = next(r.case_id for r in val_refs if not r.previous_stage)
        raise ValueError(f"{data.configuration} is a cascade stage: every validation case needs its "
                         f"{data.config.previous_stage} label map to be scored, and {lacking} has none")

    def score(network: nn.Module) -> float:
        model = LoadedModel(network, data.plans, data.configuration, "", Path("(in training)"))
        predictor = Predictor([model], device, tta=False, precision=precision, previous_stage_in_data=cascade)
        with _inference_mode(network):
            if data.task == "segmentation":
                return _segmentation_score(predictor, val_refs)
            return _classification_score(predictor, val_refs)

    return score


def _case_input(predictor: Predictor, ref: CaseRef) -> np.ndarray:
    """The preprocessed case (C, Z, Y, X); a cascade's with its previous stage's one-hot channels."""
    data = storage.load_data(Path(ref.folder), ref.case_id, mmap=False)
    if ref.previous_stage:
        data = append_previous_stage(data, np.load(ref.previous_stage), predictor.plans)
    return data


@contextmanager
def _inference_mode(network: nn.Module) -> Iterator[None]:
    """Evaluation mode and one output (no deep supervision), restored afterwards."""
    was_training, deep = network.training, getattr(network, "deep_supervision", None)
    network.eval()
    if deep is not None:
        network.deep_supervision = False
    try:
        yield
    finally:
        network.train(was_training)
        if deep is not None:
            network.deep_supervision = deep


def _segmentation_score(predictor: Predictor, refs) -> float:
    scheme = LabelScheme.of(predictor.plans)
    targets = [value for _, value in scheme.evaluation_targets()]
    per_class: dict = {t if isinstance(t, int) else tuple(t): [] for t in targets}
    for ref in refs:
        probs = predictor.predict_preprocessed(_case_input(predictor, ref))
        pred = scheme.probabilities_to_label_map(probs)
        seg = storage.load_seg(Path(ref.folder), ref.case_id, mmap=False)  # (Z, Y, X) on the plan's grid
        for k, d in dice_per_class(pred, np.where(seg < 0, 0, seg), targets, scheme.ignore_label).items():
            per_class[k].append(d)
    return float(nanmean([nanmean(v) for v in per_class.values()]))


def _classification_score(predictor: Predictor, refs) -> float:
    """AUC (two classes) or quadratic weighted kappa; accuracy where the validation cases leave
    those undefined (e.g. one class only: the same every time, so the run is judged consistently)."""
    k = predictor.plans.num_classes
    probs = np.stack([predictor.predict_preprocessed(_case_input(predictor, r)) for r in refs])
    y = np.asarray([int(r.label) for r in refs])
    value = roc_auc(y, probs) if k == 2 else quadratic_weighted_kappa(y, probs.argmax(1), labels=list(range(k)))
    return float(value) if np.isfinite(value) else float(accuracy(y, probs.argmax(1)))
