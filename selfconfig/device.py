"""The torch device a command runs on (shared by training and inference)."""

from __future__ import annotations

import torch

from selfconfig.errors import ConfigurationError


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` (cpu, cuda, cuda:N), else CUDA when there is a GPU, else the CPU."""
    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigurationError("--device cuda was asked for but no CUDA GPU is available")
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
