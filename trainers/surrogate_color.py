"""SurrogateColor: pre-train the target U-Net as the generator of a conditional GAN that colours
gray versions of the unlabeled colour images (the paper's skin-lesion segmentation surrogate)."""

from __future__ import annotations

from selfconfig.pretext.color import ColorizationPretext
from selfconfig.pretext.trainer import SurrogateTrainer


class SurrogateColor(SurrogateTrainer):
    description = "pre-train on the unlabeled pool by conditional-GAN colourisation of gray images (RGB data only)"
    pretext_task = ColorizationPretext
