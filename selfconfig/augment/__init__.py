"""Batched data augmentation that runs on the training device (GPU when there is one).

``BatchAugmenter(default_augmentation_config(dim, anisotropic))(data, seg)`` augments a whole
batch with nnU-Net's default transforms as torch ops; see :mod:`selfconfig.augment.transforms`.
"""

from __future__ import annotations

from selfconfig.augment.config import AugmentationConfig, default_augmentation_config
from selfconfig.augment.transforms import BatchAugmenter

__all__ = ["AugmentationConfig", "BatchAugmenter", "default_augmentation_config"]
