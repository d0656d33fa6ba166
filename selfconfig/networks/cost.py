"""Cost of a planned network, for the planner: FLOPs, activation memory, parameter counts.

Conventions (one sample, one forward pass):

* FLOPs = 2 x multiply-adds of every convolution, transposed convolution and linear layer
  (norms, nonlinearities and additions are not counted). Segmentation counts every deep
  supervision output when the plan enables it.
* Activation memory = bytes of the tensors autograd keeps for the backward pass (the input,
  each conv output kept by its norm, each normalised/activated output, decoder concatenations).
  The loss's own buffers are not included. ``bytes_per_element`` = 4 for float32, 2 under AMP.

The plain kind is computed analytically (fast enough for a planner's search loop); ImageNet
kinds are measured once on the meta device (no memory, no compute) and cached.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from selfconfig.networks.blocks import as_tuple
from selfconfig.plans import EncoderPlan, NetworkPlan

TASKS = ("segmentation", "classification", "pretext")
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass(frozen=True)
class ForwardCost:
    flops: float
    saved_bytes: float  # float32 tensors kept for backward


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")


# --------------------------------------------------------------------------- analytic (plain)


def _plain_cost(plan: NetworkPlan, patch: Sequence[int], task: str) -> tuple[float, float]:
    """(flops, saved elements) of a plain-encoder network, counted layer by layer."""
    enc: EncoderPlan = plan.encoder
    dim = plan.dim
    shape = list(as_tuple(patch, dim))
    ch = plan.in_channels
    flops = 0.0
    saved = float(math.prod(shape) * ch)  # the input, kept by the first conv
    skips: list[tuple[list[int], int]] = []
    for i, f in enumerate(enc.features_per_stage):
        k = math.prod(as_tuple(enc.kernel_sizes[i], dim))
        for j in range(enc.n_conv_per_stage[i]):
            if j == 0:
                shape = [math.ceil(a / s) for a, s in zip(shape, as_tuple(enc.strides[i], dim))]
            n = math.prod(shape)
            flops += 2.0 * n * ch * f * k
            saved += 2.0 * n * f  # conv output (kept by norm) + activated output (kept by act / next conv)
            ch = f
        skips.append((list(shape), f))
    if task == "segmentation":
        n_stages = len(skips)
        below_shape, below_ch = skips[-1]
        first_stride = as_tuple(enc.strides[0], dim)
        strided_stem = any(v > 1 for v in first_stride)
        n_dec = list(plan.decoder.n_conv_per_stage) or [2] * (n_stages - 1 + int(strided_stem))
        for s in range(1, n_stages):
            skip_shape, skip_ch = skips[-(s + 1)]
            stride = math.prod(as_tuple(enc.strides[-s], dim))
            n = math.prod(skip_shape)
            flops += 2.0 * math.prod(below_shape) * below_ch * skip_ch * stride  # transposed conv
            saved += 2.0 * n * skip_ch  # concatenation (kept by the next conv)
            k = math.prod(as_tuple(enc.kernel_sizes[-(s + 1)], dim))
            for j in range(n_dec[s - 1]):
                cin = 2 * skip_ch if j == 0 else skip_ch
                flops += 2.0 * n * cin * skip_ch * k
                saved += 2.0 * n * skip_ch
            last = s == n_stages - 1 and not strided_stem
            if plan.decoder.deep_supervision or last:
                flops += 2.0 * n * skip_ch * plan.num_classes
            below_shape, below_ch = skip_shape, skip_ch
        if strided_stem:  # final upsampling to full resolution, no skip
            f = max(16, enc.features_per_stage[0] // 2)
            full = list(as_tuple(patch, dim))
            n = math.prod(full)
            flops += 2.0 * math.prod(below_shape) * below_ch * f * math.prod(first_stride)
            saved += n * f  # the transposed conv output, kept by the next conv
            k = math.prod(as_tuple(enc.kernel_sizes[0], dim))
            for _ in range(n_dec[-1]):
                flops += 2.0 * n * f * f * k
                saved += 2.0 * n * f
            flops += 2.0 * n * f * plan.num_classes
    else:
        hidden = plan.head.hidden_features if task == "classification" else 0
        if hidden > 0:
            flops += 2.0 * ch * hidden + 2.0 * hidden * plan.num_classes
            saved += ch + hidden
        else:
            flops += 2.0 * ch * plan.num_classes
            saved += ch
    return flops, saved


# --------------------------------------------------------------------------- measured (any model)


def measure_forward_cost(model: nn.Module, input_shape: Sequence[int]) -> ForwardCost:
    """FLOPs (forward hooks) and bytes saved for backward (autograd saved-tensor hooks, each
    storage counted once, parameters and buffers excluded) of one training-mode forward.

    Works on the meta device, where it costs neither memory nor compute.
    """
    flops = 0.0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal flops
        w = module.weight
        if isinstance(module, _TRANSPOSED):
            flops += 2.0 * inputs[0].numel() * w[0].numel()
        elif isinstance(module, _CONVS):
            flops += 2.0 * output.numel() * w[0].numel()
        else:  # linear
            flops += 2.0 * output.numel() * module.in_features

    handles = [m.register_forward_hook(count) for m in model.modules()
               if isinstance(m, _CONVS + _TRANSPOSED + (nn.Linear,))]
    owned = {t.untyped_storage()._cdata for t in list(model.parameters()) + list(model.buffers())}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in owned:
            saved[storage._cdata] = storage.nbytes()
        return t

    param = next(model.parameters())
    was_training = model.training
    model.train()
    try:
        x = torch.zeros(tuple(input_shape), device=param.device, dtype=param.dtype)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return ForwardCost(flops, float(sum(saved.values())))


def _build(plan: NetworkPlan, task: str) -> nn.Module:
    if task == "segmentation":
        from selfconfig.networks.unet import build_segmentation_network

        return build_segmentation_network(plan)
    if task == "classification":
        from selfconfig.networks.classifier import build_classification_network

        return build_classification_network(plan)
    from selfconfig.networks.pretext import build_pretext_network

    return build_pretext_network(plan, plan.num_classes)


_CACHE: dict[tuple, ForwardCost] = {}


def _plan_key(plan: NetworkPlan) -> str:
    return json.dumps(asdict(plan), sort_keys=True)


def _meta(plan: NetworkPlan, patch_size: Sequence[int], task: str) -> ForwardCost:
    """Cost of the network, measured once per (plan, task) on the meta device at the first patch
    asked for and scaled by the number of voxels for other patches: the networks are fully
    convolutional, so their cost grows linearly with the voxels (a planner asks for many patches,
    and building a network costs a fraction of a second)."""
    patch = tuple(as_tuple(patch_size, plan.dim))
    key = (_plan_key(plan), task)
    if key not in _CACHE:
        if len(_CACHE) > 512:
            _CACHE.clear()
        with torch.device("meta"):
            model = _build(plan, task)
        # batch 2: batch norm refuses one value per channel in training mode (1x1 bottlenecks)
        cost = measure_forward_cost(model, (2, plan.in_channels, *patch))
        _CACHE[key] = (patch, ForwardCost(cost.flops / 2, cost.saved_bytes / 2))
    ref_patch, ref = _CACHE[key]
    scale = float(np.prod(patch)) / float(np.prod(ref_patch))
    return ForwardCost(ref.flops * scale, ref.saved_bytes * scale)


# --------------------------------------------------------------------------- public estimates


def estimate_conv_flops(plan: NetworkPlan, patch_size: Sequence[int], task: str = "segmentation") -> float:
    """Forward FLOPs (2 x multiply-adds) of one sample of ``patch_size``."""
    _check_task(task)
    if plan.encoder.kind == "plain":
        return _plain_cost(plan, patch_size, task)[0]
    return _meta(plan, patch_size, task).flops


def estimate_activation_memory_bytes(plan: NetworkPlan, patch_size: Sequence[int], task: str = "segmentation",
                                     bytes_per_element: int = 4) -> float:
    """Bytes kept for backward by one sample of ``patch_size`` (multiply by the batch size)."""
    _check_task(task)
    if plan.encoder.kind == "plain":
        return _plain_cost(plan, patch_size, task)[1] * bytes_per_element
    return _meta(plan, patch_size, task).saved_bytes * bytes_per_element / 4


def training_seconds_per_sample(plan: NetworkPlan, patch_size: Sequence[int], task: str, plain_gflops: float,
                                encoder_gflops: float | None = None) -> float:
    """Seconds of one training sample (forward + backward = 3 x the forward FLOPs) at an effective
    throughput: ``plain_gflops`` for plain networks and decoders, ``encoder_gflops`` (default: the
    plain rate) for an ImageNet encoder kind, which runs at its own rate."""
    total = 3.0 * estimate_conv_flops(plan, patch_size, task)
    if plan.encoder.kind == "plain" or not encoder_gflops:
        return total / (plain_gflops * 1e9)
    # the encoder (with pooling and head: negligible) at its kind's rate, a decoder at the plain rate
    encoder = total if task != "segmentation" else min(total, 3.0 * estimate_conv_flops(plan, patch_size, "classification"))
    return encoder / (encoder_gflops * 1e9) + (total - encoder) / (plain_gflops * 1e9)


_PARAM_CACHE: dict[tuple[str, str], int] = {}


def estimate_parameter_count(plan: NetworkPlan, task: str = "segmentation") -> int:
    """Parameters of the network ``plan`` builds for ``task`` (built on the meta device, cached)."""
    _check_task(task)
    key = (_plan_key(plan), task)
    if key not in _PARAM_CACHE:
        with torch.device("meta"):
            _PARAM_CACHE[key] = count_parameters(_build(plan, task))
    return _PARAM_CACHE[key]
