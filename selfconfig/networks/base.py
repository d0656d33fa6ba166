"""What every selfconfig encoder and network share: stages, strides and parameter groups.

Parameter groups name state-dict keys ("stem", "encoder", "decoder", "head"), so that weight
transfer, freezing and per-group learning rates are pure functions of the declared groups and
never depend on the class of the network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn


def groups_by_prefix(module: nn.Module, prefixes: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Map each group to the state-dict keys of ``module`` that start with one of its prefixes."""
    keys = list(module.state_dict().keys())
    return {group: [k for k in keys if any(k.startswith(p) for p in pre)] for group, pre in prefixes.items()}


class ImageNetInputNorm(nn.Module):
    """Standardise RGB input channels with ImageNet's mean and std, the statistics the pretrained
    weights were trained on. ``schemes`` gives each input channel's preprocessing; channels of an
    "rgb" group arrive in 0-1 (preprocessing divides by 255) and get ``(x - mean) / std`` with the
    R, G, B statistics in turn. Other channels (CT, MR: z-scored by preprocessing, mean 0 and sd 1)
    pass unchanged: they already have the scale of a standardised ImageNet channel, and the first
    convolution was adapted to them by summing its RGB kernels (a gray value acts like a gray RGB
    pixel). The buffers are not persistent: they follow from the plan, not from a checkpoint."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, schemes: Sequence[str], dim: int):
        super().__init__()
        mean, std, k = [], [], 0
        for s in schemes:
            if s == "rgb":
                mean.append(self.MEAN[k % 3])
                std.append(self.STD[k % 3])
                k += 1
            else:
                mean.append(0.0)
                std.append(1.0)
        shape = (1, len(schemes)) + (1,) * dim
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class StagedEncoder(nn.Module):
    """``stem`` -> ``stages[0]`` -> ``stages[1]`` ...; ``forward`` returns every stage's output.

    Subclasses set ``stem``, ``stages`` (``nn.ModuleList``), ``out_channels`` (per stage),
    ``strides`` (per stage, per axis, relative to the previous stage; the stem's stride is part
    of stage 0), ``kernel_sizes`` (per stage; the decoder uses them) and ``dim``.
    The stem is the first convolution block, so the key of the first convolution's weight is
    always ``stem.conv.weight`` (``first_conv_key``).
    """

    first_conv_key = "stem.conv.weight"
    # channel cap of the U-Net decoder stages (None: a decoder stage has its skip's channels)
    max_decoder_features: int | None = None

    dim: int
    in_channels: int
    out_channels: list[int]
    strides: list[list[int]]
    kernel_sizes: list[list[int]]
    stem: nn.Module
    stages: nn.ModuleList

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # an ``input_norm`` submodule, when set, runs before the stem (ImageNet encoders:
        # :class:`ImageNetInputNorm`); no class attribute, which would shadow the submodule
        norm = getattr(self, "input_norm", None)
        if norm is not None:
            x = norm(x)
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs

    @property
    def n_stages(self) -> int:
        return len(self.out_channels)

    def cumulative_strides(self) -> list[list[int]]:
        """Stride of each stage's output relative to the input, per axis."""
        total = [1] * self.dim
        out = []
        for s in self.strides:
            total = [a * b for a, b in zip(total, s)]
            out.append(list(total))
        return out

    def parameter_groups(self) -> dict[str, list[str]]:
        return groups_by_prefix(self, {"stem": ("stem.",), "encoder": ("",)})
