"""Metrics as pure functions: numpy (or a small table) in, floats and dicts out.

Conventions shared by every function here:

- A metric that is undefined for the input (a class absent from both prediction and reference,
  AUC with one class in ``y_true``, no true nodules) is ``NaN``, never 0 or 1 silently. Means
  over classes or cases therefore use :func:`nanmean`, which skips NaN and returns NaN (without
  a warning) when nothing is left.
- Dice is computed from per-class counts (``np.bincount``) in one pass over the voxels, so the
  cost does not grow with the number of classes.
- Kappa and AUC are scikit-learn's; this module only pins down the degenerate cases.
- Segmentation targets are label values (``int``) or nnU-Net v2 regions (a tuple of values: a
  voxel is in the region when its value is listed); voxels whose *reference* is
  ``ignore_label`` count nowhere (nnU-Net v2's ignore label).
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score, roc_auc_score

logger = logging.getLogger(__name__)

# operating points of the LUNA16 competition (false positives per scan)
LUNA_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def nanmean(values) -> float:
    """Mean that skips NaN; NaN (no warning) when no finite value is left."""
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan


# ----------------------------------------------------------------------------------------------
# segmentation


def _label_counts(pred: np.ndarray, ref: np.ndarray, ignore_label: int | None):
    """Per-value counts (tp, n_pred, n_ref) as arrays indexed by ``value - offset``."""
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if not (np.issubdtype(pred.dtype, np.integer) or pred.dtype == bool):
        pred = np.rint(pred)
    if not (np.issubdtype(ref.dtype, np.integer) or ref.dtype == bool):
        ref = np.rint(ref)
    pred = pred.astype(np.int64, copy=False).ravel()
    ref = ref.astype(np.int64, copy=False).ravel()
    if ignore_label is not None:
        keep = ref != ignore_label
        pred, ref = pred[keep], ref[keep]
    if pred.size == 0:
        return np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64), 0
    offset = min(int(pred.min()), int(ref.min()), 0)
    if offset:
        pred = pred - offset
        ref = ref - offset
    size = max(int(pred.max()), int(ref.max())) + 1
    n_pred = np.bincount(pred, minlength=size)
    n_ref = np.bincount(ref, minlength=size)
    tp = np.bincount(ref[pred == ref], minlength=size)
    return tp, n_pred, n_ref, offset


def _count(arr: np.ndarray, value: int, offset: int) -> int:
    i = value - offset
    return int(arr[i]) if 0 <= i < arr.size else 0


def _counts_entry(t: int, p: int, r: int) -> dict[str, float | int]:
    dice = 2.0 * t / (p + r) if (p + r) > 0 else math.nan
    return {"dice": dice, "tp": t, "fp": p - t, "fn": r - t, "n_pred": p, "n_ref": r}


def region_case_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    regions: Sequence[Sequence[int]],
    ignore_label: int | None = None,
) -> dict[tuple[int, ...], dict[str, float | int]]:
    """Counts and Dice of one case per region (a voxel is in a region when its value is one of
    the region's values, in ``pred`` and ``ref`` alike), as nnU-Net v2 scores BraTS-style labels.

    Returns ``{region (tuple): {"dice", "tp", "fp", "fn", "n_pred", "n_ref"}}``; NaN Dice when the
    region is absent from both. Voxels where ``ref == ignore_label`` are left out."""
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    keep = (ref != ignore_label) if ignore_label is not None else None
    out: dict[tuple[int, ...], dict[str, float | int]] = {}
    for region in regions:
        key = tuple(int(v) for v in region)
        p = np.isin(pred, key)
        r = np.isin(ref, key)
        if keep is not None:
            p &= keep
            r &= keep
        out[key] = _counts_entry(int(np.count_nonzero(p & r)), int(np.count_nonzero(p)), int(np.count_nonzero(r)))
    return out


def segmentation_case_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    labels: Sequence[int | Sequence[int]],
    ignore_label: int | None = None,
) -> dict[int | tuple[int, ...], dict[str, float | int]]:
    """Counts and Dice of one case, per label (or region) in ``labels``.

    Returns ``{label: {"dice", "tp", "fp", "fn", "n_pred", "n_ref"}}`` (counts in voxels).
    Dice is ``2 tp / (n_pred + n_ref)`` and NaN when the label is absent from both prediction
    and reference (nothing to find and nothing found: neither a hit nor a miss). Voxels where
    ``ref == ignore_label`` are left out of every count. An entry of ``labels`` that is a list
    or tuple is a region (see :func:`region_case_metrics`); its key is the tuple.
    """
    regions = [lab for lab in labels if isinstance(lab, (list, tuple))]
    out: dict[int | tuple[int, ...], dict[str, float | int]] = {}
    by_region = region_case_metrics(pred, ref, regions, ignore_label) if regions else {}
    if len(regions) < len(labels):
        tp, n_pred, n_ref, offset = _label_counts(pred, ref, ignore_label)
    for label in labels:
        if isinstance(label, (list, tuple)):
            key = tuple(int(v) for v in label)
            out[key] = by_region[key]
            continue
        label = int(label)
        out[label] = _counts_entry(_count(tp, label, offset), _count(n_pred, label, offset),
                                   _count(n_ref, label, offset))
    return out


def dice_per_class(
    pred: np.ndarray,
    ref: np.ndarray,
    labels: Sequence[int | Sequence[int]],
    ignore_label: int | None = None,
) -> dict[int | tuple[int, ...], float]:
    """Dice per label (or region, a tuple of values); NaN for one absent from both ``pred`` and ``ref``.

    The NaN means "undefined", so averages over classes or cases must use :func:`nanmean`
    (an empty class then neither rewards nor punishes the case). Voxels where
    ``ref == ignore_label`` are excluded from prediction and reference alike.
    """
    per = segmentation_case_metrics(pred, ref, labels, ignore_label=ignore_label)
    return {label: float(m["dice"]) for label, m in per.items()}


# ----------------------------------------------------------------------------------------------
# classification


def accuracy(y_true, y_pred) -> float:
    """Fraction of cases whose predicted class equals the true class; NaN for no cases."""
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} entries, y_pred {p.size}")
    if t.size == 0:
        return math.nan
    return float(np.mean(t == p))


def quadratic_weighted_kappa(y_true, y_pred, labels: Sequence[int] | None = None) -> float:
    """Cohen's kappa with quadratic weights (scikit-learn), for ordinal grades.

    Pass ``labels`` = all class indices (e.g. ``range(5)`` for DR grades 0-4): scikit-learn
    weights disagreements by the *position* in the label list, so without it a missing grade
    would shrink the distance between its neighbours.

    Degenerate case: kappa is 0/0 only when ``y_true`` and ``y_pred`` both hold one and the
    same class everywhere (expected disagreement is zero). That is perfect agreement, so it
    returns 1.0. Both constant but different gives 0.0 (scikit-learn's own value). No cases: NaN.
    """
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} entries, y_pred {p.size}")
    if t.size == 0:
        return math.nan
    if np.all(t == t[0]) and np.all(p == t[0]):
        return 1.0
    return float(cohen_kappa_score(t, p, labels=None if labels is None else list(labels),
                                   weights="quadratic"))


def roc_auc(y_true, probabilities: np.ndarray) -> float:
    """Area under the ROC curve from class probabilities of shape (N, K).

    K == 2: binary AUC of column 1 (the positive class). K > 2: macro average of one-vs-rest
    AUCs (class k vs the rest, scored by column k), computed per class with scikit-learn so that
    rows need not sum exactly to 1 (rounded CSV values); a class absent from ``y_true`` has no
    one-vs-rest AUC and is left out of the average. NaN when ``y_true`` holds only one class
    (or no cases), because AUC needs positives and negatives. A 1-D ``probabilities`` is taken
    as the positive-class probability of a binary problem.
    """
    t = np.asarray(y_true).ravel().astype(np.int64)
    prob = np.asarray(probabilities, dtype=np.float64)
    if prob.ndim == 1:
        prob = np.stack([1.0 - prob, prob], axis=1)
    if prob.ndim != 2 or prob.shape[0] != t.size:
        raise ValueError(f"probabilities must have shape ({t.size}, K), got {prob.shape}")
    k = prob.shape[1]
    if k < 2:
        raise ValueError("roc_auc needs at least two probability columns")
    if t.size and (t.min() < 0 or t.max() >= k):
        raise ValueError(f"y_true holds classes outside 0..{k - 1}")
    present = np.unique(t)
    if present.size < 2:
        return math.nan
    if k == 2:
        return float(roc_auc_score(t, prob[:, 1]))
    aucs = [roc_auc_score(t == c, prob[:, c]) for c in present]
    return float(np.mean(aucs))


# ----------------------------------------------------------------------------------------------
# FROC (LUNA16-style detection / false-positive reduction)


def _is_missing_id(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return str(value).strip() in ("", "-1", "-1.0", "nan", "None")


def _sensitivity_at(fps: np.ndarray, sens: np.ndarray, x: float) -> float:
    """Sensitivity of the piecewise-linear FROC curve at ``x`` FP/scan (top of a vertical jump)."""
    i = int(np.searchsorted(fps, x, side="right")) - 1  # last point with fps <= x
    if i >= fps.size - 1 or fps[i] == x:
        return float(sens[i])
    j = i + 1
    return float(sens[i] + (sens[j] - sens[i]) * (x - fps[i]) / (fps[j] - fps[i]))


def froc(
    candidates: pd.DataFrame,
    total_nodules: int,
    n_scans: int,
    max_fp_per_scan: float = 3.0,
) -> dict:
    """Free-response ROC of candidate scores, as in the LUNA16 false-positive-reduction track.

    ``candidates`` has one row per candidate with columns ``scan_id``, ``probability``,
    ``is_true`` (bool: the candidate hits a true nodule) and ``nodule_id`` (the nodule it hits;
    None/NaN/-1 for false candidates). Nodules are identified by ``(scan_id, nodule_id)``.

    Exact definition:

    - A true nodule's score is the highest probability among the candidates that hit it; the
      other candidates on the same nodule are ignored (neither a hit nor a false positive).
      Each false candidate is one false positive with its own probability.
    - The threshold ``t`` sweeps the unique scores in descending order; at ``t`` a nodule is
      detected and a false candidate is a false positive when its score is ``>= t``. Tied
      scores therefore enter together (one curve point per unique score).
    - ``sensitivity(t) = detected(t) / total_nodules``, where ``total_nodules`` counts ALL true
      nodules of the evaluated scans, including those no candidate hits (a candidate generator
      miss stays a miss at every threshold, so sensitivity may never reach 1).
      ``fp_per_scan(t) = false_positives(t) / n_scans`` (scans without candidates count).
    - The curve starts at (0, 0) (threshold +inf) and is piecewise linear between consecutive
      points: steps for scores that add only hits or only false positives, a diagonal for a
      tie between both (as in ROC analysis). Beyond its last point (all candidates accepted)
      it stays at its final sensitivity, as LUNA16's ``np.interp`` does. At an FP rate where
      the curve jumps vertically, the top of the jump is taken.
    - ``operating_points``: sensitivity at 1/8, 1/4, 1/2, 1, 2, 4, 8 FP/scan; a rate above
      ``max_fp_per_scan`` is evaluated at ``max_fp_per_scan`` (capped). ``cpm`` is their mean
      (LUNA16's competition score when ``max_fp_per_scan >= 8``).
    - ``area``: integral of the curve from 0 to ``max_fp_per_scan`` FP/scan divided by
      ``max_fp_per_scan``, so it lies in [0, 1].

    With ``total_nodules == 0`` every sensitivity, ``cpm`` and ``area`` are NaN.
    Returns ``fp_per_scan``, ``sensitivity``, ``thresholds`` (arrays, same length),
    ``operating_points`` ({rate: sensitivity}), ``cpm``, ``area``, ``max_fp_per_scan``,
    ``total_nodules``, ``n_scans``, ``nodules_detected`` (by any candidate) and
    ``false_positives`` (all false candidates).
    """
    missing = {"scan_id", "probability", "is_true"} - set(candidates.columns)
    if missing:
        raise ValueError(f"froc: candidates table lacks column(s) {sorted(missing)}")
    if n_scans <= 0:
        raise ValueError(f"froc: n_scans must be positive, got {n_scans}")
    if max_fp_per_scan <= 0:
        raise ValueError(f"froc: max_fp_per_scan must be positive, got {max_fp_per_scan}")
    if total_nodules < 0:
        raise ValueError(f"froc: total_nodules must be >= 0, got {total_nodules}")

    prob = candidates["probability"].to_numpy(dtype=np.float64)
    if np.isnan(prob).any():
        raise ValueError("froc: candidate probabilities contain NaN")
    is_true = candidates["is_true"].to_numpy().astype(bool)
    scan = candidates["scan_id"].astype(str).to_numpy()
    nodule = candidates["nodule_id"].to_numpy(dtype=object) if "nodule_id" in candidates else None

    best: dict[tuple[str, str], float] = {}
    for row in np.flatnonzero(is_true):
        if nodule is None or _is_missing_id(nodule[row]):
            raise ValueError(
                f"froc: a true candidate of scan {scan[row]!r} has no nodule_id; true candidates "
                "must name the nodule they hit so that each nodule is counted once"
            )
        key = (scan[row], str(nodule[row]))
        best[key] = max(best.get(key, -math.inf), prob[row])
    if len(best) > total_nodules:
        raise ValueError(
            f"froc: candidates hit {len(best)} distinct nodules but total_nodules is {total_nodules}"
        )
    tp_scores = np.sort(np.fromiter(best.values(), dtype=np.float64, count=len(best)))
    fp_scores = np.sort(prob[~is_true])

    thresholds = np.unique(np.concatenate([tp_scores, fp_scores]))[::-1]
    # number of scores >= t, for every threshold t
    tp_counts = tp_scores.size - np.searchsorted(tp_scores, thresholds, side="left")
    fp_counts = fp_scores.size - np.searchsorted(fp_scores, thresholds, side="left")
    fps = np.concatenate([[0.0], fp_counts / float(n_scans)])
    thresholds = np.concatenate([[math.inf], thresholds])
    if total_nodules == 0:
        logger.warning("froc: no true nodules; sensitivity is undefined (NaN)")
        sens = np.full(fps.shape, math.nan)
        ops = {rate: math.nan for rate in LUNA_FP_RATES}
        return _froc_result(fps, sens, thresholds, ops, math.nan, math.nan, max_fp_per_scan,
                            total_nodules, n_scans, len(best), fp_scores.size)
    sens = np.concatenate([[0.0], tp_counts / float(total_nodules)])

    ops = {rate: _sensitivity_at(fps, sens, min(rate, max_fp_per_scan)) for rate in LUNA_FP_RATES}
    inside = fps < max_fp_per_scan
    xs = np.concatenate([fps[inside], [max_fp_per_scan]])
    ys = np.concatenate([sens[inside], [_sensitivity_at(fps, sens, max_fp_per_scan)]])
    area = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0)) / max_fp_per_scan
    return _froc_result(fps, sens, thresholds, ops, float(np.mean(list(ops.values()))), area,
                        max_fp_per_scan, total_nodules, n_scans, len(best), fp_scores.size)


def _froc_result(fps, sens, thresholds, ops, cpm, area, max_fp, total, n_scans, detected, n_fp) -> dict:
    return {
        "fp_per_scan": fps,
        "sensitivity": sens,
        "thresholds": thresholds,
        "operating_points": ops,
        "cpm": cpm,
        "area": area,
        "max_fp_per_scan": float(max_fp),
        "total_nodules": int(total),
        "n_scans": int(n_scans),
        "nodules_detected": int(detected),
        "false_positives": int(n_fp),
    }
