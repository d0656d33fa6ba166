"""The trainer base class: the hooks a strategy may override.

A trainer is a *strategy* for initialising the target network before supervised training
(Scratch, ImageNet, surrogate pre-training). The supervised loop itself is not here: it is
written once in :mod:`selfconfig.training.loop` and driven by :mod:`selfconfig.training.run`.
Override only the hooks you need; each has a stable signature::

    class MyTrainer(Scratch):
        def build_optimizer(self, network, hp):
            return torch.optim.AdamW(network.parameters(), lr=hp.lr)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from selfconfig.dataset.labels import LabelScheme
from selfconfig.training.config import TrainingConfig
from selfconfig.training.losses import SegmentationLoss, classification_loss
from selfconfig.training.modules import warmup_poly_lr

if TYPE_CHECKING:  # pragma: no cover
    from selfconfig.training.context import DatasetContext, RunContext
    from selfconfig.training.loop import Callback

log = logging.getLogger(__name__)


def make_optimizer(params, hp: TrainingConfig, lr: float) -> torch.optim.Optimizer:
    """``hp.optimizer``: "sgd" (Nesterov momentum, nnU-Net's) or "adamw"."""
    from selfconfig.errors import ConfigurationError

    if hp.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=hp.momentum, nesterov=hp.nesterov, weight_decay=hp.weight_decay)
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=hp.weight_decay)
    raise ConfigurationError(f"optimizer {hp.optimizer!r} is not one of sgd, adamw")


class Trainer:
    """Base trainer. A subclass is found by name through an entry point of the group
    ``selfconfig.trainers``, or as ``module:Class`` (:mod:`selfconfig.training.registry`)."""

    #: the run folder's ``<Trainer>`` part: the class name unless a subclass sets its own
    name = "Trainer"
    #: free text shown by ``selfconfig_train --list``
    description = ""
    #: does this strategy pre-train on the unlabeled pool first?
    uses_pretraining = False

    def __init__(self, hyperparameters: TrainingConfig):
        self.hp = hyperparameters

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Name each subclass after itself, so that an imported class and one found by name agree."""
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    # ------------------------------------------------------------------ hooks
    @classmethod
    def default_hyperparameters(cls, device: str) -> TrainingConfig:
        """Defaults before CLI flags are applied."""
        return TrainingConfig.for_device(device)

    def check_compatible(self, data: "DatasetContext") -> None:
        """Raise :class:`selfconfig.errors.IncompatibleDatasetError` when the dataset does not fit."""

    def build_network(self, data: "DatasetContext") -> nn.Module:
        from selfconfig.networks import build_classification_network, build_segmentation_network

        plan = data.config.network
        if data.task == "segmentation":
            return build_segmentation_network(plan)
        return build_classification_network(plan)

    def initialize_weights(self, network: nn.Module, run: "RunContext") -> dict[str, Any]:
        """Initialise ``network`` in place; return a record of what was done (saved with the run).
        Default: Xavier (Glorot) initialisation, the paper's Scratch."""
        from selfconfig.networks import init_weights_xavier

        init_weights_xavier(network)
        return {"init": "xavier"}

    def build_optimizer(self, network: nn.Module, hp: TrainingConfig) -> torch.optim.Optimizer:
        return make_optimizer(network.parameters(), hp, hp.lr)

    def learning_rate(self, step: int, total: int, hp: TrainingConfig) -> float:
        return warmup_poly_lr(hp.lr, step, total, hp)

    def build_loss(self, run: "RunContext", train_labels: list[int] | None = None) -> nn.Module:
        if run.data.task == "segmentation":
            return SegmentationLoss.for_labels(LabelScheme.of(run.data.plans), batch_dice=True)
        weights = None
        if self.hp.class_weights == "balanced" and train_labels:
            k = run.data.plans.num_classes
            counts = np.bincount(np.asarray(train_labels), minlength=k).astype(float)
            w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / k, 0.0)
            weights = torch.tensor(w, dtype=torch.float32)
        return classification_loss(weights)

    def build_augmenter(self, data: "DatasetContext", seed: int):
        if not self.hp.augment:
            return None
        from selfconfig.augment import BatchAugmenter, default_augmentation_config

        cfg = data.config
        spacing = cfg.spacing
        anisotropic = cfg.dim == 3 and max(spacing) / min(spacing) > cfg.anisotropy_threshold
        aug = default_augmentation_config(cfg.dim, anisotropic)
        aug.mirror_axes = cfg.axes_to_mirror()  # the plan's: not an axis along which two classes are mirror images
        g = torch.Generator().manual_seed(seed)
        return BatchAugmenter(aug, generator=g, patch_size=cfg.patch_size)

    def extra_callbacks(self, run: "RunContext") -> list["Callback"]:
        return []
