"""GAN parts of the WGAN surrogate: a generator that mirrors the plan's encoder, the WGAN-GP
gradient penalty, and resolution fading (progressive growing on images).

The generator is built from the same ``NetworkPlan`` as the critic (the target classifier), so
a 2D or 3D plan with any strides yields images of exactly the plan's patch size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from selfconfig.errors import PlansError
from selfconfig.networks.blocks import ConvNormAct, as_tuple, conv_op, make_conv, norm_layer, transposed_conv_op
from selfconfig.networks.init import init_weights_he
from selfconfig.plans import NetworkPlan

GENERATOR_NORMS = ("pixel", "instance", "batch")


class PixelNorm(nn.Module):
    """Karras et al.'s pixelwise feature normalisation: each voxel's feature vector gets unit RMS.

    No parameters and no batch statistics, so it works at a 1-voxel bottleneck (where instance
    norm would zero everything) and with batches of two 3D patches (where batch norm is noise).
    """

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


def _norm(kind: str, dim: int, channels: int) -> nn.Module:
    if kind == "pixel":
        return PixelNorm()
    if kind in ("instance", "batch"):
        return norm_layer(kind, dim, channels)
    raise ValueError(f"unknown generator norm {kind!r} (known: {', '.join(GENERATOR_NORMS)})")


def encoder_topology(plan: NetworkPlan) -> tuple[list[int], list[list[int]], list[list[int]]]:
    """Features, strides and kernel sizes per encoder stage, per axis (ImageNet kinds: their layout)."""
    enc = plan.encoder
    if enc.kind != "plain" and not (enc.features_per_stage and enc.strides):
        from selfconfig.networks.encoders import imagenet_encoder_layout

        layout = imagenet_encoder_layout(enc.kind, plan.dim)
        enc = type(enc)(**{**vars(layout), **{k: v for k, v in vars(enc).items() if v}})
    features = [int(f) for f in enc.features_per_stage]
    strides = [list(as_tuple(s, plan.dim)) for s in enc.strides]
    kernels = [list(as_tuple(k, plan.dim)) for k in (enc.kernel_sizes or [[3] * plan.dim] * len(features))]
    if not features or len(strides) != len(features) or len(kernels) != len(features):
        raise PlansError(f"the encoder plan has {len(features)} stages but {len(strides)} strides and "
                         f"{len(kernels)} kernel sizes; fix plans.json or rerun selfconfig_plan_and_preprocess")
    return features, strides, kernels


def stage_sizes(patch_size: Sequence[int], strides: Sequence[Sequence[int]]) -> list[list[int]]:
    """Spatial size of each encoder stage's output: a padded conv of stride s gives ceil(n / s)."""
    sizes, cur = [], [int(p) for p in patch_size]
    for s in strides:
        cur = [math.ceil(n / v) for n, v in zip(cur, s)]
        sizes.append(list(cur))
    return sizes


