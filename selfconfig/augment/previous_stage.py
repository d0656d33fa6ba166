"""The cascade's extra input channels on the training device: the previous stage's label map as
one-hot channels, in training randomly perturbed as nnU-Net does, so that the network learns to
correct the previous stage instead of copying it.

The label map travels with the reference labels through the spatial augmentation (the module
stacks it onto ``seg``: same rotation, scaling and mirroring, nearest-neighbour), and only then
becomes one-hot channels here. The perturbation is a simplified form of nnU-Net's
``ApplyRandomBinaryOperatorTransform``: per sample with probability ``p_per_sample``, each channel
is dilated, eroded, opened or closed with a cube of radius 1..``max_radius`` voxels (nnU-Net also
removes random connected components; that is left out here). Its random draws are a pure
function of (seed, training step), so a resumed run perturbs exactly as an uninterrupted one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _dilate(x: torch.Tensor, r: int) -> torch.Tensor:
    pool = F.max_pool3d if x.ndim == 5 else F.max_pool2d
    return pool(x, kernel_size=2 * r + 1, stride=1, padding=r)


def _erode(x: torch.Tensor, r: int) -> torch.Tensor:
    return 1.0 - _dilate(1.0 - x, r)


_OPERATIONS = (
    _dilate,
    _erode,
    lambda x, r: _dilate(_erode(x, r), r),  # opening
    lambda x, r: _erode(_dilate(x, r), r),  # closing
)


class PreviousStageInput:
    """Label maps ``(B, 1, *spatial)`` (integers) -> ``(B, len(labels), *spatial)`` float one-hot."""

    def __init__(self, labels: list[int], perturb: bool = True, seed: int = 0, p_per_sample: float = 0.4,
                 max_radius: int = 2):
        self.labels = [int(v) for v in labels]
        self.perturb = bool(perturb)
        self.seed = int(seed)
        self.p_per_sample = float(p_per_sample)
        self.max_radius = int(max_radius)

    @property
    def channels(self) -> int:
        return len(self.labels)

    @torch.no_grad()
    def __call__(self, seg: torch.Tensor, index: int | None = None) -> torch.Tensor:
        """One-hot channels of ``seg``; perturbed in training (``index``: the training step)."""
        x = torch.cat([(seg == v) for v in self.labels], 1).float() if self.labels else \
            seg.new_zeros((seg.shape[0], 0, *seg.shape[2:]), dtype=torch.float32)
        if not self.perturb or index is None or not self.labels or self.max_radius < 1:
            return x
        b, c = x.shape[:2]
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + int(index)) % (2 ** 63))
        chosen = torch.rand(b, generator=g) < self.p_per_sample
        ops = torch.randint(0, len(_OPERATIONS), (b, c), generator=g)
        radii = torch.randint(1, self.max_radius + 1, (b, c), generator=g)
        for i in torch.nonzero(chosen).flatten().tolist():
            for j in range(c):
                op, r = _OPERATIONS[int(ops[i, j])], int(radii[i, j])
                x[i:i + 1, j:j + 1] = op(x[i:i + 1, j:j + 1], r)
        return x
