"""Colourisation (the paper's skin-segmentation surrogate): a conditional GAN in the style of
pix2pix (Isola et al., CVPR 2017) learns to colour gray versions of the unlabeled colour images.

* Generator: the target U-Net itself (:func:`selfconfig.networks.build_segmentation_network`
  on the configuration's plan with ``num_classes=2``), so its ``encoder.*`` and ``decoder.*``
  tensors fit the segmenter unchanged; only the 1x1 output layers (``seg_layers``) differ in
  their class count and are not transferred. Deep supervision is off: only the full-resolution
  output is trained (the low-resolution ``seg_layers`` stay untouched and are never transferred).
* What it predicts: the *chrominance* only, as colourisation papers do (Zhang et al., ECCV 2016
  predict Lab's ab; here YCbCr's Cb and Cr, ``0.5 tanh(logits)``); the luminance is the gray
  input itself, and the colour is :func:`rgb_from_chroma` ``(gray, (Cb, Cr))`` clipped to 0-1.
  Zero chrominance is the gray image, and the output layer starts at zero, so the generator
  starts at the gray image's colour error and every step it takes below that error is colour it
  has learned. (An earlier formulation predicted RGB with a sigmoid and had to re-learn the
  luminance too: on SKIN_SEG's quick budget its held-out L1 ended at 0.150 while the gray input
  itself is off by 0.123, i.e. it learned nothing measurable.)
* Generator input: the luminance ``0.299 R + 0.587 G + 0.114 B`` *replicated* into the three
  RGB input channels. The segmenter sees RGB, so its stem has three input channels; feeding the
  replicated gray keeps the generator's stem identical and transferable (a 1-channel stem would
  not fit). Other input channels of a multi-channel dataset pass through unchanged.
* Discriminator: a 3-layer PatchGAN on ``concat(gray, colour)`` (4 channels):
  conv(4->64, k4, s2) LReLU(0.2); conv(64->128, k4, s2) InstanceNorm LReLU(0.2);
  conv(128->1, k4, s1). Dimension-generic; an axis too short to be halved is not strided.
* Loss: pix2pix's vanilla GAN (BCE with logits, D's loss halved) + 100 x L1 on RGB. Adam, lr
  2e-4, betas (0.5, 0.999) for both networks, with the framework's poly decay per iteration.
* Augmentation: spatial transforms and mirroring only (``augmentation = "spatial"``,
  implemented by :meth:`ColorizationPretext.build_augmenter`); per-channel intensity
  transforms would change the colours the generator has to reproduce. Gray is derived after
  augmentation, so input and target stay aligned.
* Precision: the generator and the discriminator run under the task's autocast (bf16 on CPUs
  with fast bfloat16, fp16 + gradient scalers on CUDA); tanh, the colour conversion, L1 and BCE
  run in fp32.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfconfig.errors import IncompatibleDatasetError
from selfconfig.networks.blocks import conv_op
from selfconfig.pretext.base import PretextTask
from selfconfig.training.loop import LoopState

log = logging.getLogger(__name__)

#: ITU-R BT.601 luma weights (R, G, B)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: full-range YCbCr (JPEG, BT.601) -> RGB: R = Y + 1.402 Cr, G = Y - 0.344136 Cb - 0.714136 Cr, B = Y + 1.772 Cb
YCBCR_TO_RGB = ((0.0, 1.402), (-0.344136, -0.714136), (1.772, 0.0))


def rgb_channels(channel_names: dict[str, str]) -> slice | None:
    """Where the (first) RGB file channel sits in the network input, or None without colour.

    A channel named ``RGB`` is one file with three colour channels (see
    :class:`selfconfig.dataset.schema.DatasetInfo`); every other file channel is one input channel.
    """
    offset = 0
    for key in sorted(channel_names, key=int):
        if channel_names[key].strip().lower() == "rgb":
            return slice(offset, offset + 3)
        offset += 1
    return None


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, ...) colour -> (B, 1, ...) gray, ``0.299 R + 0.587 G + 0.114 B``."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=rgb.dtype, device=rgb.device).view(1, 3, *([1] * (rgb.ndim - 2)))
    return (rgb * w).sum(1, keepdim=True)


def rgb_from_chroma(gray: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """Luminance (B, 1, ...) and chrominance (B, 2, ...) = (Cb, Cr) -> RGB (B, 3, ...), not clipped.

    The inverse of full-range YCbCr: ``luminance(rgb_from_chroma(y, c)) == y`` for any ``c`` (up
    to the conversion's rounding), and zero chrominance gives gray.
    """
    m = torch.tensor(YCBCR_TO_RGB, dtype=chroma.dtype, device=chroma.device)  # (3 colours, 2 chroma)
    return gray + torch.einsum("kc,bc...->bk...", m, chroma)


class PatchDiscriminator(nn.Module):
    """pix2pix's PatchGAN with three convolutions; outputs one logit per receptive-field patch.

    ``patch_size`` (optional) adapts the geometry per axis: an axis shorter than 4 voxels is not
    halved (kernel 3, stride 1 instead of kernel 4, stride 2), so thin 3D patches still fit.
    """

    def __init__(self, dim: int, in_channels: int = 4, features: Sequence[int] = (64, 128),
                 patch_size: Sequence[int] | None = None):
        super().__init__()
        conv = conv_op(dim)
        norm = nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d
        size = list(patch_size) if patch_size is not None else [64] * dim

        def strided(cin: int, cout: int) -> nn.Module:
            k, s, p = [], [], []
            for i, n in enumerate(size):
                halve = n >= 4
                k.append(4 if halve else 3)
                s.append(2 if halve else 1)
                p.append(1)
                size[i] = n // 2 if halve else n
            return conv(cin, cout, tuple(k), tuple(s), tuple(p))

        f1, f2 = features
        self.layers = nn.Sequential(
            strided(in_channels, f1), nn.LeakyReLU(0.2, inplace=True),
            strided(f1, f2), norm(f2), nn.LeakyReLU(0.2, inplace=True),
            conv(f2, 1, tuple(4 if n >= 2 else 3 for n in size), 1, 1),
        )
        for m in self.modules():  # pix2pix's initialisation
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ColorizationPretext(PretextTask):
    """Conditional-GAN colourisation; the generator (the target U-Net) initialises the segmenter."""

    name = "colorization"
    #: -L1 between generated and true colours on held-out pool batches (higher is better)
    monitor = "val_neg_l1"
    # the discriminator's accuracy is high when the generator's colours are easy to catch: the
    # generator (the U-Net that is transferred) is judged by its L1 colour error against the gray image's
    accuracy_name = "discriminator: real vs generated colours"
    held_out_error = ("l1", "L1 colour error", "gray_l1")
    #: chrominance around the gray input (a folder from the RGB-sigmoid version is refused)
    formulation = "chroma"
    #: spatial transforms + mirroring, no intensity transforms (see :meth:`build_augmenter`)
    augmentation = "spatial"
    cost_network = "segmentation"  # the generator is the whole U-Net
    cost_factor = 1.2  # plus a discriminator step (measured on SKIN_SEG 2d_imagenet: 37 s vs 30 s per 25 iterations)
    default_lr = 2e-4
    betas = (0.5, 0.999)
    l1_weight = 100.0
    #: the strategy named in the error of :meth:`check_compatible`
    strategy_name = "SurrogateColor"

    # ------------------------------------------------------------------ hooks
    @classmethod
    def check_compatible(cls, data) -> None:
        names = data.plans.channel_names
        if rgb_channels(names) is None:
            shown = ", ".join(names[k] for k in sorted(names, key=int))
            raise IncompatibleDatasetError(
                f"{cls.strategy_name} needs colour (RGB) images: {data.dataset} has channels {shown} "
                f"(channel_names in its dataset.json); pick SurrogateFlip, SurrogateRotation or SurrogateWGAN")

    def build(self) -> None:
        from selfconfig.networks import build_segmentation_network

        cfg = self.data.config
        plan = cfg.network
        self.rgb = rgb_channels(self.data.plans.channel_names)
        gen_plan = replace(plan, num_classes=2, decoder=replace(plan.decoder, deep_supervision=False))
        self.generator = build_segmentation_network(gen_plan).to(self.device)
        self.generator.deep_supervision = False
        # zero chrominance at the start: the generator begins at the gray image's colour error
        # (Adam's per-parameter steps move the layers below at their usual rate from the second step)
        nn.init.zeros_(self.generator.seg_layers[-1].weight)
        nn.init.zeros_(self.generator.seg_layers[-1].bias)
        self.discriminator = PatchDiscriminator(cfg.dim, 4, patch_size=cfg.patch_size).to(self.device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=self.betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=self.betas)

    def transferable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.generator.state_dict().items()}

    def transfer_groups(self, target_task: str) -> tuple[str, ...]:
        return ("encoder", "decoder") if target_task == "segmentation" else ("encoder",)

    # ------------------------------------------------------------------ data
    def make_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Colour batch (B, C, ...) in 0-1 -> (generator input, gray (B, 1, ...), colour (B, 3, ...))."""
        colour = x[:, self.rgb].float().clamp(0.0, 1.0)  # spatial interpolation may overshoot
        gray = luminance(colour)
        parts = [x[:, :self.rgb.start], gray.expand(-1, 3, *gray.shape[2:]), x[:, self.rgb.stop:]]
        inp = torch.cat([p.float() for p in parts if p.shape[1]], 1)
        return inp, gray, colour

    #: the chrominance's range: Cb, Cr of colours in the RGB cube lie in [-0.5, 0.5]
    chroma_scale = 0.5

    def colorize(self, inp: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
        """Generator input and its gray (B, 1, ...) -> colour (B, 3, ...) in [0, 1]: the gray's
        luminance with the generator's chrominance."""
        with self.autocast():
            logits = self.generator(inp)
        chroma = self.chroma_scale * torch.tanh(logits.float())
        return rgb_from_chroma(gray.float(), chroma).clamp(0.0, 1.0)

    def discriminate(self, gray: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            out = self.discriminator(torch.cat([gray, colour], 1))
        return out.float()

    # ------------------------------------------------------------------ steps
    @staticmethod
    def _d_metrics(d_real: torch.Tensor, d_fake: torch.Tensor) -> tuple[torch.Tensor, float]:
        loss = 0.5 * (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                      + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        acc = 0.5 * (float((d_real > 0).float().mean()) + float((d_fake < 0).float().mean()))
        return loss, acc

    def _g_losses(self, d_fake: torch.Tensor, fake: torch.Tensor, real: torch.Tensor):
        adv = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
        l1 = (fake - real).abs().mean()
        return adv + self.l1_weight * l1, l1, adv

    def train_step(self, batch: dict, state: LoopState) -> dict[str, float]:
        self.generator.train()
        self.discriminator.train()
        lr = self.set_lr(self.opt_g, state)
        self.set_lr(self.opt_d, state)
        inp, gray, real = self.make_inputs(self.augment(self.to_device(batch["data"])))
        fake = self.colorize(inp, gray)
        # discriminator: real pairs -> 1, generated pairs -> 0
        d_loss, accuracy = self._d_metrics(self.discriminate(gray, real), self.discriminate(gray, fake.detach()))
        self.optimizer_step(d_loss, self.opt_d, self.discriminator.parameters(), name="d")
        # generator: fool the updated discriminator and stay close to the true colours
        self.discriminator.requires_grad_(False)
        try:
            loss, l1, g_adv = self._g_losses(self.discriminate(gray, fake), fake, real)
            self.optimizer_step(loss, self.opt_g, self.generator.parameters(), name="g")
        finally:
            self.discriminator.requires_grad_(True)
        return {"loss": float(loss.detach()), "l1": float(l1.detach()), "g_adv": float(g_adv.detach()),
                "d_loss": float(d_loss.detach()), "accuracy": accuracy, "lr": lr}

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, Any]:
        self.generator.eval()
        self.discriminator.eval()
        inp, gray, real = self.make_inputs(self.to_device(batch["data"]))
        fake = self.colorize(inp, gray)
        d_fake = self.discriminate(gray, fake)
        d_loss, accuracy = self._d_metrics(self.discriminate(gray, real), d_fake)
        loss, l1, g_adv = self._g_losses(d_fake, fake, real)
        return {"loss": float(loss), "l1": float(l1), "g_adv": float(g_adv), "d_loss": float(d_loss),
                "accuracy": accuracy, "gray_l1": float((gray.expand_as(real) - real).abs().mean())}

    def validation_end(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        if not outputs:
            return {}
        logs = {f"val_{k}": float(np.mean([o[k] for o in outputs])) for k in outputs[0]}
        logs["val_neg_l1"] = -logs["val_l1"]
        return logs
