"""SurrogateWGAN: pre-train a WGAN-GP on the unlabeled pool; its critic (the target classifier's
architecture) hands its encoder to the target network (the paper's nodule false-positive reduction)."""

from __future__ import annotations

from selfconfig.pretext.trainer import SurrogateTrainer
from selfconfig.pretext.wgan import WGANPretext


class SurrogateWGAN(SurrogateTrainer):
    description = "pre-train a Wasserstein GAN (gradient penalty) on the unlabeled pool; the critic's encoder is kept"
    pretext_task = WGANPretext
