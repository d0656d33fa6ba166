"""Losses: Dice + cross-entropy with deep supervision (segmentation), cross-entropy (classification)."""

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


class SegmentationLoss(nn.Module):
    """Soft Dice (batch Dice, foreground classes) + cross-entropy, summed over deep-supervision outputs."""

    def __init__(self, batch_dice: bool = True):
        super().__init__()
        self.dc_ce = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=batch_dice,
                                smooth_nr=1e-5, smooth_dr=1e-5)

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
