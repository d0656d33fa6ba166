"""API behind ``selfconfig_pretrain``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from selfconfig.errors import ConfigurationError
from selfconfig.paths import Roots
from selfconfig.planning import DEFAULT_PLANS_NAME
from selfconfig.pretext.run import PretrainResult, pretrain
from selfconfig.device import pick_device
from selfconfig.training.context import open_dataset
from selfconfig.training.distributed import setup
from selfconfig.training.registry import get_trainer


def run_pretraining(trainer: str, dataset: str | int | None = None, *, configuration: str | None = None,
                    plans_name: str = DEFAULT_PLANS_NAME, hyperparameters: dict[str, Any] | None = None,
                    overwrite: bool = False, device: str | None = None, roots: Roots | None = None,
                    progress: bool = True, tag: str = "") -> PretrainResult:
    cls = get_trainer(trainer)
    if not getattr(cls, "uses_pretraining", False):
        raise ConfigurationError(f"trainer {trainer} has no pre-training stage; pick a Surrogate* strategy")
    data = open_dataset(dataset, configuration, plans_name, roots, tag)
    dev = setup(pick_device(device))  # under torchrun: join the process group, one device per rank
    overrides = {k: v for k, v in (hyperparameters or {}).items() if v is not None}
    hp = replace(cls.default_hyperparameters(dev.type), **overrides)
    strategy = cls(hp)
    strategy.check_compatible(data)
    return pretrain(cls, data, hp, dev, progress=progress, overwrite=overwrite)
