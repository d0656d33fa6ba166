"""Score a network in training on whole validation scans: what ``--until-converged`` judges a run by.

The preprocessed validation cases (already at the plan's resolution) are predicted whole with
the predictor's own sliding window (no mirroring), on the live network, and scored against their
preprocessed references: the mean Dice of the foreground labels (or regions) for segmentation,
nnU-Net's mean over cases per class, then over classes; the run's monitored metric (AUC for two
classes, else quadratic weighted kappa) on whole validation images for classification. Nothing
is written and no random stream is drawn from, so scoring leaves a bit-exact resume intact.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from selfconfig.dataset.labels import LabelScheme
from selfconfig.errors import ConfigurationError
from selfconfig.evaluation.metrics import accuracy, dice_per_class, nanmean, quadratic_weighted_kappa, roc_auc
from selfconfig.inference.predictor import LoadedModel, Predictor
from selfconfig.preprocessing import storage


def whole_scan_scorer(data, val_ids: list[str], device: torch.device,
                      precision: str = "auto") -> Callable[[nn.Module], float]:
    """``score(network) -> float`` for the validation cases ``val_ids`` of ``data`` (a
    :class:`~selfconfig.training.context.DatasetContext`)."""
    if data.config.previous_stage:
        raise ConfigurationError(f"--until-converged does not score a cascade stage ({data.configuration}) yet; "
                                 f"train it with a fixed number of epochs")
    refs = data.case_refs("train", val_ids)

    def score(network: nn.Module) -> float:
        model = LoadedModel(network, data.plans, data.configuration, "", Path("(in training)"))
        predictor = Predictor([model], device, tta=False, precision=precision)
        with _inference_mode(network):
            if data.task == "segmentation":
                return _segmentation_score(predictor, refs)
            return _classification_score(predictor, refs)

    return score


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
        probs = predictor.predict_preprocessed(storage.load_data(Path(ref.folder), ref.case_id, mmap=False))
        pred = scheme.probabilities_to_label_map(probs)
        seg = storage.load_seg(Path(ref.folder), ref.case_id, mmap=False)  # (Z, Y, X) on the plan's grid
        for k, d in dice_per_class(pred, np.where(seg < 0, 0, seg), targets, scheme.ignore_label).items():
            per_class[k].append(d)
    return float(nanmean([nanmean(v) for v in per_class.values()]))


def _classification_score(predictor: Predictor, refs) -> float:
    """AUC (two classes) or quadratic weighted kappa; accuracy where the validation cases leave
    those undefined (e.g. one class only: the same every time, so the run is judged consistently)."""
    k = predictor.plans.num_classes
    probs = np.stack([predictor.predict_preprocessed(storage.load_data(Path(r.folder), r.case_id, mmap=False)) for r in refs])
    y = np.asarray([int(r.label) for r in refs])
    value = roc_auc(y, probs) if k == 2 else quadratic_weighted_kappa(y, probs.argmax(1), labels=list(range(k)))
    return float(value) if np.isfinite(value) else float(accuracy(y, probs.argmax(1)))