class PatchGenerator(nn.Module):
    """latent (B, latent_dim) -> image (B, C, *patch_size), the encoder's topology in reverse.

    ``fc`` maps the latent vector to the bottleneck (the last encoder stage's features at its
    resolution). Each ``stages[i]`` upsamples by the stride of the encoder stage it mirrors
    (transposed conv, kernel = stride), crops to that resolution (odd sizes: the encoder rounds
    up), then norm -> ReLU -> ``convs_per_stage`` x (conv -> norm -> ReLU) with the features of
    the mirrored stage. ``out`` (1x1 conv) gives the channels; no output activation, because
    preprocessed images are z-scored, not bounded.
    """

    def __init__(self, plan: NetworkPlan, patch_size: Sequence[int], latent_dim: int = 128, norm: str = "pixel",
                 convs_per_stage: int = 1, out_channels: int | None = None):
        super().__init__()
        dim = plan.dim
        if len(patch_size) != dim:
            raise PlansError(f"patch size {list(patch_size)} does not fit a {dim}D network; fix plans.json")
        features, strides, kernels = encoder_topology(plan)
        sizes = stage_sizes(patch_size, strides)
        self.dim, self.latent_dim = dim, int(latent_dim)
        self.patch_size = [int(p) for p in patch_size]
        self.out_channels = int(out_channels or plan.in_channels)
        self.bottleneck_shape = [features[-1], *sizes[-1]]
        self.fc = nn.Linear(self.latent_dim, math.prod(self.bottleneck_shape))
        self.fc_act = nn.Sequential(_norm(norm, dim, features[-1]), nn.ReLU(inplace=True))
        self.bottleneck = self._convs(dim, features[-1], features[-1], kernels[-1], convs_per_stage, norm)
        transp = transposed_conv_op(dim)
        self.stages = nn.ModuleList()
        self._targets: list[list[int]] = []
        below = features[-1]
        # (features, stride to undo, kernel, target size): mirror stage n-1 .. 1, then stage 0's stride
        plan_up = [(features[i - 1], strides[i], kernels[i - 1], sizes[i - 1]) for i in range(len(features) - 1, 0, -1)]
        if any(v > 1 for v in strides[0]):
            plan_up.append((max(16, features[0] // 2), strides[0], kernels[0], self.patch_size))
        for f, stride, kernel, target in plan_up:
            up = transp(below, f, tuple(stride), tuple(stride), bias=True)
            self.stages.append(nn.ModuleDict({
                "up": up, "act": nn.Sequential(_norm(norm, dim, f), nn.ReLU(inplace=True)),
                "convs": self._convs(dim, f, f, kernel, convs_per_stage, norm)}))
            self._targets.append(list(target))
            below = f
        self.out = conv_op(dim)(below, self.out_channels, 1, bias=True)
        init_weights_he(self, neg_slope=0.0)

    @staticmethod
    def _convs(dim: int, cin: int, cout: int, kernel, n: int, norm: str) -> nn.Sequential:
        return nn.Sequential(*[ConvNormAct(make_conv(dim, cin if i == 0 else cout, cout, kernel),
                                           _norm(norm, dim, cout), nn.ReLU(inplace=True)) for i in range(n)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(z.shape[0], *self.bottleneck_shape)
        x = self.bottleneck(self.fc_act(x))
        for stage, target in zip(self.stages, self._targets):
            x = stage["up"](x)
            x = x[(slice(None), slice(None), *(slice(0, t) for t in target))]
            x = stage["convs"](stage["act"](x))
        return self.out(x)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard-normal latent vectors on the CPU (move them to the device)."""
        return torch.randn(n, self.latent_dim, generator=generator)


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Gulrajani et al.'s two-sided penalty E[(||grad_x D(x)||_2 - 1)^2] on x = eps real + (1 - eps) fake.

    ``eps`` holds one uniform number per sample. The norm is per sample, which is why the critic
    must not mix samples (no batch norm). The returned value keeps the graph (double backward).
    """
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    e = eps.to(real.device, real.dtype).view(shape)
    x = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.float().sum(), x, create_graph=True)
    norm = torch.sqrt(grad.float().pow(2).flatten(1).sum(1) + 1e-12)
    return (norm - 1).pow(2).mean()


def separation_accuracy(d_real: torch.Tensor, d_fake: torch.Tensor) -> float:
    """Fraction of samples on the right side of the midpoint between mean D(real) and mean D(fake)
    (real above, fake below): how well the critic tells real from generated."""
    thr = 0.5 * (d_real.float().mean() + d_fake.float().mean())
    correct = (d_real > thr).sum() + (d_fake < thr).sum()
    return float(correct) / max(d_real.numel() + d_fake.numel(), 1)


# --------------------------------------------------------------------- resolution fading
def resolution_levels(cumulative_strides: Sequence[Sequence[int]], patch_size: Sequence[int],
                      min_size: int = 4) -> list[list[int]]:
    """Per level (0 = full resolution), its per-axis downsampling factor: the encoder's distinct
    cumulative strides, as long as every axis keeps at least ``min_size`` voxels."""
    dim = len(patch_size)
    levels = [[1] * dim]
    for f in cumulative_strides:
        f = [int(v) for v in f]
        if f == levels[-1]:
            continue
        if min(math.ceil(p / v) for p, v in zip(patch_size, f)) < min_size:
            break
        levels.append(f)
    return levels


def progressive_phase(step: int, total: int, n_levels: int, fraction: float = 0.5) -> tuple[int, float]:
    """(level, alpha) at ``step`` of ``total``: the first ``fraction`` of the schedule is cut into
    2 (n_levels - 1) equal slots: hold the coarsest level, fade in the next finer one (alpha 0 -> 1),
    hold it, fade ... ; the last slot fades in full resolution, which then holds to the end."""
    k = n_levels - 1
    grow = fraction * total
    if k <= 0 or grow <= 0 or step >= grow:
        return 0, 0.0
    pos = step / grow * 2 * k
    slot = int(pos)
    return k - slot // 2, (pos - slot) if slot % 2 else 0.0


def lowpass(x: torch.Tensor, factor: Sequence[int]) -> torch.Tensor:
    """Average over blocks of ``factor`` voxels and upsample back (nearest): the image as a
    network working at 1/factor resolution would see it."""
    if all(v == 1 for v in factor):
        return x
    spatial = x.shape[2:]
    small = [math.ceil(n / v) for n, v in zip(spatial, factor)]
    pool = F.adaptive_avg_pool3d if x.ndim == 5 else F.adaptive_avg_pool2d
    return F.interpolate(pool(x, small), size=list(spatial), mode="nearest")


def fade(x: torch.Tensor, levels: Sequence[Sequence[int]], level: int, alpha: float) -> torch.Tensor:
    """(1 - alpha) * lowpass(x, level) + alpha * lowpass(x, level - 1); level 0 is ``x`` itself."""
    if level <= 0:
        return x
    coarse = lowpass(x, levels[level])
    if alpha <= 0:
        return coarse
    return (1 - alpha) * coarse + alpha * lowpass(x, levels[level - 1])
