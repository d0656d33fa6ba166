"""nnU-Net-style plain convolutional encoder (``EncoderPlan.kind == "plain"``)."""

from __future__ import annotations

import torch.nn as nn

from selfconfig.errors import PlansError
from selfconfig.networks.base import StagedEncoder
from selfconfig.networks.blocks import as_tuple, plain_conv_block, stacked_conv_blocks
from selfconfig.plans import EncoderPlan


def validate_plain_plan(enc: EncoderPlan, dim: int) -> None:
    """Raise PlansError when the per-stage lists of a plain encoder do not agree."""
    n = enc.n_stages
    if n < 1:
        raise PlansError("encoder.features_per_stage is empty; rerun selfconfig_plan_and_preprocess")
    for name in ("kernel_sizes", "strides", "n_conv_per_stage"):
        if len(getattr(enc, name)) != n:
            raise PlansError(
                f"encoder.{name} has {len(getattr(enc, name))} entries but features_per_stage has {n}; "
                "fix plans.json or rerun selfconfig_plan_and_preprocess"
            )
    for name in ("kernel_sizes", "strides"):
        for entry in getattr(enc, name):
            as_tuple(entry, dim)
    if any(c < 1 for c in enc.n_conv_per_stage):
        raise PlansError("encoder.n_conv_per_stage needs at least one convolution per stage; fix plans.json")
    if any(k % 2 == 0 for ks in enc.kernel_sizes for k in ks):
        raise PlansError(f"encoder.kernel_sizes must be odd, got {enc.kernel_sizes}; fix plans.json")


class PlainConvEncoder(StagedEncoder):
    """Stage ``i`` = ``n_conv_per_stage[i]`` x (conv -> norm -> nonlin); its first conv has stride
    ``strides[i]``. The first conv block of stage 0 is ``stem``; the rest of stage 0 is ``stages[0]``.
    """

    def __init__(self, enc: EncoderPlan, dim: int, in_channels: int):
        super().__init__()
        validate_plain_plan(enc, dim)
        self.dim = dim
        self.in_channels = in_channels
        self.out_channels = [int(f) for f in enc.features_per_stage]
        self.strides = [list(as_tuple(s, dim)) for s in enc.strides]
        self.kernel_sizes = [list(as_tuple(k, dim)) for k in enc.kernel_sizes]
        self.stem = plain_conv_block(dim, in_channels, self.out_channels[0], self.kernel_sizes[0],
                                     self.strides[0], enc.norm, enc.nonlin)
        stages = []
        channels = self.out_channels[0]
        for i, features in enumerate(self.out_channels):
            n = enc.n_conv_per_stage[i] - (1 if i == 0 else 0)
            stride = [1] * dim if i == 0 else self.strides[i]
            stages.append(stacked_conv_blocks(dim, n, channels, features, self.kernel_sizes[i], stride,
                                              enc.norm, enc.nonlin))
            channels = features
        self.stages = nn.ModuleList(stages)
