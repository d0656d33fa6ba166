"""The shipped trainers, one module per initialisation strategy.

``-tr NAME`` looks names up in :mod:`selfconfig.training.registry`; importing this package
registers every strategy below. Users add their own with ``-tr my_module:MyTrainer`` or an
entry point in the group ``selfconfig.trainers`` (see documentation/extending.md).
"""

from __future__ import annotations

from trainers.imagenet import ImageNet
from trainers.scratch import Scratch
from trainers.surrogate_color import SurrogateColor
from trainers.surrogate_flip import SurrogateFlip
from trainers.surrogate_rotation import SurrogateRotation
from trainers.surrogate_wgan import SurrogateWGAN

__all__ = ["ImageNet", "Scratch", "SurrogateColor", "SurrogateFlip", "SurrogateRotation", "SurrogateWGAN"]
