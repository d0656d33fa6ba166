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
