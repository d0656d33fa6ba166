"""Losses and online validation for the ignore label and for region-based labels: ignored voxels
change neither the loss nor the Dice, regions are trained with Dice + BCE on sigmoid outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from selfconfig.dataset.labels import LabelScheme
from selfconfig.training.losses import (
    IgnoreDiceCELoss,
    RegionDiceBCELoss,
    SegmentationLoss,
    region_targets,
    soft_dice,
)
from selfconfig.training.modules import SupervisedModule

BRATS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}


def _batch(k_values: int, shape=(2, 1, 4, 6, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, k_values, shape, generator=g)


def test_ignore_loss_equals_dice_ce_when_nothing_is_ignored():
    """Same Dice + CE as MONAI's DiceCELoss (used without an ignore label) on fully labelled data."""
    seg = _batch(3)
    logits = torch.randn(2, 3, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    ours = IgnoreDiceCELoss(ignore_label=3)(logits, seg)
    ref = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True,
                     smooth_nr=1e-5, smooth_dr=1e-5)(logits, seg)
    assert torch.allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("kind", ["softmax", "regions"])
def test_ignored_voxels_change_neither_loss_nor_gradient(kind):
    seg = _batch(4)
    seg[:, :, :, :2] = 4  # ignore label on a band
    ignored = (seg == 4).expand(-1, 3, -1, -1, -1)
    loss_fn = IgnoreDiceCELoss(4) if kind == "softmax" else RegionDiceBCELoss([(1, 2, 3), (2, 3), (3,)], 4)
    if kind == "softmax":
        seg = torch.where(seg == 4, seg, seg.clamp(max=2))  # classes 0-2, ignore 4
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 4, 6, 6, generator=g, requires_grad=True)
    loss = loss_fn(logits, seg)
    loss.backward()
    assert torch.count_nonzero(logits.grad[ignored]) == 0
    assert torch.count_nonzero(logits.grad[~ignored]) > 0
    # whatever the network says where the label is "ignore", the loss is the same
    other = logits.detach().clone()
    other[ignored] = torch.randn(int(ignored.sum()), generator=g) * 10
    assert torch.allclose(loss_fn(other, seg), loss.detach(), atol=1e-6)
    # ... while the same change where there is a label does count
    moved = logits.detach().clone()
    moved[~ignored] = torch.randn(int((~ignored).sum()), generator=g) * 10
    assert not torch.allclose(loss_fn(moved, seg), loss.detach(), atol=1e-3)


def test_ignore_everywhere_gives_a_finite_zero_gradient():
    seg = torch.full((1, 1, 2, 4, 4), 3)
    logits = torch.randn(1, 3, 2, 4, 4, requires_grad=True)
    loss = IgnoreDiceCELoss(3)(logits, seg)
    loss.backward()
    assert torch.isfinite(loss) and torch.count_nonzero(logits.grad) == 0


def test_region_loss_is_bce_plus_soft_dice_per_region():
    seg = _batch(4)
    regions = [(1, 2, 3), (2, 3), (3,)]
    target = region_targets(seg, regions)
    assert torch.equal(target[:, 0:1].bool(), seg >= 1) and torch.equal(target[:, 2:3].bool(), seg == 3)
    assert torch.all(target[:, 2] <= target[:, 1]) and torch.all(target[:, 1] <= target[:, 0])  # nested
    logits = torch.randn(2, 3, 4, 6, 6, generator=torch.Generator().manual_seed(3))
    p = torch.sigmoid(logits)
    inter = (p * target).sum((0, 2, 3, 4))
    dice = (2 * inter + 1e-5) / (p.sum((0, 2, 3, 4)) + target.sum((0, 2, 3, 4)) + 1e-5)
    expected = F.binary_cross_entropy_with_logits(logits, target) + 1 - dice.mean()
    assert torch.allclose(RegionDiceBCELoss(regions)(logits, seg), expected, atol=1e-6)
    assert torch.allclose(soft_dice(p, target), dice, atol=1e-6)


def test_segmentation_loss_picks_the_form_from_the_labels():
    assert isinstance(SegmentationLoss.for_labels(LabelScheme.from_labels(BRATS, [1, 2, 3])).dc_ce, RegionDiceBCELoss)
    assert isinstance(SegmentationLoss.for_labels(LabelScheme.from_labels({"background": 0, "a": 1, "ignore": 2})).dc_ce,
                      IgnoreDiceCELoss)
    assert isinstance(SegmentationLoss.for_labels(LabelScheme.from_labels({"background": 0, "a": 1})).dc_ce, DiceCELoss)
    # deep supervision: every output scored against the label map at its resolution, ignore kept
    loss = SegmentationLoss.for_labels(LabelScheme.from_labels({**BRATS, "ignore": 4}, [1, 2, 3]))
    seg = _batch(5)
    outs = [torch.randn(2, 3, 4, 6, 6, requires_grad=True), torch.randn(2, 3, 2, 3, 3, requires_grad=True)]
    loss(outs, seg).backward()
    assert all(o.grad is not None for o in outs)


def _module(scheme: LabelScheme) -> SupervisedModule:
    net = torch.nn.Identity()
    return SupervisedModule(net, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1),
                            SegmentationLoss.for_labels(scheme), "segmentation", scheme.num_outputs,
                            torch.device("cpu"), lambda s, t: 0.1, label_scheme=scheme)


def test_online_validation_dice_leaves_ignored_voxels_out():
    scheme = LabelScheme.from_labels({"background": 0, "a": 1, "ignore": 2})
    ref = torch.tensor([[[[0, 1, 1, 2, 2, 2]]]])  # (B=1, 1, 1, 6) -> spatial (1, 6)
    # the network says "a" on the ignored voxels and on both real "a" voxels: perfect where labelled
    logits = torch.tensor([[[[5., -5, -5, -5, -5, -5]]], [[[-5., 5, 5, 5, 5, 5]]]]).permute(1, 0, 2, 3)
    module = _module(scheme)
    out = module.validation_step({"data": logits, "seg": ref})
    logs = module.validation_end([out])
    assert logs["val_dice"] == pytest.approx(1.0)  # counting the ignored voxels would give 4/7


def test_online_validation_dice_per_region():
    scheme = LabelScheme.from_labels(BRATS, [1, 2, 3])
    ref = torch.tensor([[[[0, 1, 2, 3]]]])
    logits = torch.full((1, 3, 1, 4), -5.0)
    logits[0, 0, 0, 1:] = 5  # whole tumor right
    logits[0, 1, 0, 3] = 5  # core: 1 of 2
    logits[0, 2, 0, 0] = 5  # enhancing: wrong voxel
    module = _module(scheme)
    logs = module.validation_end([module.validation_step({"data": logits, "seg": ref})])
    assert [logs[f"val_dice_{i}"] for i in (1, 2, 3)] == pytest.approx([1.0, 2 / 3, 0.0])
    assert logs["val_dice"] == pytest.approx(np.mean([1.0, 2 / 3, 0.0]))
