"""SurrogateRotation: pre-train by predicting in-plane rotations of 0/90/270 degrees (the paper's
retinopathy grading; 180 is left out because a rotated left eye looks like a right eye)."""

from __future__ import annotations

from selfconfig.pretext.rotation import RotationPrediction
from selfconfig.pretext.trainer import SurrogateTrainer


class SurrogateRotation(SurrogateTrainer):
    description = "pre-train on the unlabeled pool by predicting in-plane rotations (0/90/270 degrees)"
    pretext_task = RotationPrediction
