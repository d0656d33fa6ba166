"""Folder and table evaluation: matching, errors, and what summary.json / per_case.csv hold."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from selfconfig.errors import SelfconfigError
from selfconfig.evaluation.evaluate import (
    evaluate_classification_csv,
    evaluate_segmentation_folder,
    froc_from_tables,
)

LABELS = {"background": 0, "liver": 1, "tumor": 2}


def _write(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 2.0)) -> None:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


def _seg_folders(tmp_path: Path):
    """Two cases with known Dice.

    case_a: liver ref 8 voxels, pred 4 of them -> 2*4/12 = 2/3; tumor absent in both -> NaN.
    case_b: liver perfect (8 voxels) -> 1; tumor ref 2 voxels, pred elsewhere 2 voxels -> 0.
    """
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_a = np.zeros((4, 6, 6), np.uint8)
    ref_a[0:2, 0:2, 0:2] = 1
    pred_a = np.zeros_like(ref_a)
    pred_a[0:1, 0:2, 0:2] = 1
    ref_b = np.zeros((4, 6, 6), np.uint8)
    ref_b[2:4, 2:4, 2:4] = 1
    ref_b[0, 5, 4:6] = 2
    pred_b = ref_b.copy()
    pred_b[0, 5, 4:6] = 0
    pred_b[3, 0, 0:2] = 2
    _write(ref_dir / "case_a.nii.gz", ref_a)
    _write(ref_dir / "case_b.nii.gz", ref_b)
    _write(pred_dir / "case_a.nii.gz", pred_a)
    _write(pred_dir / "case_b.nii.gz", pred_b)
    return pred_dir, ref_dir


def test_segmentation_folder_known_dice_and_outputs(tmp_path):
    pred_dir, ref_dir = _seg_folders(tmp_path)
    (pred_dir / "plans.json").write_text("{}")  # unrelated files are not cases
    _write(pred_dir / "case_extra.nii.gz", np.zeros((4, 6, 6)))  # no reference: ignored
    s = evaluate_segmentation_folder(pred_dir, ref_dir, LABELS)
    assert s["task"] == "segmentation"
    assert s["labels"] == LABELS
    assert [c["case"] for c in s["per_case"]] == ["case_a", "case_b"]
    a, b = s["per_case"]
    assert a["metrics"]["liver"]["dice"] == pytest.approx(2 / 3)
    assert (a["metrics"]["liver"]["tp"], a["metrics"]["liver"]["fn"], a["metrics"]["liver"]["fp"]) == (4, 4, 0)
    assert math.isnan(a["metrics"]["tumor"]["dice"])
    assert a["mean_dice"] == pytest.approx(2 / 3)  # NaN class skipped
    assert b["metrics"]["liver"]["dice"] == 1.0 and b["metrics"]["tumor"]["dice"] == 0.0
    assert b["mean_dice"] == pytest.approx(0.5)
    # liver mean over cases (2/3 + 1)/2; tumor only defined in case_b -> 0
    assert s["mean"]["dice_per_class"]["liver"] == pytest.approx(5 / 6)
    assert s["mean"]["dice_per_class"]["tumor"] == 0.0
    assert s["mean"]["mean_dice"] == pytest.approx(5 / 12)

    on_disk = json.loads((pred_dir / "summary.json").read_text())  # default output: pred_dir
    assert on_disk["mean"]["mean_dice"] == pytest.approx(5 / 12)
    assert on_disk["per_case"][0]["metrics"]["tumor"]["dice"] is None  # NaN -> null
    csv = pd.read_csv(pred_dir / "per_case.csv", dtype={"case": str})
    assert list(csv.columns) == ["case", "dice_liver", "dice_tumor", "mean_dice"]
    assert csv["dice_liver"].tolist() == pytest.approx([2 / 3, 1.0])
    assert math.isnan(csv["dice_tumor"][0])


def test_segmentation_folder_output_dir_and_file_ending(tmp_path):
    pred_dir, ref_dir = _seg_folders(tmp_path)
    _write(ref_dir / "other.nrrd", np.zeros((4, 6, 6)))  # another ending: not a case with file_ending
    out = tmp_path / "eval"
    s = evaluate_segmentation_folder(pred_dir, ref_dir, LABELS, output_dir=out, file_ending=".nii.gz")
    assert s["n_cases"] == 2
    assert (out / "summary.json").is_file() and (out / "per_case.csv").is_file()
    assert not (pred_dir / "summary.json").exists()


def test_segmentation_folder_prediction_in_other_format(tmp_path):
    pred_dir, ref_dir = _seg_folders(tmp_path)
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(pred_dir / "case_b.nii.gz")))
    (pred_dir / "case_b.nii.gz").unlink()
    _write(pred_dir / "case_b.nrrd", arr)
    s = evaluate_segmentation_folder(pred_dir, ref_dir, LABELS, output_dir=tmp_path / "o")
    assert s["per_case"][1]["metrics"]["liver"]["dice"] == 1.0


def test_segmentation_missing_prediction_names_case(tmp_path):
    pred_dir, ref_dir = _seg_folders(tmp_path)
    (pred_dir / "case_b.nii.gz").unlink()
    with pytest.raises(SelfconfigError, match="case_b"):
        evaluate_segmentation_folder(pred_dir, ref_dir, LABELS)


def test_segmentation_shape_mismatch_names_both_files(tmp_path):
    pred_dir, ref_dir = _seg_folders(tmp_path)
    _write(pred_dir / "case_a.nii.gz", np.zeros((4, 6, 5)))
    with pytest.raises(SelfconfigError) as e:
        evaluate_segmentation_folder(pred_dir, ref_dir, LABELS)
    assert str(pred_dir / "case_a.nii.gz") in str(e.value)
    assert str(ref_dir / "case_a.nii.gz") in str(e.value)


def test_segmentation_empty_reference_folder_is_an_error(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    with pytest.raises(SelfconfigError, match="no label files"):
        evaluate_segmentation_folder(tmp_path / "pred", tmp_path / "ref", LABELS)


def test_segmentation_two_workers_match_one(tmp_path):
    pred_dir, ref_dir = _seg_folders(tmp_path)
    one = evaluate_segmentation_folder(pred_dir, ref_dir, LABELS, output_dir=tmp_path / "o1")
    two = evaluate_segmentation_folder(pred_dir, ref_dir, LABELS, output_dir=tmp_path / "o2", num_workers=2)
    assert two["mean"] == one["mean"]
    assert [c["metrics"]["liver"] for c in two["per_case"]] == [c["metrics"]["liver"] for c in one["per_case"]]


# ---------------------------------------------------------------------------------------------- classification

CLASSES = {"none": 0, "mild": 1, "severe": 2}


def _write_cls(tmp_path: Path, drop_case: str | None = None):
    labels = pd.DataFrame({
        "case": ["001", "002", "003", "004", "005", "006"],
        "label": [0, "none", 1, "mild", 2, "severe"],  # indices and names mixed
        "site": list("abcdef"),  # extra column: ignored
    })
    pred = pd.DataFrame({
        "case": ["001", "002", "003", "004", "005", "006", "999"],
        "prediction": [0, 1, 1, 1, "severe", 0, 2],
        "prob_none": [0.6, 0.2, 0.2, 0.1, 0.5, 0.1, 0.0],
        "prob_mild": [0.3, 0.5, 0.5, 0.6, 0.1, 0.2, 0.0],
        "prob_severe": [0.1, 0.3, 0.3, 0.3, 0.4, 0.7, 1.0],
    })
    if drop_case:
        pred = pred[pred["case"] != drop_case]
    labels.to_csv(tmp_path / "labels.csv", index=False)
    pred.to_csv(tmp_path / "pred.csv", index=False)
    return tmp_path / "pred.csv", tmp_path / "labels.csv"


def test_classification_metrics_by_hand(tmp_path):
    pred_csv, labels_csv = _write_cls(tmp_path)
    out = tmp_path / "out"
    s = evaluate_classification_csv(pred_csv, labels_csv, CLASSES, output_dir=out)
    m = s["metrics"]
    # y_true [0,0,1,1,2,2], y_pred [0,1,1,1,2,0]: 4 of 6 right; kappa 2/7 (see test_metrics)
    assert m["n_cases"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["quadratic_weighted_kappa"] == pytest.approx(2 / 7)
    # OvR, pairs (positive, negative) ranked right, a tie counts 1/2:
    #   class 0: pos {.6,.2} vs neg {.2,.1,.5,.1}: .6 beats 4; .2: tie .5 + 1 + 0 + 1 -> 6.5/8
    #   class 1: pos {.5,.6} vs neg {.3,.5,.1,.2}: .6 beats 4; .5: 1 + tie .5 + 1 + 1 -> 7.5/8
    #   class 2: pos {.4,.7} vs neg {.1,.3,.3,.3}: 8/8
    assert m["roc_auc"] == pytest.approx((6.5 / 8 + 7.5 / 8 + 1.0) / 3)
    assert s["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert [r["case"] for r in s["per_case"]] == ["001", "002", "003", "004", "005", "006"]  # 999 ignored
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["task"] == "classification"
    assert on_disk["metrics"]["accuracy"] == pytest.approx(4 / 6)
    csv = pd.read_csv(out / "per_case.csv", dtype={"case": str})
    assert csv["case"].tolist()[0] == "001"  # leading zeros kept
    assert csv["correct"].tolist() == [True, False, True, True, True, False]
    assert {"prob_none", "prob_mild", "prob_severe"} <= set(csv.columns)


def test_classification_missing_prediction_names_case(tmp_path):
    pred_csv, labels_csv = _write_cls(tmp_path, drop_case="004")
    with pytest.raises(SelfconfigError, match="004"):
        evaluate_classification_csv(pred_csv, labels_csv, CLASSES)


def test_classification_bad_label_and_partial_probabilities(tmp_path):
    pred_csv, labels_csv = _write_cls(tmp_path)
    df = pd.read_csv(labels_csv, dtype={"case": str})
    df.loc[0, "label"] = "unknown"
    df.to_csv(labels_csv, index=False)
    with pytest.raises(SelfconfigError, match="unknown"):
        evaluate_classification_csv(pred_csv, labels_csv, CLASSES)
    pred_csv, labels_csv = _write_cls(tmp_path)
    pd.read_csv(pred_csv, dtype={"case": str}).drop(columns=["prob_mild"]).to_csv(pred_csv, index=False)
    with pytest.raises(SelfconfigError, match="prob_mild"):
        evaluate_classification_csv(pred_csv, labels_csv, CLASSES)


def test_classification_argmax_without_prediction_column(tmp_path):
    pred_csv, labels_csv = _write_cls(tmp_path)
    pd.read_csv(pred_csv, dtype={"case": str}).drop(columns=["prediction"]).to_csv(pred_csv, index=False)
    s = evaluate_classification_csv(pred_csv, labels_csv, CLASSES)
    # arg-max predictions [0,1,1,1,0,2] vs truth [0,0,1,1,2,2]: 4 of 6
    assert s["metrics"]["accuracy"] == pytest.approx(4 / 6)
    assert (tmp_path / "summary.json").is_file()  # default output: folder of pred_csv


# ---------------------------------------------------------------------------------------------- FROC from tables


def _froc_tables():
    labels = pd.DataFrame({
        "case": ["c1", "c2", "c3", "c4", "c5", "c6", "c7"],
        "label": [1, 1, 1, 0, 0, 0, 0],
        "scan_id": ["A", "A", "A", "A", "B", "B", "B"],
        "nodule_id": [1, 1, 2, -1, -1, -1, -1],
    })
    pred = pd.DataFrame({
        "case": ["c7", "c6", "c5", "c4", "c3", "c2", "c1"],  # other order than labels
        "prob_benign": [0.9, 0.6, 0.3, 0.2, 0.6, 0.4, 0.1],
        "prob_nodule": [0.1, 0.4, 0.7, 0.8, 0.4, 0.6, 0.9],
    })
    nodules = pd.DataFrame({"scan_id": ["A", "A", "B"], "nodule_id": [1, 2, 1]})  # B/1 never hit
    return pred, labels, nodules


def test_froc_from_tables_matches_hand_computed_case():
    pred, labels, nodules = _froc_tables()
    r = froc_from_tables(pred, labels, nodules, max_fp_per_scan=3.0)
    # same candidates as test_metrics._luna_like_candidates -> area 19/36
    assert r["total_nodules"] == 3 and r["n_scans"] == 2
    np.testing.assert_allclose(r["sensitivity"], [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert r["area"] == pytest.approx(19 / 36)
    r = froc_from_tables(pred, labels, nodules, n_scans=4, positive_class="nodule")
    np.testing.assert_allclose(r["fp_per_scan"], [0, 0, 0.25, 0.5, 0.75, 1.0])


def test_froc_from_tables_errors():
    pred, labels, nodules = _froc_tables()
    with pytest.raises(SelfconfigError, match="c3"):
        froc_from_tables(pred[pred["case"] != "c3"], labels, nodules)
    with pytest.raises(SelfconfigError, match="nodules table lacks"):
        froc_from_tables(pred, labels, nodules[nodules["nodule_id"] != 2])
