"""Prediction, ensembles, post-processing and the cascade on known inputs: networks whose output
is known voxel by voxel (a point-wise convolution, constant logits), so that sliding windows,
mirroring, the mean over folds and configurations, putting a prediction back into the scan, the
largest-component filter and the previous stage's extra channels each have one right answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from selfconfig.dataset.geometry import Geometry
from selfconfig.inference.ensemble import EnsemblePredictor
from selfconfig.inference.postprocessing import apply_postprocessing, keep_largest_component
from selfconfig.inference.predictor import LoadedModel, Predictor
from selfconfig.testing import planner_inputs


@pytest.fixture(scope="module")
def plans():
    """3-class CT plans with 3d, 3d_lowres and 3d_cascade_fullres configurations."""
    from planners import DefaultPlanner

    info, fp = planner_inputs()
    plans = DefaultPlanner(info, fp, cpu_gflops=20.0, cpu_target_seconds=0.3).plan()
    assert {"3d", "3d_lowres", "3d_cascade_fullres"} <= set(plans.configurations)
    return plans


def pointwise(in_channels: int, weights: list[list[float]], bias: list[float] | None = None) -> nn.Module:
    """A 1x1x1 convolution: logits[k] = sum_c weights[k][c] * x[c] + bias[k] at every voxel."""
    conv = nn.Conv3d(in_channels, len(weights), 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weights, dtype=torch.float32).reshape(conv.weight.shape))
        conv.bias.copy_(torch.tensor(bias or [0.0] * len(weights)))
    return conv.eval()


def constant(in_channels: int, probabilities: list[float]) -> nn.Module:
    """Logits that give these softmax probabilities everywhere, whatever the input."""
    return pointwise(in_channels, [[0.0] * in_channels] * len(probabilities), np.log(probabilities).tolist())


def model(plans, network: nn.Module, configuration: str = "3d") -> LoadedModel:
    return LoadedModel(network, plans, configuration, "Known", Path(f"/known/{configuration}/{id(network)}.pt"))


def test_sliding_window_with_mirroring_is_the_network_at_every_voxel(plans):
    """Windows overlap and are mirrored 8 ways; stitched and un-mirrored, each voxel must get
    exactly the point-wise network's softmax of its own value (an asymmetric input, so that a
    window or a mirror put back in the wrong place would show)."""
    patch = plans.configurations["3d"].patch_size
    shape = [2 * p + 3 for p in patch]
    x = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
    x[0, : shape[0] // 2] += 1.0
    pred = Predictor([model(plans, pointwise(1, [[0.0], [2.0], [-2.0]]))], torch.device("cpu"), tta=True,
                     precision="fp32")
    probs = pred.predict_preprocessed(x)
    want = torch.softmax(torch.tensor(x[0])[None] * torch.tensor([0.0, 2.0, -2.0]).reshape(3, 1, 1, 1), 0).numpy()
    assert probs.shape == (3, *shape)
    np.testing.assert_allclose(probs, want, atol=1e-5)


def test_folds_and_configurations_ensemble_by_mean_probability(plans):
    """Fold A says class 1 (0.6), fold B class 2 (0.8): their mean is (0.1, 0.35, 0.55), so the
    ensemble says 2 where A alone says 1; the same for two configurations' predictors."""
    a, b = [0.1, 0.6, 0.3], [0.1, 0.1, 0.8]
    x = np.ones((1, 8, 16, 16), np.float32)
    folds = Predictor([model(plans, constant(1, a)), model(plans, constant(1, b))], torch.device("cpu"), tta=False,
                      precision="fp32")
    np.testing.assert_allclose(folds.predict_preprocessed(x), np.broadcast_to(
        np.array([0.1, 0.35, 0.55], np.float32).reshape(3, 1, 1, 1), (3, 8, 16, 16)), atol=1e-6)

    image = np.zeros((1, 10, 24, 24), np.float32)
    image[0, 2:8, 5:20, 3:17] = 1.0  # the body: preprocessing crops to it
    geometry = Geometry(spacing=(2.0, 1.0, 1.0), shape=(10, 24, 24))
    alone = Predictor([model(plans, constant(1, a))], torch.device("cpu"), tta=False, precision="fp32")
    other = Predictor([model(plans, constant(1, b))], torch.device("cpu"), tta=False, precision="fp32")
    body = np.zeros((10, 24, 24), np.uint8)
    body[2:8, 5:20, 3:17] = 1
    assert np.array_equal(alone.predict_case(image, geometry)["seg"], body)
    res = EnsemblePredictor([alone, other]).predict_case(image, geometry, return_probabilities=True)
    assert np.array_equal(res["seg"], 2 * body)  # class 2 in the crop box, background outside it
    inside = res["probabilities"][:, 2:8, 5:20, 3:17].reshape(3, -1)
    np.testing.assert_allclose(inside, np.tile([[0.1], [0.35], [0.55]], inside.shape[1]), atol=1e-5)
    assert np.array_equal(res["probabilities"][:, 0, 0, 0], [1.0, 0.0, 0.0])


def test_largest_component_on_a_known_map():
    """Face connectivity: a diagonal neighbour is a component of its own; a region (a list of
    values) is filtered as one mask; the other labels are untouched."""
    seg = np.array([[[1, 1, 0, 0, 2],
                     [0, 0, 1, 0, 2],
                     [2, 0, 0, 0, 0],
                     [1, 1, 1, 0, 2]]], np.uint8)
    want_1 = np.array([[[0, 0, 0, 0, 2],
                        [0, 0, 0, 0, 2],
                        [2, 0, 0, 0, 0],
                        [1, 1, 1, 0, 2]]], np.uint8)
    assert np.array_equal(keep_largest_component(seg, 1), want_1)
    # as the region {1, 2}: the component (2 at [2,0] + 1s at row 3) has 4 voxels and wins
    want_region = np.array([[[0, 0, 0, 0, 0],
                             [0, 0, 0, 0, 0],
                             [2, 0, 0, 0, 0],
                             [1, 1, 1, 0, 0]]], np.uint8)
    assert np.array_equal(keep_largest_component(seg, [1, 2]), want_region)
    want_both = want_1.copy()
    want_both[0, 2, 0] = want_both[0, 3, 4] = 0  # then class 2 keeps its 2-voxel column only
    assert np.array_equal(apply_postprocessing(seg, {"largest_component_classes": [1, 2]}), want_both)


@pytest.mark.parametrize("sign,want", [(1.0, 2), (-1.0, 1)])
def test_cascade_reads_the_previous_stage_channels(plans, sign, want):
    """The low-resolution stage segments by the sign of the image (class 1 where positive, 2 where
    negative); the cascade's network swaps the classes of those one-hot channels and ignores the
    image, so its answer inside the body can only come from the previous stage's channels."""
    previous = Predictor([model(plans, pointwise(1, [[0.0], [5.0], [-5.0]]), "3d_lowres")], torch.device("cpu"),
                         tta=False, precision="fp32")
    cascade_net = pointwise(3, [[0.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 5.0, 0.0]])
    cascade = Predictor([model(plans, cascade_net, "3d_cascade_fullres")], torch.device("cpu"), tta=False,
                        precision="fp32", previous_stage=previous)
    image = np.zeros((1, 12, 40, 40), np.float32)
    image[0, 2:10, 6:34, 4:30] = sign * 0.5
    seg = cascade.predict_case(image, Geometry(spacing=(2.0, 1.0, 1.0), shape=(12, 40, 40)))["seg"]
    body = np.zeros((12, 40, 40), np.uint8)
    body[2:10, 6:34, 4:30] = 1
    assert np.array_equal(seg, want * body)
