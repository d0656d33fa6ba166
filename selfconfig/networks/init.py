"""Weight initialisation. ``init_weights_xavier`` is the paper's "Scratch" baseline;
``init_weights_he`` is nnU-Net's default and what the builders apply."""

from __future__ import annotations

import torch.nn as nn

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
             nn.Linear)
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _init_norm(m: nn.Module) -> None:
    if getattr(m, "weight", None) is not None:
        nn.init.ones_(m.weight)
    if getattr(m, "bias", None) is not None:
        nn.init.zeros_(m.bias)


def init_weights_xavier(module: nn.Module) -> nn.Module:
    """Glorot-uniform conv / transposed-conv / linear weights, zero biases; norms weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, _WEIGHTED):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS):
            _init_norm(m)
    return module


def init_weights_he(module: nn.Module, neg_slope: float = 1e-2) -> nn.Module:
    """Kaiming-normal (leaky ReLU slope ``neg_slope``) weights, zero biases; norms weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, _WEIGHTED):
            nn.init.kaiming_normal_(m.weight, a=neg_slope)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS):
            _init_norm(m)
    return module
