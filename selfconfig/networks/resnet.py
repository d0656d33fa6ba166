"""ResNet-18/34 (BasicBlock) and ResNet-50 (Bottleneck, v1.5: stride in the 3x3 conv), in
torchvision's layout, dimension-generic. torchvision itself is not needed.

Stages (skip outputs): 0 = stem conv 7x7/2 + BN + ReLU (64 ch, stride 2); 1 = max-pool 3x3/2 +
layer1 (stride 4); 2..4 = layer2..layer4 (strides 8, 16, 32). Inside a block the module names are
torchvision's (``conv1``, ``bn1``, ..., ``downsample.0``/``.1``), so the key map only renames the
stem and the ``layerN`` prefixes (see :mod:`selfconfig.networks.imagenet`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from selfconfig.networks.base import StagedEncoder
from selfconfig.networks.blocks import ConvNormAct, as_tuple, make_conv, max_pool_op, norm_layer

# kind -> (block type, blocks per layer)
RESNET_LAYOUTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
WIDTHS = (64, 128, 256, 512)


def _bn(dim: int, channels: int) -> nn.Module:
    return norm_layer("batch", dim, channels, eps=1e-5, momentum=0.1)


def resnet_out_channels(kind: str) -> list[int]:
    block, _ = RESNET_LAYOUTS[kind]
    expansion = 4 if block == "bottleneck" else 1
    return [64] + [w * expansion for w in WIDTHS]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, dim: int, in_ch: int, width: int, stride: Sequence[int]):
        super().__init__()
        out = width * self.expansion
        self.conv1 = make_conv(dim, in_ch, width, 3, stride, bias=False)
        self.bn1 = _bn(dim, width)
        self.conv2 = make_conv(dim, width, out, 3, bias=False)
        self.bn2 = _bn(dim, out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(dim, in_ch, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, dim: int, in_ch: int, width: int, stride: Sequence[int]):
        super().__init__()
        out = width * self.expansion
        self.conv1 = make_conv(dim, in_ch, width, 1, bias=False)
        self.bn1 = _bn(dim, width)
        self.conv2 = make_conv(dim, width, width, 3, stride, bias=False)
        self.bn2 = _bn(dim, width)
        self.conv3 = make_conv(dim, width, out, 1, bias=False)
        self.bn3 = _bn(dim, out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(dim, in_ch, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


def _downsample(dim: int, in_ch: int, out_ch: int, stride: Sequence[int]) -> nn.Module | None:
    if in_ch == out_ch and all(s == 1 for s in stride):
        return None
    return nn.Sequential(make_conv(dim, in_ch, out_ch, 1, stride, bias=False), _bn(dim, out_ch))


class ResNetStage(nn.Module):
    """Optional max-pool (stage 1 only) followed by residual blocks (``blocks.N``)."""

    def __init__(self, blocks: Sequence[nn.Module], pool: nn.Module | None = None):
        super().__init__()
        self.pool = pool if pool is not None else nn.Identity()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.pool(x))


class ResNetEncoder(StagedEncoder):
    """torchvision ResNet as five stages; ``strides`` per stage relative to the previous one
    (default 2 everywhere; a 3D plan may keep z at 1). Kernels are cubic in 3D."""

    def __init__(self, kind: str, dim: int, in_channels: int, strides: Sequence[Sequence[int]] | None = None,
                 decoder_kernel_sizes: Sequence[Sequence[int]] | None = None):
        super().__init__()
        block_name, counts = RESNET_LAYOUTS[kind]
        block_cls = Bottleneck if block_name == "bottleneck" else BasicBlock
        self.kind = kind
        self.dim = dim
        self.in_channels = in_channels
        self.max_decoder_features = 512 if dim == 2 else 320
        self.out_channels = resnet_out_channels(kind)
        self.strides = [list(as_tuple(s, dim)) for s in strides] if strides else [[2] * dim for _ in range(5)]
        self.kernel_sizes = ([list(as_tuple(k, dim)) for k in decoder_kernel_sizes] if decoder_kernel_sizes
                             else [[3] * dim for _ in range(5)])
        self.stem = ConvNormAct(make_conv(dim, in_channels, 64, 7, self.strides[0], bias=False),
                                _bn(dim, 64), nn.ReLU(inplace=True))
        stages: list[nn.Module] = [nn.Identity()]
        channels = 64
        for layer, (width, count) in enumerate(zip(WIDTHS, counts), start=1):
            pool = None
            if layer == 1:
                s = self.strides[1]
                pool = max_pool_op(dim)(kernel_size=3, stride=tuple(s), padding=1)
                first_stride = [1] * dim
            else:
                first_stride = self.strides[layer]
            blocks = []
            for b in range(count):
                blocks.append(block_cls(dim, channels, width, first_stride if b == 0 else [1] * dim))
                channels = width * block_cls.expansion
            stages.append(ResNetStage(blocks, pool))
        self.stages = nn.ModuleList(stages)
