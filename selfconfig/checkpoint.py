"""Self-describing checkpoints, written atomically, loaded with ``weights_only=True``.

Each checkpoint records the trainer name, the plans, the dataset info and the hyperparameters,
so that prediction can rebuild the network from the checkpoint alone.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch

from selfconfig.errors import CheckpointError
from selfconfig.utils import atomic_write_bytes

log = logging.getLogger(__name__)

FORMAT = "selfconfig-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train this run first (or check -tr/-c/-frac/-f)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise CheckpointError(f"{path} cannot be loaded as a selfconfig checkpoint ({type(e).__name__}: {e}); "
                              f"delete it and retrain, or point to another file")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a selfconfig checkpoint")
    return ckpt
