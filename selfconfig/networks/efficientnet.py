"""EfficientNet-Lite0 encoder, dimension-generic so that 3D versions exist for kernel inflation.

Lite variant of EfficientNet-B0: ReLU6, no squeeze-excitation, stem and head not scaled.
Convolutions have no bias; batch norm uses TensorFlow's eps 1e-3, and strided convolutions use
TensorFlow 'SAME' padding: the released weights were trained that way and reproduce their
ImageNet outputs only with these settings.

The batch-norm *momentum* is not part of the weights (it only sets how fast the running
statistics follow training) and is PyTorch's 0.1, not TensorFlow's 0.99 (PyTorch 0.01). With
0.01 the running statistics average over the last ~100 iterations of a network that changes
fast: on a short budget from scratch they never catch up, and the network in eval mode gives
one class for every input (FUNDUS_DR, 250 iterations: test kappa 0 in eval mode, 0.42-0.49 with
the batches' own statistics). With 0.1 they follow within ~20 iterations.

Skip outputs (the five stages): 16 ch at stride 2 (after block 0), 24 at 4 (after block 2),
40 at 8 (after block 4), 112 at 16 (after block 10), and at stride 32 the 1280-channel
``conv_head`` output (after block 15 and the 1x1 head conv). Using the head as the last stage
keeps every pretrained tensor in the encoder and gives the classifier its usual 1280 features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from selfconfig.networks.base import StagedEncoder
from selfconfig.networks.blocks import ConvNormAct, as_tuple, make_conv, norm_layer

BN_EPS = 1e-3
BN_MOMENTUM = 0.1  # PyTorch's default; TensorFlow's 0.99 (= 0.01 here) lags far behind a short run

# (expand ratio, kernel, stride, out channels, repeats), as in EfficientNet-B0
LITE0_BLOCKS = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# index of the last block of each of the five output stages (global block numbering)
STAGE_LAST_BLOCK = (0, 2, 4, 10, 15)
OUT_CHANNELS = [16, 24, 40, 112, HEAD_CHANNELS]


def block_specs() -> list[tuple[int, int, int, int, int]]:
    """Per block (global order): (expand, kernel, stride, in_channels, out_channels)."""
    specs = []
    channels = STEM_CHANNELS
    for expand, kernel, stride, out, repeats in LITE0_BLOCKS:
        for r in range(repeats):
            specs.append((expand, kernel, stride if r == 0 else 1, channels, out))
            channels = out
    return specs


def block_positions() -> list[tuple[int, int]]:
    """(stage, position within stage) of every block, in global order."""
    positions = []
    stage, first = 0, 0
    for n in range(len(block_specs())):
        positions.append((stage, n - first))
        if n == STAGE_LAST_BLOCK[stage]:
            stage, first = stage + 1, n + 1
    return positions


def head_prefix() -> str:
    """State-dict prefix of the 1x1 ``conv_head`` block: the last module of stage 4."""
    return f"stages.4.{len(block_specs()) - 1 - STAGE_LAST_BLOCK[3]}"


def _bn(dim: int, channels: int) -> nn.Module:
    return norm_layer("batch", dim, channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> depthwise kxk -> 1x1 project (+ identity)."""

    def __init__(self, dim: int, expand: int, kernel: int, stride: Sequence[int], in_ch: int, out_ch: int,
                 drop_path: float = 0.0):
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self.expand = ConvNormAct(make_conv(dim, in_ch, mid, 1, bias=False), _bn(dim, mid), nn.ReLU6(inplace=True))
        self.depthwise = ConvNormAct(
            make_conv(dim, mid, mid, kernel, stride, groups=mid, bias=False, padding="same"),
            _bn(dim, mid), nn.ReLU6(inplace=True),
        )
        self.project = ConvNormAct(make_conv(dim, mid, out_ch, 1, bias=False), _bn(dim, out_ch))
        self.residual = all(s == 1 for s in stride) and in_ch == out_ch
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if hasattr(self, "expand") else x
        y = self.project(self.depthwise(y))
        if not self.residual:
            return y
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = torch.rand((y.shape[0],) + (1,) * (y.ndim - 1), dtype=y.dtype, device=y.device) < keep
            y = y * mask / keep
        return y + x


class EfficientNetLite0Encoder(StagedEncoder):
    """Five stages (strides 2, 4, 8, 16, 32 by default).

    ``strides``: per stage, per axis, relative to the previous stage (default all 2); a 3D plan
    may keep z at 1 for anisotropic data. Kernels are cubic in 3D (kxkxk) so inflated 2D weights fit.
    ``drop_path``: stochastic depth of the residual blocks, scaled by block index (0 = off).
    """

    def __init__(self, dim: int, in_channels: int, strides: Sequence[Sequence[int]] | None = None,
                 drop_path: float = 0.0, decoder_kernel_sizes: Sequence[Sequence[int]] | None = None):
        super().__init__()
        self.dim = dim
        self.in_channels = in_channels
        self.max_decoder_features = 512 if dim == 2 else 320
        self.out_channels = list(OUT_CHANNELS)
        self.strides = [list(as_tuple(s, dim)) for s in strides] if strides else [[2] * dim for _ in range(5)]
        self.kernel_sizes = ([list(as_tuple(k, dim)) for k in decoder_kernel_sizes] if decoder_kernel_sizes
                             else [[3] * dim for _ in range(5)])
        self.stem = ConvNormAct(
            make_conv(dim, in_channels, STEM_CHANNELS, 3, self.strides[0], bias=False, padding="same"),
            _bn(dim, STEM_CHANNELS), nn.ReLU6(inplace=True),
        )
        specs = block_specs()
        stages: list[list[nn.Module]] = [[] for _ in range(5)]
        for n, ((expand, kernel, stride, cin, cout), (stage, pos)) in enumerate(zip(specs, block_positions())):
            # the strided block of each stage takes the plan's (possibly anisotropic) stride
            s = self.strides[stage] if (stride > 1 and stage > 0) else [1] * dim
            rate = drop_path * n / len(specs)
            stages[stage].append(MBConv(dim, expand, kernel, s, cin, cout, rate))
        stages[4].append(ConvNormAct(make_conv(dim, specs[-1][4], HEAD_CHANNELS, 1, bias=False),
                                     _bn(dim, HEAD_CHANNELS), nn.ReLU6(inplace=True)))
        self.stages = nn.ModuleList(nn.Sequential(*s) for s in stages)
