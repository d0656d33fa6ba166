"""API behind ``selfconfig_train``.

This module is an API façade, above the engine: it composes training with the final validation
of :mod:`selfconfig.inference` (the engine itself, :mod:`selfconfig.training.run`, never imports
inference; it is handed the validation as a callable).
"""

from __future__ import annotations

from typing import Any

from selfconfig.device import pick_device
from selfconfig.inference.validation import validate_run
from selfconfig.inference.whole_scan import whole_scan_scorer
from selfconfig.paths import Roots
from selfconfig.planning import DEFAULT_PLANS_NAME
from selfconfig.training.context import open_dataset
from selfconfig.training.distributed import setup
from selfconfig.training.registry import get_trainer
from selfconfig.training.run import RunResult, train_run


def train(trainer: str, dataset: str | int | None = None, *, configuration: str | None = None,
          fold: int | str = 0, fraction: float = 1.0, plans_name: str = DEFAULT_PLANS_NAME,
          hyperparameters: dict[str, Any] | None = None, continue_training: bool = False, overwrite: bool = False,
          device: str | None = None, roots: Roots | None = None, progress: bool = True, tag: str = "",
          wait: bool = False) -> RunResult:
    """Train one fold at one label fraction with the named trainer (``Scratch``, ``module:Class`` ...),
    then score it on its validation fold (unless ``final_validation`` is off). Under ``torchrun``
    it joins the process group and trains data-parallel (documentation/distributed.md). ``wait``:
    when another process is training in the same run folder, wait for it instead of refusing."""
    cls = get_trainer(trainer)
    data = open_dataset(dataset, configuration, plans_name, roots, tag)
    warn_untrainable(data)
    return train_run(cls, data, fold, fraction, hyperparameters, continue_training, overwrite,
                     setup(pick_device(device)), progress, validate=validate_run, wait=wait,
                     scorer=whole_scan_scorer)


def warn_untrainable(data) -> None:
    """Repeat the planning's warnings (every label empty, every image constant ...) at training start."""
    import json
    import logging

    path = data.preprocessed_dir / "fingerprint.json"
    try:
        warnings = json.loads(path.read_text()).get("warnings", []) if path.is_file() else []
    except (OSError, ValueError):
        warnings = []
    for w in warnings:
        logging.getLogger(__name__).warning("this dataset cannot train as it is: %s", w)
