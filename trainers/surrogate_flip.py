"""SurrogateFlip: pre-train by predicting flips along each axis (the paper's lobe segmentation)."""

from __future__ import annotations

from selfconfig.pretext.flip import FlipPrediction
from selfconfig.pretext.trainer import SurrogateTrainer


class SurrogateFlip(SurrogateTrainer):
    description = "pre-train on the unlabeled pool by predicting flips along each axis (3 sigmoids in 3D)"
    pretext_task = FlipPrediction
