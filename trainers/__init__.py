"""The shipped trainers, one module per initialisation strategy.

Each is an entry point of the group ``selfconfig.trainers`` in pyproject.toml, found by ``-tr NAME``
exactly like a user's own (an entry point of their package, or ``-tr my_module:MyTrainer``; see
documentation/extending.md). Importing this package is for subclassing them.
"""

from __future__ import annotations

from trainers.imagenet import ImageNet
from trainers.scratch import Scratch
from trainers.surrogate_color import SurrogateColor
from trainers.surrogate_flip import SurrogateFlip
from trainers.surrogate_rotation import SurrogateRotation
from trainers.surrogate_wgan import SurrogateWGAN

__all__ = ["ImageNet", "Scratch", "SurrogateColor", "SurrogateFlip", "SurrogateRotation", "SurrogateWGAN"]
