"""Overlay PNGs of a scored folder: the slices drawn pass through the structure, the class colours
are in the picture, the montage shows the best, median and worst case in that order, large
slices are drawn at a fixed size; classification writes its confusion matrix and ROC curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from selfconfig.evaluation.evaluate import evaluate_classification_csv, evaluate_segmentation_folder
from selfconfig.evaluation.metrics import roc_auc
from selfconfig.evaluation.overlays import (PALETTE, PIXEL_BUDGET, draw_case, legend_layout, montage_picks,
                                            resample_plane, roc_curves, structure_slices)
from selfconfig.testing import SCORED_LABELS, write_scored_cases

LABELS = SCORED_LABELS


def _has_colour(png: Path, hex_colour: str, tol: int = 40) -> bool:
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    want = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(rgb - want).sum(axis=-1) < tol).any())


def test_the_slices_drawn_pass_through_the_structure_off_centre():
    mask = np.zeros((32, 32, 32), bool)
    mask[3:6, 25:29, 1:4] = True  # a small block far from the middle
    mask[4, 26, 2] = True
    z, y, x = structure_slices(mask)
    assert 3 <= z < 6 and 25 <= y < 29 and 1 <= x < 4
    assert mask[z].any() and mask[:, y].any() and mask[:, :, x].any()
    assert structure_slices(np.zeros((4, 6, 8), bool)) == (2, 3, 4)
    two = np.zeros((8, 8, 32), bool)  # two lungs: the centre in x (between them) holds a sliver only
    two[2:6, 2:6, 2:12] = two[2:6, 2:6, 20:30] = True
    two[3, 3, 12:20] = True
    x = structure_slices(two)[2]
    assert two[:, :, x].sum() == 16


def test_a_large_slice_is_drawn_at_the_pixel_budget_in_square_millimetres():
    big = np.random.default_rng(0).random((400, 512))
    out = resample_plane(big, (2.0, 0.5))  # 800 mm x 256 mm
    assert max(out.shape) == PIXEL_BUDGET
    assert out.shape[0] / out.shape[1] == pytest.approx(800 / 256, rel=0.03)
    small = resample_plane(np.arange(32 * 32).reshape(32, 32), (1.0, 1.0))
    assert small.shape == (PIXEL_BUDGET, PIXEL_BUDGET) and small[0, 0] == 0 and small[-1, -1] == 32 * 32 - 1


def _cases(tmp_path: Path):
    return write_scored_cases(tmp_path)


def test_evaluate_writes_an_overlay_per_case_and_a_montage_ordered_by_dice(tmp_path):
    pred_dir, ref_dir, images = _cases(tmp_path)
    s = evaluate_segmentation_folder(pred_dir, ref_dir, LABELS, output_dir=tmp_path / "out", images=images)
    folder = tmp_path / "out" / s["overlays"]["folder"]
    for case in ("good", "fair", "bad"):
        png = folder / f"{case}.png"
        assert png.is_file() and Image.open(png).size[0] >= 3 * 250  # three planes side by side
        assert _has_colour(png, PALETTE[0]) and _has_colour(png, PALETTE[1])  # liver and tumour outlines
    montage = s["overlays"]["montage"]
    assert [m["rank"] for m in montage] == ["best", "median", "worst"]
    assert [m["case"] for m in montage] == ["good", "fair", "bad"]
    assert montage[0]["mean_dice"] > montage[1]["mean_dice"] > montage[2]["mean_dice"]
    m = Image.open(folder / "montage.png")
    assert m.size[1] > 3 * Image.open(folder / "good.png").size[1] * 0.9  # three rows


def test_no_overlays_when_switched_off(tmp_path):
    pred_dir, ref_dir, _ = _cases(tmp_path)
    s = evaluate_segmentation_folder(pred_dir, ref_dir, LABELS, output_dir=tmp_path / "out", overlays=False)
    assert "overlays" not in s and not (tmp_path / "out" / "overlays").exists()


def test_montage_picks_skip_undefined_dice_and_show_a_case_once():
    cases = [{"case": "a", "mean_dice": 0.5}, {"case": "b", "mean_dice": float("nan")}]
    assert [(r, pc["case"]) for r, pc in montage_picks(cases)] == [("best", "a")]
    assert montage_picks([{"case": "b", "mean_dice": float("nan")}]) == []


def test_a_2d_colour_image_is_drawn_once_with_both_outlines(tmp_path):
    ref = np.zeros((1, 64, 64), np.uint8)
    ref[0, 40:60, 5:20] = 1
    pred = np.zeros_like(ref)
    pred[0, 42:60, 5:22] = 1
    image = np.zeros((3, 1, 64, 64), np.float32)
    image[0] = 200.0  # a red photograph
    out = tmp_path / "case.png"
    at = draw_case(out, image, ref, pred, (1.0, 1.0, 1.0), [("skin", 1)], "case")
    assert ref[0, at[1]].any() and ref[0, :, at[2]].any()
    w, h = Image.open(out).size
    assert w < 2 * h  # one panel, not three
    assert _has_colour(out, PALETTE[0])
    rgb = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert ((rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)).sum() > 1000  # the red image


@pytest.mark.parametrize("planes, names", [
    (1, ["face", "foot", "hand", "limb", "scalp", "trunk"]),  # a narrow 2D picture with six parts
    (3, ["left_upper", "left_lower", "right_upper", "right_middle", "right_lower"]),
    (3, [f"cerebellum_region_{i}" for i in range(15)]),
])
def test_every_legend_entry_is_inside_the_picture(planes, names):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from selfconfig.evaluation import overlays

    width = 3.2 * planes
    ncol, height = legend_layout(names, width)
    fig = plt.figure(figsize=(width, 3.5 + height))
    overlays._legend(fig, overlays.class_colours(names), ncol)
    fig.canvas.draw()
    legend = fig.legends[0]
    box, fig_box, texts = legend.get_window_extent(), fig.bbox, [t.get_text() for t in legend.get_texts()]
    plt.close(fig)
    assert texts == [*names, "reference", "prediction"]
    assert fig_box.x0 <= box.x0 and box.x1 <= fig_box.x1, (box, fig_box)  # no entry cut off at either side
    assert box.height <= height * fig.dpi  # the rows reserved for it hold it


def test_classification_writes_the_confusion_matrix_and_roc_curves(tmp_path):
    y = np.array([0, 0, 1, 1, 1, 0])
    p1 = np.array([0.1, 0.6, 0.7, 0.9, 0.4, 0.2])
    pd.DataFrame({"case": [f"c{i}" for i in range(6)], "prob_no": 1 - p1, "prob_yes": p1}).to_csv(
        tmp_path / "pred.csv", index=False)
    pd.DataFrame({"case": [f"c{i}" for i in range(6)], "label": y}).to_csv(tmp_path / "labels.csv", index=False)
    s = evaluate_classification_csv(tmp_path / "pred.csv", tmp_path / "labels.csv", {"no": 0, "yes": 1})
    assert s["figures"] == ["confusion_matrix.png", "roc_curves.png"]
    for name in s["figures"]:
        assert Image.open(tmp_path / name).size[0] > 200
    probs = np.stack([1 - p1, p1], axis=1)
    curves = roc_curves(y, probs, ["no", "yes"])
    assert list(curves) == ["yes"] and curves["yes"][2] == pytest.approx(roc_auc(y, probs))
    assert s["confusion_matrix"]["matrix"] == [[2, 1], [1, 2]]
