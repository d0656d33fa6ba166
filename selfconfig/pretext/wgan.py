"""Wasserstein GAN with gradient penalty (the paper's surrogate for 3D nodule false-positive
reduction): a critic learns to tell unlabeled-pool patches from generated ones, and its encoder
then initialises the target network.

* Critic: exactly the target classifier (``build_classification_network`` of the plan) with one
  output, so its ``encoder.*`` (and ``hidden.*``) tensors fit the target unchanged. For a
  segmentation target the same encoder is the U-Net's encoder.
* Generator: :class:`selfconfig.pretext.gan_parts.PatchGenerator`, the encoder's topology in
  reverse, from a 128-d latent vector to a patch of the plan's size.
* Training (Gulrajani et al.): critic loss D(fake) - D(real) + 10 * GP, generator loss -D(fake),
  Adam lr 1e-4, betas (0, 0.9), constant learning rate, ``n_critic = 5``. One loop iteration is
  ONE critic update, and every ``n_critic``-th iteration adds one generator update, so
  ``pretrain_iters_per_epoch`` counts critic updates and an epoch costs a fixed multiple of a
  supervised epoch instead of n_critic times more. ``hp.grad_clip`` applies to both optimizers.
* Cost: the penalty's double backward dominated a critic step on the CPU (7.8 s for a batch of
  30 patches of 32^3 when every sample was penalised in fp32). The penalty is an expectation over
  interpolates, so it is estimated on a random quarter of the batch (``gp_fraction``), and the
  scores and the generator run in the training precision (bf16 on a capable CPU) while the
  penalty itself always runs in fp32: 1.9 s for the same batch (about 4.5x a supervised step).
* Precision: the scores follow ``--precision``; the penalty differentiates a gradient (double
  backward) and is computed outside autocast, in fp32, so no gradient scaler has to reach into
  ``autograd.grad``.
* Progressive growing (``progressive = True``, off by default): the critic must stay the target's
  architecture, so instead of growing networks (Karras et al.) the *images* grow: during the
  first ``progressive_fraction`` of the schedule real and generated images (and the penalty's
  interpolates) are low-passed to the resolution of an encoder stage (block average, nearest
  upsampling back), starting at the coarsest stage with at least ``progressive_min_size`` voxels
  per axis; each finer resolution fades in with alpha 0 -> 1 over one slot and then holds for
  one slot (:func:`selfconfig.pretext.gan_parts.progressive_phase`, driven by
  ``state.global_step / state.total_steps``). The factors are the plan's cumulative strides
  (2^k for isotropic stride-2 plans).

Logged per step: ``loss`` (critic loss), ``wasserstein`` (mean D(real) - mean D(fake)), ``gp``,
``g_loss`` (-mean D(fake) of this step's fakes, i.e. the generator's loss against the current
critic, logged every step so epochs without a generator update still have it) and ``accuracy``
(:func:`selfconfig.pretext.gan_parts.separation_accuracy`). Validation on held-out pool patches
with fresh fakes: ``val_wasserstein``, ``val_accuracy`` (the monitor: bounded and comparable
between epochs, unlike the Wasserstein estimate whose scale drifts as the generator improves)
and ``val_loss`` (= -val_wasserstein).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from selfconfig.errors import IncompatibleDatasetError
from selfconfig.pretext.base import PretextTask
from selfconfig.pretext.gan_parts import (
    PatchGenerator,
    fade,
    gradient_penalty,
    progressive_phase,
    resolution_levels,
    separation_accuracy,
)
from selfconfig.training.loop import LoopState
from selfconfig.training.modules import poly_lr

if TYPE_CHECKING:  # pragma: no cover
    from selfconfig.training.context import DatasetContext

log = logging.getLogger(__name__)


class WGANPretext(PretextTask):
    name = "wgan"
    monitor = "val_accuracy"
    accuracy_name = "critic: real vs generated patches"
    # augmenting only the real patches would teach the generator the augmentation's artefacts
    augmentation = "none"
    default_lr = 1e-4
    betas = (0.0, 0.9)
    latent_dim = 128
    n_critic = 5
    gp_lambda = 10.0
    #: "constant" (WGAN-GP's Algorithm 1) or "poly" (nnU-Net's decay, both networks)
    lr_schedule = "constant"
    #: "pixel" (Karras et al.), "instance" or "batch"; only the critic must avoid batch norm
    generator_norm = "pixel"
    generator_convs_per_stage = 1
    #: "fp32", or None to follow ``--precision`` (fp16 is then still run as fp32)
    required_precision = None  # scores and generator follow --precision; the penalty is always fp32
    #: fraction of the batch on which the gradient penalty (an expectation over interpolates) is
    #: estimated: its double backward dominates a critic step on the CPU (1.0 = every sample)
    gp_fraction = 0.25
    cost_factor = 4.5  # critic steps on real + fake with the penalty's double backward (measured on NODULE_FPR 3d: 60 s vs 13.3 s per 25 iterations)
    progressive = False
    progressive_fraction = 0.5
    progressive_min_size = 4

    # ------------------------------------------------------------------ setup
    @classmethod
    def check_compatible(cls, data: "DatasetContext") -> None:
        enc = data.config.network.encoder
        if enc.kind != "plain" or enc.norm == "batch":
            from selfconfig.planning import plans_file

            where = plans_file(data.preprocessed_dir, data.plans.plans_name)
            raise IncompatibleDatasetError(
                f"the WGAN surrogate cannot pre-train configuration {data.configuration!r} of {where}: its encoder "
                f"({enc.kind}) uses batch norm, which mixes the samples that the critic's per-sample gradient "
                f"penalty needs apart; use a plain configuration (encoder kind 'plain', instance norm) or another "
                f"strategy")

    def learning_rate(self, step: int, total: int) -> float:
        if self.lr_schedule == "constant":
            return self.lr
        if self.lr_schedule == "poly":
            return poly_lr(self.lr, step, total, self.hp.poly_exponent)
        raise ValueError(f"unknown lr_schedule {self.lr_schedule!r} (constant, poly)")

    def build(self) -> None:
        from selfconfig.networks import build_classification_network

        cfg = self.data.config
        self.critic = build_classification_network(replace(cfg.network, num_classes=1)).to(self.device)
        self.image_generator = PatchGenerator(cfg.network, cfg.patch_size, self.latent_dim, self.generator_norm,
                                              self.generator_convs_per_stage).to(self.device)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=self.lr, betas=self.betas)
        self.opt_generator = torch.optim.Adam(self.image_generator.parameters(), lr=self.lr, betas=self.betas)
        if self.progressive:
            strides = self.critic.encoder.cumulative_strides()
            self.levels = resolution_levels(strides, cfg.patch_size, self.progressive_min_size)
        else:
            self.levels = [[1] * cfg.dim]
        self.phase: tuple[int, float] = (0, 0.0)
        log.info("WGAN: critic %s, generator %s -> %s, %d resolution level(s), %s", type(self.critic).__name__,
                 self.image_generator.bottleneck_shape, cfg.patch_size, len(self.levels), self.precision)

    # ------------------------------------------------------------------ helpers
    def latent(self, n: int) -> torch.Tensor:
        return self.to_device(self.image_generator.sample_latent(n, self.rng))

    def faded(self, x: torch.Tensor) -> torch.Tensor:
        return fade(x, self.levels, *self.phase)

    def critic_scores(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.critic(x).float().flatten()

    def set_phase(self, state: LoopState) -> tuple[int, float]:
        self.phase = progressive_phase(state.global_step, state.total_steps, len(self.levels),
                                       self.progressive_fraction)
        return self.phase

    # ------------------------------------------------------------------ steps
    def train_step(self, batch: dict, state: LoopState) -> dict[str, float]:
        self.critic.train()
        self.image_generator.train()
        level, alpha = self.set_phase(state)
        lr = self.set_lr(self.opt_critic, state)
        self.set_lr(self.opt_generator, state)
        real = self.faded(self.to_device(batch["data"]).float())
        n = real.shape[0]
        with torch.no_grad(), self.autocast():
            fake = self.faded(self.image_generator(self.latent(n)).float())
        scores = self.critic_scores(torch.cat([real, fake]))
        d_real, d_fake = scores[:n], scores[n:]
        m = max(1, int(round(n * self.gp_fraction)))  # the penalty's expectation, on a random sub-batch
        pick = torch.randperm(n, generator=self.rng)[:m].to(real.device)
        gp = gradient_penalty(self.critic, real[pick], fake[pick], self.rand(m))  # fp32: a double backward
        wasserstein = d_real.mean() - d_fake.mean()
        loss = -wasserstein + self.gp_lambda * gp
        self.optimizer_step(loss, self.opt_critic, self.critic.parameters(), name="critic")
        logs = {"loss": float(loss.detach()), "wasserstein": float(wasserstein.detach()), "gp": float(gp.detach()),
                "g_loss": float(-d_fake.detach().mean()), "accuracy": separation_accuracy(d_real.detach(),
                                                                                           d_fake.detach()),
                "lr": lr}
        if self.progressive:
            logs["resolution_level"] = level - alpha
        if (state.global_step + 1) % self.n_critic == 0:
            self.generator_step(n)
        return logs

    def generator_step(self, n: int) -> float:
        """One generator update against the current critic (its parameters frozen meanwhile)."""
        for p in self.critic.parameters():
            p.requires_grad_(False)
        try:
            with self.autocast():
                fake = self.faded(self.image_generator(self.latent(n)).float())
            g_loss = -self.critic_scores(fake).mean()
            self.optimizer_step(g_loss, self.opt_generator, self.image_generator.parameters(), name="generator")
        finally:
            for p in self.critic.parameters():
                p.requires_grad_(True)
        return float(g_loss.detach())

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, Any]:
        self.critic.eval()
        self.image_generator.eval()
        real = self.faded(self.to_device(batch["data"]).float())
        with self.autocast():
            fake = self.faded(self.image_generator(self.latent(real.shape[0])).float())
        scores = self.critic_scores(torch.cat([real, fake])).cpu()
        n = real.shape[0]
        return {"d_real": scores[:n].numpy(), "d_fake": scores[n:].numpy()}

    def validation_end(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        if not outputs:
            return {}
        d_real = torch.from_numpy(np.concatenate([o["d_real"] for o in outputs]))
        d_fake = torch.from_numpy(np.concatenate([o["d_fake"] for o in outputs]))
        w = float(d_real.mean() - d_fake.mean())
        return {"val_loss": -w, "val_wasserstein": w, "val_accuracy": separation_accuracy(d_real, d_fake)}

    # ------------------------------------------------------------------ transfer
    def transferable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.critic.state_dict().items()}

    def transfer_groups(self, target_task: str) -> tuple[str, ...]:
        """The encoder; for a classification target also the hidden layers, once the classifier
        declares them as a group of their own (today they belong to "head" with the output layer,
        whose shape differs, so they cannot be requested)."""
        if (target_task == "classification" and getattr(self.critic, "hidden", None) is not None
                and "hidden" in self.critic.parameter_groups()):
            return ("encoder", "hidden")
        return ("encoder",)
