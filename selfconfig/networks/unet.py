"""nnU-Net-style U-Net: the shared encoder + a decoder + one 1x1 segmentation layer per resolution.

Groups: ``encoder.*`` (stem: ``encoder.stem.*``), ``decoder.*`` (transposed convs and conv
stages) and ``head`` = ``seg_layers.*``; so a colourisation generator (2 chrominance outputs)
hands its encoder and decoder to a segmenter with any number of classes.

``deep_supervision`` is a plain attribute read at every forward: True returns a list of logits,
highest resolution first ([full, 1/2, 1/4, ...], every decoder resolution); False returns the
full-resolution logits only. Inference code sets it to False.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from selfconfig.errors import PlansError
from selfconfig.networks.base import StagedEncoder, groups_by_prefix
from selfconfig.networks.blocks import conv_op, stacked_conv_blocks, transposed_conv_op
from selfconfig.networks.encoders import build_encoder
from selfconfig.networks.init import init_weights_he
from selfconfig.plans import NetworkPlan


def full_resolution_features(encoder: StagedEncoder) -> int:
    """Channels of the extra full-resolution decoder stage of encoders whose first skip is strided."""
    return max(16, encoder.out_channels[0] // 2)


class UNetDecoder(nn.Module):
    """Bottom-up: transposed conv (kernel = stride = the stride of the stage below) -> concat skip ->
    ``n_conv_per_stage[s]`` conv blocks. A stage has its skip's channels, capped at the encoder's
    ``max_decoder_features`` (ImageNet encoders: 512 in 2D, 320 in 3D, as nnU-Net caps features).
    When the encoder's first output is strided (ImageNet encoders), a last stage upsamples to full
    resolution without a skip.

    ``out_channels`` / ``out_strides``: per decoder stage (bottom-up), its channels and its
    stride relative to the network input.
    """

    def __init__(self, encoder: StagedEncoder, n_conv_per_stage: Sequence[int], norm: str, nonlin: str):
        super().__init__()
        dim = encoder.dim
        ch, strides, kernels = encoder.out_channels, encoder.strides, encoder.kernel_sizes
        cumulative = encoder.cumulative_strides()
        n = len(ch)
        has_full_res = any(v > 1 for v in strides[0])
        n_up = n - 1 + int(has_full_res)
        if len(n_conv_per_stage) != n_up or any(c < 1 for c in n_conv_per_stage):
            raise PlansError(
                f"decoder.n_conv_per_stage needs {n_up} entries >= 1 for this encoder, got {list(n_conv_per_stage)}; "
                "fix plans.json or rerun selfconfig_plan_and_preprocess"
            )
        transp = transposed_conv_op(dim)
        self.transpconvs = nn.ModuleList()
        self.stages = nn.ModuleList()
        self.out_channels: list[int] = []
        self.out_strides: list[list[int]] = []
        cap = encoder.max_decoder_features
        below = ch[-1]
        for s in range(1, n):
            skip, stride = ch[-(s + 1)], strides[-s]
            f = skip if cap is None else min(skip, cap)
            self.transpconvs.append(transp(below, f, tuple(stride), tuple(stride), bias=True))
            self.stages.append(stacked_conv_blocks(dim, n_conv_per_stage[s - 1], f + skip, f,
                                                   kernels[-(s + 1)], [1] * dim, norm, nonlin))
            self.out_channels.append(f)
            self.out_strides.append(cumulative[-(s + 1)])
            below = f
        if has_full_res:
            f = full_resolution_features(encoder)
            self.transpconvs.append(transp(below, f, tuple(strides[0]), tuple(strides[0]), bias=True))
            self.stages.append(stacked_conv_blocks(dim, n_conv_per_stage[-1], f, f, kernels[0], [1] * dim,
                                                   norm, nonlin))
            self.out_channels.append(f)
            self.out_strides.append([1] * dim)

    def forward(self, skips: list[torch.Tensor], all_stages: bool = True) -> list[torch.Tensor]:
        """Outputs of the decoder stages, bottom-up (the last one is full resolution)."""
        x = skips[-1]
        outputs = []
        n_skip_stages = len(skips) - 1
        for s, (up, stage) in enumerate(zip(self.transpconvs, self.stages)):
            x = up(x)
            if s < n_skip_stages:
                x = torch.cat((x, skips[-(s + 2)]), dim=1)
            x = stage(x)
            if all_stages or s == len(self.stages) - 1:
                outputs.append(x)
        return outputs


class SegmentationNetwork(nn.Module):
    """encoder -> decoder -> ``seg_layers`` (1x1 conv per decoder stage, bottom-up order)."""

    def __init__(self, plan: NetworkPlan):
        super().__init__()
        self.dim = plan.dim
        self.in_channels = plan.in_channels
        self.num_classes = plan.num_classes
        self.encoder = build_encoder(plan)
        n_conv = list(plan.decoder.n_conv_per_stage) or [2] * (self.encoder.n_stages - 1 + int(
            any(v > 1 for v in self.encoder.strides[0])))
        self.decoder = UNetDecoder(self.encoder, n_conv, plan.encoder.norm, plan.encoder.nonlin)
        conv = conv_op(plan.dim)
        self.seg_layers = nn.ModuleList(conv(c, plan.num_classes, 1, bias=True) for c in self.decoder.out_channels)
        self.deep_supervision = bool(plan.decoder.deep_supervision)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self._check_input(x)
        features = self.decoder(self.encoder(x), all_stages=self.deep_supervision)
        if not self.deep_supervision:
            return self.seg_layers[-1](features[-1])
        logits = [seg(f) for seg, f in zip(self.seg_layers, features)]
        return logits[::-1]

    def _check_input(self, x: torch.Tensor) -> None:
        total = self.encoder.cumulative_strides()[-1]
        shape = list(x.shape[2:])
        if x.ndim != self.dim + 2 or any(s % t for s, t in zip(shape, total)):
            raise ValueError(
                f"input of shape {tuple(x.shape)} does not fit this {self.dim}D U-Net: expected (B, C, "
                f"{'Z, ' if self.dim == 3 else ''}Y, X) with spatial sizes divisible by {total}"
            )

    def deep_supervision_scales(self) -> list[list[float]]:
        """Per deep-supervision output (highest resolution first): its size relative to the input."""
        return [[1.0 / s for s in stride] for stride in self.decoder.out_strides[::-1]]

    def parameter_groups(self) -> dict[str, list[str]]:
        return groups_by_prefix(self, {"stem": ("encoder.stem.",), "encoder": ("encoder.",),
                                       "decoder": ("decoder.",), "head": ("seg_layers.",)})


def build_segmentation_network(plan: NetworkPlan) -> SegmentationNetwork:
    """U-Net of ``plan`` with He-initialised weights (nnU-Net's default)."""
    return init_weights_he(SegmentationNetwork(plan))
