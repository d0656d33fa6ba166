"""The mirror rule: an axis along which two classes are mirror images (a left and a right class) is
not mirrored, by training augmentation, test-time mirroring or the final validation; every other
axis is, and plans written before the rule mirror every axis."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from planners.mirror import MirrorRule, find_mirror_pairs
from selfconfig.dataset.geometry import Geometry
from selfconfig.dataset.inspect import class_locations
from selfconfig.inference.predictor import LoadedModel, Predictor, mirror_combinations
from selfconfig.planning import plan_and_preprocess, plans_file
from selfconfig.plans import Plans
from selfconfig.training.config import TrainingConfig


def write_sides_dataset(raw: Path, name: str, *, pair: bool, n: int = 4, shape=(32, 32, 32), seed: int = 0) -> None:
    """``pair``: a left class (1) and a right class (2) of equal size on either side of x's centre,
    jittered. Otherwise a core (2) inside a shell (1): both centred, no side."""
    from selfconfig.dataset.io import write_image, write_segmentation

    rng = np.random.default_rng(seed)
    out = raw / name
    for sub in ("imagesTr", "labelsTr"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), 0).astype(np.float32)
    for i in range(n):
        seg = np.zeros(shape, np.uint8)
        centre = np.array([s / 2 for s in shape]) + rng.uniform(-3, 3, 3)
        if pair:
            for label, dx in ((1, -8.0), (2, 8.0)):
                c = centre + np.array([0.0, 0.0, dx])
                d = np.sqrt(((grid - c.reshape(3, 1, 1, 1)) ** 2).sum(0))
                seg[d < 5 + rng.uniform(-0.5, 0.5)] = label
        else:
            d = np.sqrt(((grid - centre.reshape(3, 1, 1, 1)) ** 2).sum(0))
            seg[d < 10] = 1
            seg[d < 6] = 2
        image = rng.normal(0, 0.3, shape).astype(np.float32) + 1.0 + seg
        geom = Geometry(spacing=(1.0, 1.0, 1.0), shape=shape, dim=3, file_ending=".nii.gz")
        write_image(image * 100, geom, out / "imagesTr" / f"c_{i:03d}_0000.nii.gz")
        write_segmentation(seg, geom, out / "labelsTr" / f"c_{i:03d}.nii.gz")
    labels = {"background": 0, "left": 1, "right": 2} if pair else {"background": 0, "shell": 1, "core": 2}
    (out / "dataset.json").write_text(json.dumps({"name": name, "task": "segmentation", "dimensionality": 3,
                                                  "channel_names": {"0": "CT"}, "labels": labels,
                                                  "file_ending": ".nii.gz"}))


@pytest.fixture
def planned_sides(roots):
    def factory(name: str, pair: bool):
        write_sides_dataset(roots.raw, name, pair=pair)
        return plan_and_preprocess(name, num_processes=1, cpu_gflops=20.0, cpu_target_seconds=0.3, roots=roots,
                                   progress=False, configurations=["3d"])

    return factory


# ---------------------------------------------------------------------- fingerprint


def test_class_locations_relative_to_the_foreground_box():
    """Box x = [1, 9): class 1 fills [1, 4) (centroid 2.5 -> 0.1875), class 2 [6, 9) (-> 0.8125);
    both fill the box along z and y (0.5); an absent class is left out."""
    lab = np.zeros((4, 6, 10), np.uint8)
    lab[1:3, 1:5, 1:4] = 1
    lab[1:3, 1:5, 6:8] = 2
    lab[1:3, 1:5, 8] = 2
    locs = class_locations(lab, [1, 2, 3])
    assert set(locs) == {1, 2}
    assert locs[1] == {"voxels": 24, "centroid": [0.5, 0.5, 0.1875]}
    assert locs[2] == {"voxels": 24, "centroid": [0.5, 0.5, 0.8125]}
    assert class_locations(np.zeros((2, 2, 2), np.uint8), [1]) == {}


# ---------------------------------------------------------------------- the rule


def _fp(cases: list[dict]) -> dict:
    return {"task": "segmentation", "class_locations": {
        f"c{i}": {str(k): {"voxels": v[0], "centroid": [0.5, 0.5, v[1]]} for k, v in c.items()}
        for i, c in enumerate(cases)}}


LEFT_RIGHT = {1: (100, 0.2), 2: (100, 0.8)}


def test_rule_thresholds():
    """80 % of the cases holding both, 0.1 of the extent from the centre, volumes within 2, the
    same sides: each threshold decides on its own."""
    pairs = find_mirror_pairs(_fp([LEFT_RIGHT] * 4 + [{1: (100, 0.5), 2: (100, 0.5)}])).pairs
    assert [(p.axis, p.classes, p.share, p.cases) for p in pairs] == [(2, (1, 2), 0.8, 5)]
    assert not find_mirror_pairs(_fp([LEFT_RIGHT] * 3 + [{1: (100, 0.5), 2: (100, 0.5)}] * 2)).pairs  # 60 %
    assert not find_mirror_pairs(_fp([{1: (100, 0.45), 2: (100, 0.8)}] * 5)).pairs  # 0.05 from the centre
    assert find_mirror_pairs(_fp([{1: (100, 0.4), 2: (100, 0.8)}] * 5)).pairs  # exactly 0.1
    assert not find_mirror_pairs(_fp([{1: (100, 0.2), 2: (201, 0.8)}] * 5)).pairs  # volumes differ by > 2
    assert find_mirror_pairs(_fp([{1: (100, 0.2), 2: (200, 0.8)}] * 5)).pairs
    swapped = {1: (100, 0.8), 2: (100, 0.2)}
    assert not find_mirror_pairs(_fp([LEFT_RIGHT, swapped] * 3)).pairs  # sides swap from case to case
    # a case that lacks one of the two does not count either way
    assert find_mirror_pairs(_fp([LEFT_RIGHT] * 4 + [{1: (100, 0.5)}] * 3)).pairs
    # a stricter rule (a planner subclass's)
    assert not find_mirror_pairs(_fp([LEFT_RIGHT] * 4 + [{1: (100, 0.5), 2: (100, 0.5)}]),
                                 MirrorRule(min_share=0.9)).pairs


def test_configuration_axes_and_reason():
    analysis = find_mirror_pairs(_fp([{1: (100, 0.2), 2: (100, 0.8), 3: (150, 0.25), 4: (140, 0.75)}] * 3))
    assert [p.classes for p in analysis.pairs] == [(1, 2), (1, 4), (2, 3), (3, 4)]
    axes, reason = analysis.for_configuration(3)
    assert axes == [0, 1]
    assert reason.startswith("axis 2 (x): classes 1/2, 1/4, 2/3, 3/4 are mirror images")
    assert analysis.for_configuration(2)[0] == [0]  # a 2D configuration of 3D data: (y, x)
    assert find_mirror_pairs({"task": "segmentation"}).for_configuration(3) == (
        [0, 1, 2], "all axes: the fingerprint has no class locations")


# ---------------------------------------------------------------------- plans


def test_left_right_dataset_plans_no_mirroring_along_x(planned_sides, roots):
    res = planned_sides("SIDES", pair=True)
    fp = json.loads((roots.preprocessed / "SIDES" / "fingerprint.json").read_text())
    locs = fp["class_locations"]["c_000"]
    assert locs["1"]["centroid"][2] < 0.4 < 0.6 < locs["2"]["centroid"][2]
    plans = json.loads(plans_file(roots.preprocessed / "SIDES").read_text())
    for name, cfg in plans["configurations"].items():
        want = [0, 1] if cfg["dim"] == 3 else [0]
        assert cfg["mirror_axes"] == want, name
        assert "classes 1/2 are mirror images" in cfg["mirror_axes_reason"], name
    assert res.plans.configuration("3d").axes_to_mirror() == (0, 1)
    from selfconfig.planning import format_plans_summary

    assert "mirroring axes 0, 1 (axis 2 (x): classes 1/2 are mirror images" in format_plans_summary(res.plans)


def test_dataset_without_a_mirror_pair_mirrors_every_axis(planned_sides):
    plans = planned_sides("NESTED", pair=False).plans
    for name, cfg in plans.configurations.items():
        assert cfg.mirror_axes == list(range(cfg.dim)), name
        assert cfg.mirror_axes_reason == "all axes: no two classes are mirror images along an axis"


def test_plans_without_the_field_mirror_every_axis(planned_sides, roots):
    planned_sides("OLD", pair=True)
    path = plans_file(roots.preprocessed / "OLD")
    data = json.loads(path.read_text())
    for cfg in data["configurations"].values():
        del cfg["mirror_axes"], cfg["mirror_axes_reason"]
    old = Plans.from_dict(data)
    assert old.configuration("3d").mirror_axes is None
    assert old.configuration("3d").axes_to_mirror() == (0, 1, 2)
    assert old.configuration("2d").axes_to_mirror() == (0, 1)


# ---------------------------------------------------------------------- where mirroring happens


def _with_axes(plans: Plans, axes) -> Plans:
    plans = copy.deepcopy(plans)
    for cfg in plans.configurations.values():
        cfg.mirror_axes = None if axes is None else [a for a in axes if a < cfg.dim]
    return plans


def test_training_and_pretext_augmentation_mirror_the_plans_axes(planned_sides):
    from selfconfig.pretext.base import PretextTask
    from selfconfig.training.trainer import Trainer

    plans = planned_sides("AUG", pair=True).plans
    for axes, want in (((0, 1), (0, 1)), (None, (0, 1, 2))):
        p = _with_axes(plans, axes)
        data = SimpleNamespace(config=p.configuration("3d"))
        aug = Trainer(TrainingConfig()).build_augmenter(data, seed=0)
        assert aug.config.mirror_enabled and aug.config.mirror_axes == want
        task = SimpleNamespace(augmentation="spatial", hp=TrainingConfig(), data=data, seed=0)
        assert PretextTask.build_augmenter(task).config.mirror_axes == want
    # mirroring every sample along every allowed axis: z and y are flipped, x never (a label in
    # the left half stays there)
    aug = Trainer(TrainingConfig()).build_augmenter(SimpleNamespace(config=plans.configuration("3d")), seed=0)
    aug.config.spatial_enabled = False
    aug.config.p_mirror_per_axis = 1.0
    seg = torch.zeros(4, 1, *plans.configuration("3d").patch_size, dtype=torch.uint8)
    z, y, x = (s // 2 for s in seg.shape[2:])
    seg[:, :, :z, :y, :x] = 1
    _, out = aug(torch.rand(seg.shape), seg.clone())
    assert torch.equal(out, seg.flip(2, 3))


def test_flip_pretext_keeps_its_own_flips_as_labels():
    """SurrogateFlip's flips are its target, along every axis; its augmentation mirrors nothing."""
    from selfconfig.pretext.flip import FlipPrediction

    assert FlipPrediction.augmentation == "intensity"


