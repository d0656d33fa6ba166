"""Hand-computed checks of the metrics (every expected value is worked out in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from selfconfig.evaluation.metrics import (
    LUNA_FP_RATES,
    _sensitivity_at,
    accuracy,
    dice_per_class,
    froc,
    nanmean,
    quadratic_weighted_kappa,
    roc_auc,
    segmentation_case_metrics,
)

# ---------------------------------------------------------------------------------------------- Dice

# voxel:       0  1  2  3  4  5  6  7
REF = np.array([0, 1, 1, 1, 2, 2, 0, 0]).reshape(2, 2, 2)
PRED = np.array([0, 1, 1, 0, 2, 0, 2, 0]).reshape(2, 2, 2)


def test_dice_known_overlaps_and_empty_class():
    # class 1: ref {1,2,3}, pred {1,2}: tp 2 -> 2*2/(2+3) = 0.8
    # class 2: ref {4,5}, pred {4,6}: tp 1 -> 2*1/(2+2) = 0.5
    # class 3: in neither -> NaN (undefined, not 0 or 1)
    d = dice_per_class(PRED, REF, labels=[1, 2, 3])
    assert d[1] == pytest.approx(0.8)
    assert d[2] == pytest.approx(0.5)
    assert math.isnan(d[3])
    assert nanmean(d.values()) == pytest.approx(0.65)


def test_case_metrics_counts():
    m = segmentation_case_metrics(PRED, REF, labels=[1, 2, 3])
    assert m[1] == {"dice": pytest.approx(0.8), "tp": 2, "fp": 0, "fn": 1, "n_pred": 2, "n_ref": 3}
    assert m[2] == {"dice": pytest.approx(0.5), "tp": 1, "fp": 1, "fn": 1, "n_pred": 2, "n_ref": 2}
    assert (m[3]["tp"], m[3]["fp"], m[3]["fn"], m[3]["n_pred"], m[3]["n_ref"]) == (0, 0, 0, 0, 0)
    assert all(isinstance(m[1][k], int) for k in ("tp", "fp", "fn", "n_pred", "n_ref"))


def test_dice_class_only_in_one_of_them_is_zero():
    ref = np.zeros((1, 4, 4), np.uint8)
    pred = np.zeros((1, 4, 4), np.uint8)
    ref[0, 0, 0] = 1  # missed entirely
    pred[0, 3, 3] = 2  # false alarm
    d = dice_per_class(pred, ref, labels=[1, 2])
    assert d == {1: 0.0, 2: 0.0}


def test_dice_perfect_and_uint8_input():
    ref = np.random.default_rng(0).integers(0, 3, size=(4, 8, 8)).astype(np.uint8)
    d = dice_per_class(ref.copy(), ref, labels=[1, 2])
    assert d == {1: 1.0, 2: 1.0}


@pytest.mark.parametrize("ignore", [255, -1])
def test_dice_ignore_label_excludes_voxels(ignore):
    ref = np.array([1, 1, ignore, ignore, 0, 0]).reshape(1, 2, 3)
    pred = np.array([1, 0, 1, 1, 0, 1]).reshape(1, 2, 3)
    # without the ignored voxels: ref {0,1}, pred {0,5}: tp 1 -> 2/(2+2) = 0.5
    assert dice_per_class(pred, ref, [1], ignore_label=ignore)[1] == pytest.approx(0.5)
    m = segmentation_case_metrics(pred, ref, [1], ignore_label=ignore)[1]
    assert (m["n_pred"], m["n_ref"], m["fp"]) == (2, 2, 1)


def test_dice_matches_naive_loop():
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 4, size=(6, 7, 8))
    pred = rng.integers(0, 4, size=(6, 7, 8))
    d = dice_per_class(pred, ref, [1, 2, 3])
    for c in (1, 2, 3):
        tp = np.sum((pred == c) & (ref == c))
        expected = 2 * tp / (np.sum(pred == c) + np.sum(ref == c))
        assert d[c] == pytest.approx(expected)


def test_dice_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        dice_per_class(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)), [1])


def test_nanmean_all_nan_is_nan_without_warning(recwarn):
    assert math.isnan(nanmean([math.nan, math.nan]))
    assert math.isnan(nanmean([]))
    assert nanmean([1.0, math.nan, 3.0]) == 2.0
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# ---------------------------------------------------------------------------------------------- accuracy / kappa


def test_accuracy():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    assert math.isnan(accuracy([], []))


def test_kappa_against_hand_computed_confusion_matrix():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    # confusion O (rows true, cols pred) = [[1,1,0],[0,2,0],[1,0,1]]
    # weights (i-j)^2: observed weighted disagreement = 1*O01 + 4*O20 = 5
    # marginals rows [2,2,2], cols [2,3,1], n=6 -> E = r c^T / 6;
    # expected weighted disagreement = (14 + 6 + 22) / 6 = 7  -> kappa = 1 - 5/7 = 2/7
    assert quadratic_weighted_kappa(y_true, y_pred) == pytest.approx(2 / 7)
    assert quadratic_weighted_kappa(y_true, y_pred, labels=[0, 1, 2]) == pytest.approx(2 / 7)


def test_kappa_uses_label_positions_so_labels_matter():
    # grades 0, 1 and 4 of 0..4 present. With labels=range(5) a 0<->4 confusion weighs 16,
    # without labels the present grades are squeezed to positions 0,1,2 (weight 4).
    y_true = [0, 1, 4, 4]
    y_pred = [0, 1, 4, 0]
    O = np.zeros((5, 5))
    for t, p in zip(y_true, y_pred):
        O[t, p] += 1
    w = np.subtract.outer(np.arange(5), np.arange(5)) ** 2
    E = np.outer(O.sum(1), O.sum(0)) / O.sum()
    expected = 1 - (w * O).sum() / (w * E).sum()
    assert quadratic_weighted_kappa(y_true, y_pred, labels=range(5)) == pytest.approx(expected)
    assert quadratic_weighted_kappa(y_true, y_pred) != pytest.approx(expected)


def test_kappa_degenerate_cases():
    assert quadratic_weighted_kappa([2, 2, 2], [2, 2, 2]) == 1.0  # identical single class
    assert quadratic_weighted_kappa([2, 2, 2], [2, 2, 2], labels=range(5)) == 1.0
    assert quadratic_weighted_kappa([1, 1], [3, 3], labels=range(5)) == 0.0
    assert quadratic_weighted_kappa([0, 1, 2], [0, 1, 2]) == 1.0
    assert math.isnan(quadratic_weighted_kappa([], []))


# ---------------------------------------------------------------------------------------------- AUC


def test_roc_auc_binary_uses_column_one():
    y = [0, 0, 1, 1]
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    # positive/negative pairs ranked correctly: (0.35>0.1), (0.8>0.1), (0.8>0.4) = 3 of 4
    assert roc_auc(y, np.stack([1 - p1, p1], axis=1)) == pytest.approx(0.75)


def test_roc_auc_multiclass_macro_ovr_by_hand():
    y = [0, 1, 2, 2]
    p = np.array([
        [0.6, 0.3, 0.1],
        [0.2, 0.5, 0.3],
        [0.5, 0.1, 0.4],
        [0.1, 0.2, 0.7],
    ])
    # class 0: positive 0.6 vs negatives 0.2, 0.5, 0.1 -> 1.0
    # class 1: positive 0.5 vs 0.3, 0.1, 0.2 -> 1.0
    # class 2: positives 0.4, 0.7 vs 0.1, 0.3 -> 4/4 = 1.0
    assert roc_auc(y, p) == pytest.approx(1.0)
    p2 = p.copy()
    p2[2] = [0.7, 0.1, 0.2]  # case 2 (class 2) now ranks below case 1 in column 2
    # class 0: positive 0.6 vs 0.2, 0.7, 0.1 -> 2/3; class 1: 1.0; class 2: pos 0.2,0.7 vs 0.1,0.3 -> 3/4
    assert roc_auc(y, p2) == pytest.approx((2 / 3 + 1.0 + 0.75) / 3)
    assert roc_auc(y, p2) == pytest.approx(roc_auc_score(y, p2, multi_class="ovr", average="macro"))


def test_roc_auc_skips_class_absent_from_truth_and_rows_need_not_sum_to_one():
    y = [0, 0, 1, 1]
    p = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.2], [0.3, 0.6, 0.1], [0.5, 0.3, 0.3]])
    # class 0: positives 0.9, 0.4 vs negatives 0.3, 0.5 -> (0.9>0.3, 0.9>0.5, 0.4>0.3) = 3/4
    # class 1: positives 0.6, 0.3 vs 0.05, 0.35 -> (0.6>both, 0.3>0.05) = 3/4; class 2 absent
    assert roc_auc(y, p) == pytest.approx(0.75)
    assert roc_auc(y, p * 0.9) == pytest.approx(0.75)


def test_roc_auc_single_class_is_nan():
    assert math.isnan(roc_auc([1, 1, 1], np.array([[0.2, 0.8], [0.4, 0.6], [0.9, 0.1]])))


def test_roc_auc_rejects_out_of_range_classes():
    with pytest.raises(ValueError):
        roc_auc([0, 3], np.array([[0.5, 0.5], [0.5, 0.5]]))


# ---------------------------------------------------------------------------------------------- FROC


def _luna_like_candidates() -> pd.DataFrame:
    # 2 scans, 3 true nodules (A/n1, A/n2, B/n1); B/n1 is hit by no candidate.
    return pd.DataFrame(
        [
            ("A", 0.9, True, "n1"),
            ("A", 0.6, True, "n1"),  # second hit on n1: ignored (neither TP nor FP)
            ("A", 0.4, True, "n2"),
            ("A", 0.8, False, None),
            ("B", 0.7, False, -1),
            ("B", 0.4, False, -1),  # tied with n2
            ("B", 0.1, False, None),
        ],
        columns=["scan_id", "probability", "is_true", "nodule_id"],
    )


def test_froc_hand_computed_curve_operating_points_and_area():
    r = froc(_luna_like_candidates(), total_nodules=3, n_scans=2, max_fp_per_scan=3.0)
    # thresholds 0.9, 0.8, 0.7, 0.4 (n2 and one FP together), 0.1; 0.6 is no threshold
    np.testing.assert_allclose(r["thresholds"], [np.inf, 0.9, 0.8, 0.7, 0.4, 0.1])
    np.testing.assert_allclose(r["fp_per_scan"], [0, 0, 0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(r["sensitivity"], [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    # area: 0.5*1/3 + 0.5*1/3 + 0.5*(1/3+2/3)/2 (tie diagonal) + 0.5*2/3 + 1.0*2/3 (flat to 3)
    #     = 19/12, divided by 3 -> 19/36
    assert r["area"] == pytest.approx(19 / 36)
    ops = r["operating_points"]
    assert list(ops) == list(LUNA_FP_RATES)
    for rate in (0.125, 0.25, 0.5, 1.0):
        assert ops[rate] == pytest.approx(1 / 3)
    for rate in (2.0, 4.0, 8.0):  # 4 and 8 are capped at 3 FP/scan
        assert ops[rate] == pytest.approx(2 / 3)
    assert r["cpm"] == pytest.approx(10 / 21)  # (4 * 1/3 + 3 * 2/3) / 7
    assert (r["total_nodules"], r["n_scans"], r["nodules_detected"], r["false_positives"]) == (3, 2, 2, 4)
    # the missed nodule keeps sensitivity below 1 at every rate
    assert r["sensitivity"].max() < 1


def test_froc_area_truncated_inside_curve():
    cands = _luna_like_candidates()
    assert froc(cands, 3, 2, max_fp_per_scan=1.0)["area"] == pytest.approx(1 / 3)
    # 0..1.25: 1/3 (flat to 1) + 0.25 * (1/3 + 1/2) / 2 on the tie diagonal = 21/48; / 1.25
    assert froc(cands, 3, 2, max_fp_per_scan=1.25)["area"] == pytest.approx(21 / 48 / 1.25)


def test_froc_sensitivity_on_tie_diagonal_and_vertical_jump():
    fps = np.array([0.0, 0.0, 0.5, 1.0, 1.5, 2.0])
    sens = np.array([0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert _sensitivity_at(fps, sens, 0.0) == pytest.approx(1 / 3)  # top of the jump at 0
    assert _sensitivity_at(fps, sens, 1.25) == pytest.approx(0.5)
    assert _sensitivity_at(fps, sens, 10.0) == pytest.approx(2 / 3)


def test_froc_row_order_does_not_matter():
    cands = _luna_like_candidates()
    a = froc(cands, 3, 2)
    b = froc(cands.sample(frac=1.0, random_state=3), 3, 2)
    np.testing.assert_allclose(a["fp_per_scan"], b["fp_per_scan"])
    np.testing.assert_allclose(a["sensitivity"], b["sensitivity"])
    assert a["area"] == b["area"]


def test_froc_perfect_detector_has_area_one():
    cands = pd.DataFrame({
        "scan_id": ["A", "A", "B", "B"],
        "probability": [0.9, 0.2, 0.8, 0.1],
        "is_true": [True, False, True, False],
        "nodule_id": [1, -1, 1, -1],  # same id in two scans: two different nodules
    })
    r = froc(cands, total_nodules=2, n_scans=2, max_fp_per_scan=3.0)
    assert r["area"] == pytest.approx(1.0)
    assert all(v == 1.0 for v in r["operating_points"].values())


def test_froc_all_false_candidates_and_no_candidates():
    only_fp = pd.DataFrame({"scan_id": ["A"], "probability": [0.5], "is_true": [False], "nodule_id": [None]})
    r = froc(only_fp, total_nodules=4, n_scans=1)
    assert r["area"] == 0.0 and r["cpm"] == 0.0
    empty = pd.DataFrame(columns=["scan_id", "probability", "is_true", "nodule_id"])
    r = froc(empty, total_nodules=4, n_scans=3)
    np.testing.assert_allclose(r["fp_per_scan"], [0.0])
    assert r["area"] == 0.0


def test_froc_no_nodules_is_nan():
    only_fp = pd.DataFrame({"scan_id": ["A"], "probability": [0.5], "is_true": [False], "nodule_id": [None]})
    r = froc(only_fp, total_nodules=0, n_scans=1)
    assert math.isnan(r["area"]) and math.isnan(r["cpm"])


def test_froc_rejects_inconsistent_input():
    cands = _luna_like_candidates()
    with pytest.raises(ValueError, match="total_nodules"):
        froc(cands, total_nodules=1, n_scans=2)
    bad = cands.copy()
    bad.loc[0, "nodule_id"] = None
    with pytest.raises(ValueError, match="nodule_id"):
        froc(bad, total_nodules=3, n_scans=2)
    with pytest.raises(ValueError, match="n_scans"):
        froc(cands, total_nodules=3, n_scans=0)
