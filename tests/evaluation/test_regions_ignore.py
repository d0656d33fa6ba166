"""Region Dice and the ignore label in the metric functions and the folder evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from selfconfig.cli.evaluate import main as evaluate_main
from selfconfig.dataset.geometry import Geometry
from selfconfig.dataset.io import write_segmentation
from selfconfig.evaluation.evaluate import evaluate_segmentation_folder
from selfconfig.evaluation.metrics import dice_per_class, region_case_metrics, segmentation_case_metrics

BRATS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}


def test_region_dice_counts_member_values():
    ref = np.array([0, 1, 1, 2, 2, 3, 3, 0])
    pred = np.array([0, 1, 2, 2, 3, 3, 0, 0])
    m = region_case_metrics(pred, ref, [(1, 2, 3), (2, 3), (3,)])
    # whole tumor: ref 6 voxels, pred 5, all 5 inside -> 10/11
    assert m[(1, 2, 3)]["dice"] == pytest.approx(10 / 11) and m[(1, 2, 3)]["tp"] == 5
    # tumor core: ref {3,4,5,6}, pred {2,3,4,5} -> tp 3 -> 6/8
    assert m[(2, 3)]["dice"] == pytest.approx(0.75)
    # enhancing: ref {5,6}, pred {4,5} -> 1 -> 0.5
    assert m[(3,)]["dice"] == pytest.approx(0.5)
    # mixed: plain values and regions in one call keep their keys
    mixed = dice_per_class(pred, ref, [1, (2, 3)])
    assert set(mixed) == {1, (2, 3)} and mixed[(2, 3)] == pytest.approx(0.75)
    assert mixed[1] == pytest.approx(segmentation_case_metrics(pred, ref, [1])[1]["dice"])


def test_ignore_label_is_left_out_of_every_count():
    ref = np.array([0, 1, 1, 9, 9, 9])
    pred = np.array([0, 1, 1, 1, 1, 0])
    with_ignore = segmentation_case_metrics(pred, ref, [1], ignore_label=9)[1]
    assert with_ignore["dice"] == 1.0 and with_ignore["fp"] == 0
    assert segmentation_case_metrics(pred, ref, [1])[1]["dice"] < 1.0  # counted, the 9s make false positives
    regions = region_case_metrics(pred, ref, [(1,)], ignore_label=9)
    assert regions[(1,)]["dice"] == 1.0


def _write(path, arr):
    arr = np.asarray(arr, np.uint8).reshape(1, 2, -1)
    write_segmentation(arr, Geometry(spacing=(1.0, 1.0, 1.0), shape=arr.shape, dim=3, file_ending=".nii.gz"), path)


def test_folder_evaluation_by_region_and_with_ignore(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    _write(ref / "a.nii.gz", [0, 1, 1, 2, 2, 3, 3, 0, 4, 4])
    _write(pred / "a.nii.gz", [0, 1, 2, 2, 3, 3, 0, 0, 3, 3])  # 3 where the reference says "ignore"
    s = evaluate_segmentation_folder(pred, ref, {**BRATS, "ignore": 4}, output_dir=tmp_path / "out")
    d = s["mean"]["dice_per_class"]
    assert list(d) == ["whole tumor", "tumor core", "enhancing tumor"]
    assert d["whole tumor"] == pytest.approx(10 / 11) and d["tumor core"] == pytest.approx(0.75)
    assert d["enhancing tumor"] == pytest.approx(0.5)  # the 3s on ignored voxels are no false positives
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["labels"]["whole tumor"] == [1, 2, 3] and saved["labels"]["ignore"] == 4
    # the CLI takes regions from a labels JSON as well
    labels_json = tmp_path / "labels.json"
    labels_json.write_text(json.dumps({"labels": {**BRATS, "ignore": 4}}))
    assert evaluate_main(["-pred", str(pred), "-ref", str(ref), "-l", str(labels_json), "-o", str(tmp_path / "cli")]) == 0
    cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert cli["mean"]["dice_per_class"] == pytest.approx(d)