class XRamp(nn.Module):
    """Logits of class 1 rise along x, whatever the input: mirroring x at test time makes them symmetric."""

    def forward(self, x):
        out = torch.zeros(x.shape[0], 3, *x.shape[2:])
        out[:, 1] = torch.linspace(-3, 3, x.shape[-1])
        return out


def test_test_time_mirroring_uses_the_plans_axes(planned_sides):
    plans = planned_sides("TTA", pair=True).plans
    assert mirror_combinations(3, True, (0, 1)) == [(), (0,), (1,), (0, 1)]
    assert len(mirror_combinations(3, True)) == 8 and mirror_combinations(3, False, (0, 1)) == [()]
    patch = plans.configuration("3d").patch_size
    x = np.random.default_rng(0).normal(size=(1, *patch)).astype(np.float32)

    def probs(p: Plans, tta: bool) -> np.ndarray:
        m = LoadedModel(XRamp(), p, "3d", "Known", Path("/known/3d.pt"))
        return Predictor([m], torch.device("cpu"), tta=tta, precision="fp32").predict_preprocessed(x)

    plain = probs(plans, False)
    assert plain[1, 0, 0, 0] < plain[1, 0, 0, -1]
    np.testing.assert_allclose(probs(plans, True), plain, atol=1e-6)  # z and y mirrored, x not
    every = probs(_with_axes(plans, None), True)  # old plans: x mirrored too
    np.testing.assert_allclose(every, every[..., ::-1], atol=1e-6)
