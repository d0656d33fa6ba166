"""Self-describing checkpoints, written atomically, loaded with ``weights_only=True``.

Each checkpoint records the trainer name, the plans, the dataset info and the hyperparameters,
so that prediction can rebuild the network from the checkpoint alone.
"""

from __future__ import annotations

import io
import logging
import pickle
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
    except pickle.UnpicklingError:
        # torch's message advises weights_only=False, i.e. running whatever the file holds: never do that
        raise CheckpointError(f"{path} is not a selfconfig checkpoint, or was tampered with: it holds objects other "
                              f"than weights and plain data, so it was not loaded; retrain, or point to another "
                              f"file") from None
    except Exception as e:  # noqa: BLE001 - truncated, corrupt or foreign file
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise CheckpointError(f"{path} cannot be read as a selfconfig checkpoint ({type(e).__name__}: {first}); "
                              f"it is truncated or not a checkpoint: delete it and retrain, or point to another "
                              f"file") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a selfconfig checkpoint")
    return ckpt
