"""Dimension-generic building blocks shared by every selfconfig network.

The plan's ``dim`` picks the operators (``Conv2d`` / ``Conv3d``, ...), so one definition of each
block serves 2D and 3D networks. Module attribute names (``conv``, ``norm``, ``act``) are part
of the state-dict layout that weight transfer and the ImageNet key maps rely on: rename with care.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from selfconfig.errors import PlansError

NORMS = ("instance", "batch", "layer")
NONLINS = ("leaky_relu", "relu", "relu6")


def _check_dim(dim: int) -> None:
    if dim not in (2, 3):
        raise PlansError(f"network dim must be 2 or 3, got {dim}; fix 'dim' in plans.json")


def as_tuple(value: int | Sequence[int], dim: int) -> tuple[int, ...]:
    """Per-axis tuple from an int or a per-axis list (``dim`` entries)."""
    if isinstance(value, int):
        return (value,) * dim
    value = tuple(int(v) for v in value)
    if len(value) != dim:
        raise PlansError(f"expected {dim} per-axis values, got {list(value)}; fix plans.json")
    return value


def conv_op(dim: int) -> type[nn.Module]:
    _check_dim(dim)
    return nn.Conv2d if dim == 2 else nn.Conv3d


def transposed_conv_op(dim: int) -> type[nn.Module]:
    _check_dim(dim)
    return nn.ConvTranspose2d if dim == 2 else nn.ConvTranspose3d


def max_pool_op(dim: int) -> type[nn.Module]:
    _check_dim(dim)
    return nn.MaxPool2d if dim == 2 else nn.MaxPool3d


def norm_layer(kind: str, dim: int, channels: int, eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    """Instance norm (affine, as nnU-Net), batch norm, or layer norm (one group over all channels
    and voxels of a sample: keeps the channels' relative magnitudes, which global pooling needs,
    and is per sample, which a WGAN-GP critic needs)."""
    _check_dim(dim)
    if kind == "layer":
        return nn.GroupNorm(1, channels, eps=eps, affine=True)
    if kind == "instance":
        op = nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d
        return op(channels, eps=eps, affine=True)
    if kind == "batch":
        op = nn.BatchNorm2d if dim == 2 else nn.BatchNorm3d
        return op(channels, eps=eps, momentum=momentum)
    raise PlansError(f"unknown norm {kind!r} (known: {', '.join(NORMS)}); fix 'norm' in plans.json")


def nonlin_layer(kind: str, inplace: bool = True) -> nn.Module:
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.01, inplace=inplace)
    if kind == "relu":
        return nn.ReLU(inplace=inplace)
    if kind == "relu6":
        return nn.ReLU6(inplace=inplace)
    raise PlansError(f"unknown nonlin {kind!r} (known: {', '.join(NONLINS)}); fix 'nonlin' in plans.json")


class _SamePadMixin:
    """TensorFlow 'SAME' padding for strided convolutions: output = ceil(input / stride).

    With an even input and stride 2 TensorFlow pads asymmetrically (more at the end); weights
    trained in TensorFlow (EfficientNet-Lite) only reproduce their outputs with this padding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        pads: list[int] = []
        spatial = x.shape[2:]
        # F.pad takes pairs from the last axis backwards
        for size, k, s, d in reversed(list(zip(spatial, self.kernel_size, self.stride, self.dilation))):
            out = math.ceil(size / s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return self._conv_forward(x, self.weight, self.bias)  # type: ignore[attr-defined]


class SameConv2d(_SamePadMixin, nn.Conv2d):
    pass


class SameConv3d(_SamePadMixin, nn.Conv3d):
    pass


def make_conv(
    dim: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    groups: int = 1,
    bias: bool = True,
    padding: str = "symmetric",
) -> nn.Module:
    """Convolution whose output size is ``ceil(input / stride)`` for odd kernels.

    ``padding="symmetric"``: ``k // 2`` on both sides (PyTorch-trained weights, nnU-Net).
    ``padding="same"``: TensorFlow 'SAME' (dynamic, asymmetric when strided).
    """
    k = as_tuple(kernel_size, dim)
    s = as_tuple(stride, dim)
    if padding == "same" and any(v > 1 for v in s):
        op = SameConv2d if dim == 2 else SameConv3d
        return op(in_channels, out_channels, k, s, padding=0, groups=groups, bias=bias)
    if padding not in ("same", "symmetric"):
        raise ValueError(f"unknown padding {padding!r}")
    return conv_op(dim)(in_channels, out_channels, k, s, padding=tuple(v // 2 for v in k), groups=groups, bias=bias)


class ConvNormAct(nn.Sequential):
    """conv -> norm -> nonlinearity (``act`` may be absent). Keys: ``conv.*``, ``norm.*``."""

    def __init__(self, conv: nn.Module, norm: nn.Module, act: nn.Module | None = None):
        super().__init__()
        self.conv = conv
        self.norm = norm
        if act is not None:
            self.act = act


def plain_conv_block(
    dim: int,
    in_channels: int,
    out_channels: int,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    norm: str,
    nonlin: str,
) -> ConvNormAct:
    """nnU-Net's conv block: conv (bias, padding k//2) -> norm -> nonlin."""
    return ConvNormAct(
        make_conv(dim, in_channels, out_channels, kernel_size, stride, bias=True),
        norm_layer(norm, dim, out_channels),
        nonlin_layer(nonlin),
    )


def stacked_conv_blocks(
    dim: int,
    n: int,
    in_channels: int,
    out_channels: int,
    kernel_size: Sequence[int],
    first_stride: Sequence[int],
    norm: str,
    nonlin: str,
) -> nn.Sequential:
    """``n`` conv blocks; the first changes the channels and carries the stride."""
    blocks = []
    for i in range(n):
        stride = first_stride if i == 0 else [1] * dim
        blocks.append(plain_conv_block(dim, in_channels if i == 0 else out_channels, out_channels,
                                       kernel_size, stride, norm, nonlin))
    return nn.Sequential(*blocks)


POOLINGS = ("avg", "max", "avg_centre")


def centre_region(x: torch.Tensor) -> torch.Tensor:
    """The central half of every spatial axis of (B, C, ...) (at least one voxel; of 4 voxels the
    middle 2, of 3 the middle one)."""
    for axis in range(2, x.ndim):
        n = x.shape[axis]
        k = max(1, n // 2)
        x = x.narrow(axis, (n - k) // 2, k)
    return x


def pooled_features(kind: str, channels: int) -> int:
    """Features out of :func:`global_pool` ``kind`` for a map of ``channels`` channels."""
    return 2 * channels if kind == "avg_centre" else channels


def global_pool(kind: str, x: torch.Tensor) -> torch.Tensor:
    """Global pooling over all spatial axes: (B, C, ...) -> (B, C), or (B, 2C) for ``avg_centre``:
    the average over the whole map, then the average over its central region
    (:func:`centre_region`), so that a classifier can tell what lies at the patch's centre from what
    lies anywhere in it."""
    dims = tuple(range(2, x.ndim))
    if kind == "avg":
        return x.mean(dim=dims)
    if kind == "max":
        return x.amax(dim=dims)
    if kind == "avg_centre":
        return torch.cat([x.mean(dim=dims), centre_region(x).mean(dim=dims)], dim=1)
    raise PlansError(f"unknown head pooling {kind!r} (known: {', '.join(POOLINGS)}); fix 'head.pooling' in plans.json")
