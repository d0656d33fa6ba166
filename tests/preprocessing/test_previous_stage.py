"""The cascade's inputs are preprocessed before its run: a previous-stage label map in the scan's
geometry becomes a known array on the preprocessed grid (crop box, label resampling), and is
redone only when its source changes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from selfconfig.dataset.geometry import Geometry
from selfconfig.dataset.io import write_segmentation
from selfconfig.preprocessing import storage
from selfconfig.preprocessing.previous_stage import preprocess_previous_stage, to_preprocessed_grid
from selfconfig.testing import planner_inputs


@pytest.fixture(scope="module")
def plans():
    """Plans of a dataset with labels 0, 1, 2 (what the label resampling keeps apart)."""
    from planners import DefaultPlanner

    info, fp = planner_inputs(shape=(10, 20, 20))
    return DefaultPlanner(info, fp, cpu_gflops=20.0, cpu_target_seconds=0.3).plan()


def _case(tmp_path, seg: np.ndarray, crop_box, after_shape, spacing=(1.0, 1.0, 1.0), after_spacing=(1.0, 1.0, 1.0)):
    """A preprocessed case's properties and its previous-stage prediction written as NIfTI."""
    folder = tmp_path / "3d" / "train"
    folder.mkdir(parents=True)
    geometry = Geometry(spacing=spacing, shape=seg.shape)
    props = {"geometry": geometry.to_dict(), "crop_box": crop_box, "shape_after_resampling": list(after_shape),
             "spacing_after_resampling": list(after_spacing), "preprocess_key": "k1"}
    storage.save_case(folder, "c1", np.zeros((1, *after_shape), np.float32), None, None, props)
    src = tmp_path / "lowres" / "c1.nii.gz"
    src.parent.mkdir()
    write_segmentation(seg, geometry, src)
    return folder, src


def test_same_spacing_is_the_crop_box(tmp_path, plans):
    seg = np.zeros((6, 8, 8), np.uint8)
    seg[1:4, 2:6, 3:7] = 1
    seg[2, 3, 4] = 2
    folder, src = _case(tmp_path, seg, [[1, 5], [2, 7], [3, 8]], (4, 5, 5))
    out = tmp_path / "next_stage"
    paths = preprocess_previous_stage({"c1": src}, folder, out, plans, plans.configurations["3d"])
    assert paths == {"c1": str(out / "c1.npy")}
    got = np.load(paths["c1"])
    assert np.array_equal(got, seg[1:5, 2:7, 3:8])  # nothing resampled: exactly the case's crop
    assert got[1, 1, 1] == 2 and int((got == 1).sum()) == 3 * 4 * 4 - 1


def test_half_resolution_keeps_each_block_label(plans):
    """Downsampled by 2 along y and x: a label block on even voxels becomes the half-size block."""
    seg = np.zeros((4, 8, 8), np.uint8)
    seg[:, 2:6, 2:6] = 1
    seg[:, 4:6, 4:6] = 2
    props = {"geometry": Geometry(spacing=(1.0, 1.0, 1.0), shape=seg.shape).to_dict(),
             "crop_box": [[0, 4], [0, 8], [0, 8]], "shape_after_resampling": [4, 4, 4],
             "spacing_after_resampling": [1.0, 2.0, 2.0]}
    got = to_preprocessed_grid(seg, props, plans, plans.configurations["3d"])
    want = np.zeros((4, 4, 4), np.uint8)
    want[:, 1:3, 1:3] = 1
    want[:, 2, 2] = 2
    assert np.array_equal(got, want)


def test_redone_only_when_the_source_changes(tmp_path, plans):
    seg = np.zeros((4, 6, 6), np.uint8)
    seg[1:3, 1:4, 1:4] = 1
    folder, src = _case(tmp_path, seg, [[0, 4], [0, 6], [0, 6]], (4, 6, 6))
    out, cfg = tmp_path / "next_stage", plans.configurations["3d"]
    path = preprocess_previous_stage({"c1": src}, folder, out, plans, cfg)["c1"]
    os.utime(path, ns=(1, 1))  # mark the array: a rerun that keeps it keeps this time
    preprocess_previous_stage({"c1": src}, folder, out, plans, cfg)
    assert os.stat(path).st_mtime_ns == 1
    seg[:] = 2
    write_segmentation(seg, Geometry(spacing=(1.0, 1.0, 1.0), shape=seg.shape), src)
    os.utime(src, ns=(10**18, 10**18))  # a newer prediction
    preprocess_previous_stage({"c1": src}, folder, out, plans, cfg)
    assert np.array_equal(np.load(path), seg)
