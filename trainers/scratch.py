"""Scratch: Xavier (Glorot) initialisation, then supervised training (the paper's baseline)."""

from __future__ import annotations

from selfconfig.training.trainer import Trainer


class Scratch(Trainer):
    description = "Xavier (Glorot) initialisation, no pre-training"
