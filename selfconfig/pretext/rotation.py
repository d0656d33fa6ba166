"""Rotation prediction (the paper's retinopathy surrogate): rotate each input in the axial
(in-plane) plane by one of a set of angles and predict which.

180 degrees is left out by default: a fundus image of a left eye rotated by 180 degrees looks
like a right eye, so the task would be ambiguous. ``angles`` and ``mode`` ("softmax": one class
per angle with cross-entropy; "sigmoid": one independent sigmoid per angle, the variant of the
paper's supplementary material) can be changed in a subclass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfconfig.pretext.base import ClassificationPretext


class RotationPrediction(ClassificationPretext):
    name = "rotation"
    augmentation = "intensity"
    cost_factor = 1.15  # encoder + head, plus rotating the batch (measured on FUNDUS_DR 2d_imagenet: 26.5 s vs 23 s per 25 iterations)
    angles: tuple[int, ...] = (0, 90, 270)
    mode = "softmax"

    @property
    def num_outputs(self) -> int:  # type: ignore[override]
        return len(self.angles)

    @property
    def chance_level(self) -> float:  # type: ignore[override]
        return 1.0 / len(self.angles)

    def make_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # rotations by 90 degrees need square planes: centre-crop the two in-plane axes
        h, w = x.shape[-2:]
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        x = x[..., y0:y0 + s, x0:x0 + s]
        which = self.randint(len(self.angles), x.shape[0])
        out = torch.empty_like(x)
        for i, angle in enumerate(self.angles):
            sel = (which == i).nonzero().flatten().to(x.device)
            if len(sel):
                out[sel] = torch.rot90(x[sel], k=angle // 90, dims=(-2, -1))
        return out, which

    def loss_and_metrics(self, logits, target):
        if self.mode == "sigmoid":
            onehot = F.one_hot(target, len(self.angles)).float()
            loss = F.binary_cross_entropy_with_logits(logits, onehot)
        else:
            loss = F.cross_entropy(logits, target)
        acc = float((logits.argmax(1) == target).float().mean())
        return loss, {"accuracy": acc}
