"""API behind ``selfconfig_pretrain``."""

from __future__ import annotations

from typing import Any

from selfconfig.device import pick_device
from selfconfig.errors import ConfigurationError
from selfconfig.paths import Roots
from selfconfig.planning import DEFAULT_PLANS_NAME
from selfconfig.pretext.run import PretrainResult, pretrain
from selfconfig.training.builder import resolve_settings
from selfconfig.training.context import open_dataset
from selfconfig.training.distributed import setup
from selfconfig.training.registry import get_trainer


def run_pretraining(trainer: str, dataset: str | int | None = None, *, configuration: str | None = None,
                    plans_name: str = DEFAULT_PLANS_NAME, hyperparameters: dict[str, Any] | None = None,
                    overwrite: bool = False, device: str | None = None, roots: Roots | None = None,
                    progress: bool = True, tag: str = "", wait: bool = False) -> PretrainResult:
    cls = get_trainer(trainer)
    if not getattr(cls, "uses_pretraining", False):
        raise ConfigurationError(f"trainer {trainer} has no pre-training stage; pick a Surrogate* strategy")
    data = open_dataset(dataset, configuration, plans_name, roots, tag)
    # under torchrun: join the process group, one device per rank
    settings = resolve_settings(cls, hyperparameters, setup(pick_device(device)))
    # the command refuses while another process pre-trains in the folder, unless told to wait
    return pretrain(cls, data, settings.hp, settings.device, progress=progress, overwrite=overwrite, wait=wait)
