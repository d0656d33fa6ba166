"""Losses: Dice + cross-entropy with deep supervision (segmentation), cross-entropy (classification).

Segmentation has three forms, chosen from the dataset's labels (:mod:`selfconfig.dataset.labels`):

* plain labels: soft Dice over the foreground classes + cross-entropy (MONAI's ``DiceCELoss``);
* an ``ignore`` label: the same, with the ignored voxels left out of both terms (nnU-Net v2's
  ``DC_and_CE_loss`` with ``ignore_label``);
* regions: one sigmoid output per region, soft Dice per region + binary cross-entropy
  (nnU-Net v2's ``DC_and_BCE_loss``), ignored voxels again left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn


def deep_supervision_weights(n: int) -> list[float]:
    """1, 1/2, 1/4 ... normalised to sum 1 (as nnU-Net; the lowest resolution is not supervised
    by the network already)."""
    w = [1.0 / (2 ** i) for i in range(n)]
    s = sum(w)
    return [x / s for x in w]


def downsample_seg(seg: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    if tuple(seg.shape[2:]) == tuple(size):
        return seg
    return F.interpolate(seg.float(), size=size, mode="nearest").long()


def soft_dice(probs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
              batch_dice: bool = True, smooth: float = 1e-5) -> torch.Tensor:
    """Soft Dice per channel of ``probs`` against the one-hot / region ``target`` (both (B, C, ...)),
    counting only voxels where ``mask`` (B, 1, ...) is 1; (C,) with ``batch_dice``, else (B, C)."""
    axes = tuple(range(2, probs.ndim))
    if batch_dice:
        axes = (0, *axes)
    if mask is not None:
        probs = probs * mask
        target = target * mask
    intersect = (probs * target).sum(axes)
    denom = probs.sum(axes) + target.sum(axes)
    return (2 * intersect + smooth) / torch.clamp(denom + smooth, min=1e-8)


def region_targets(seg: torch.Tensor, regions: list[tuple[int, ...]]) -> torch.Tensor:
    """(B, 1, ...) label map -> (B, R, ...) float: 1 where the voxel's value is in region r."""
    chans = []
    for region in regions:
        m = seg == region[0]
        for v in region[1:]:
            m = m | (seg == v)
        chans.append(m)
    return torch.cat(chans, 1).float()


class IgnoreDiceCELoss(nn.Module):
    """Soft Dice (foreground classes) + cross-entropy over the voxels whose label is not ``ignore_label``."""

    def __init__(self, ignore_label: int, batch_dice: bool = True):
        super().__init__()
        self.ignore_label = int(ignore_label)
        self.batch_dice = batch_dice

    def forward(self, logits: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        mask = seg != self.ignore_label
        target = torch.where(mask, seg, torch.zeros_like(seg))
        onehot = torch.zeros_like(logits).scatter_(1, target, 1.0)
        probs = torch.softmax(logits, 1)
        m = mask.to(logits.dtype)
        dice = soft_dice(probs[:, 1:], onehot[:, 1:], m, self.batch_dice)
        n = m.sum()
        if n > 0:
            ce = F.cross_entropy(logits, target[:, 0], reduction="none")
            ce = (ce * m[:, 0]).sum() / n
        else:  # nothing labelled in this batch: no cross-entropy signal
            ce = logits.sum() * 0.0
        return ce + (1.0 - dice.mean())


class RegionDiceBCELoss(nn.Module):
    """Region-based training: soft Dice per region + binary cross-entropy on sigmoid outputs,
    over the voxels whose label is not ``ignore_label`` (when there is one).

    The BCE is the mean over regions and labelled voxels with or without an ignore label
    (nnU-Net v2 divides the masked sum by the voxel count only, which scales it by the number
    of regions when an ignore label exists)."""

    def __init__(self, regions: list[tuple[int, ...]], ignore_label: int | None = None, batch_dice: bool = True):
        super().__init__()
        self.regions = [tuple(int(v) for v in r) for r in regions]
        self.ignore_label = ignore_label
        self.batch_dice = batch_dice

    def forward(self, logits: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        target = region_targets(seg, self.regions)
        if self.ignore_label is None:
            bce = F.binary_cross_entropy_with_logits(logits, target)
            mask = None
        else:
            mask = (seg != self.ignore_label).to(logits.dtype)
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            bce = (bce * mask).sum() / torch.clamp(mask.sum() * logits.shape[1], min=1e-8)
        dice = soft_dice(torch.sigmoid(logits), target, mask, self.batch_dice)
        return bce + (1.0 - dice.mean())


class SegmentationLoss(nn.Module):
    """Soft Dice (batch Dice) + cross-entropy, summed over deep-supervision outputs.

    ``regions``: region-based training (sigmoid outputs, Dice + BCE per region); ``ignore_label``:
    voxels with that value count nowhere. Neither: Dice over the foreground classes + CE."""

    def __init__(self, batch_dice: bool = True, ignore_label: int | None = None,
                 regions: list[tuple[int, ...]] | None = None):
        super().__init__()
        if regions:
            self.dc_ce = RegionDiceBCELoss(regions, ignore_label, batch_dice)
        elif ignore_label is not None:
            self.dc_ce = IgnoreDiceCELoss(ignore_label, batch_dice)
        else:
            self.dc_ce = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=batch_dice,
                                    smooth_nr=1e-5, smooth_dr=1e-5)

    @classmethod
    def for_labels(cls, scheme, batch_dice: bool = True) -> "SegmentationLoss":
        """The loss a :class:`selfconfig.dataset.labels.LabelScheme` calls for."""
        return cls(batch_dice, scheme.ignore_label, scheme.foreground_regions if scheme.has_regions else None)

    def forward(self, outputs: torch.Tensor | list[torch.Tensor], seg: torch.Tensor) -> torch.Tensor:
        seg = seg.long()  # no copy when it already is
        if not isinstance(outputs, (list, tuple)):
            return self.dc_ce(outputs.float(), seg)
        weights = deep_supervision_weights(len(outputs))
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for w, out in zip(weights, outputs):
            total = total + w * self.dc_ce(out.float(), downsample_seg(seg, tuple(out.shape[2:])))
        return total


def classification_loss(class_weights: torch.Tensor | None = None) -> nn.Module:
    return nn.CrossEntropyLoss(weight=class_weights)
