from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from selfconfig.networks import (
    build_classification_network,
    build_segmentation_network,
    count_parameters,
    estimate_activation_memory_bytes,
    estimate_conv_flops,
    estimate_parameter_count,
    imagenet_encoder_layout,
    measure_forward_cost,
)
from selfconfig.plans import NetworkPlan

from .conftest import plain_plan


def _hook_flops(model: nn.Module, x: torch.Tensor) -> float:
    """Independent count: 2 x MACs of conv / transposed conv / linear layers, via forward hooks."""
    total = 0.0

    def hook(m, inputs, out):
        nonlocal total
        if isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
            macs = inputs[0].numel() * m.out_channels // m.groups * torch.tensor(m.kernel_size).prod().item()
        elif isinstance(m, (nn.Conv2d, nn.Conv3d)):
            macs = out.numel() * m.in_channels // m.groups * torch.tensor(m.kernel_size).prod().item()
        else:
            macs = out.numel() * m.in_features
        total += 2 * macs

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear))]
    model(x)
    for h in handles:
        h.remove()
    return total


def _saved_bytes(model: nn.Module, x: torch.Tensor) -> float:
    """Bytes autograd really keeps for backward (each storage once, parameters excluded)."""
    params = {p.data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        if t.data_ptr() not in params:
            seen[t.data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return float(sum(seen.values()))


def _strided_stem_plan():
    plan = plain_plan(2, num_classes=2)
    plan.encoder.strides = [[2, 2], [2, 2], [1, 2]]
    plan.decoder.n_conv_per_stage = [2, 2, 1]
    return plan


CASES = [
    ("segmentation", plain_plan(3, in_channels=2), (1, 2, 16, 16, 16)),
    ("segmentation", _strided_stem_plan(), (1, 1, 16, 32)),
    ("segmentation", plain_plan(2, deep_supervision=False, norm="batch"), (1, 1, 32, 32)),
    ("classification", plain_plan(3, num_classes=4, hidden=8), (1, 1, 16, 16, 16)),
    ("classification", plain_plan(2, num_classes=4), (1, 1, 32, 32)),
]


@pytest.mark.parametrize("task,plan,shape", CASES)
def test_plain_flops_match_forward_hooks(task, plan, shape):
    build = build_segmentation_network if task == "segmentation" else build_classification_network
    model = build(plan)
    expected = _hook_flops(model, torch.randn(shape))
    assert estimate_conv_flops(plan, list(shape[2:]), task) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("task,plan,shape", CASES)
def test_plain_activation_memory_matches_saved_tensors(task, plan, shape):
    build = build_segmentation_network if task == "segmentation" else build_classification_network
    model = build(plan).train()
    measured = _saved_bytes(model, torch.randn(shape))
    estimate = estimate_activation_memory_bytes(plan, list(shape[2:]), task)
    assert estimate == pytest.approx(measured, rel=0.05)
    assert estimate_activation_memory_bytes(plan, list(shape[2:]), task, bytes_per_element=2) == estimate / 2


def test_meta_measurement_equals_real_model():
    plan = plain_plan(2)
    model = build_segmentation_network(plan)
    real = measure_forward_cost(model, (1, 1, 32, 32))
    with torch.device("meta"):
        meta_model = build_segmentation_network(plan)
    meta = measure_forward_cost(meta_model, (1, 1, 32, 32))
    assert meta.flops == real.flops == pytest.approx(_hook_flops(model, torch.randn(1, 1, 32, 32)))
    assert meta.saved_bytes == pytest.approx(real.saved_bytes)
    assert real.saved_bytes == pytest.approx(_saved_bytes(model, torch.randn(1, 1, 32, 32)))


@pytest.mark.parametrize("kind,gmacs,params", [
    ("efficientnet_lite0", 0.385, 4_652_008),  # published: ~0.4 GMACs, 4.65 M parameters
    ("resnet18", 1.81, 11_689_512),  # torchvision: 1.81 GFLOPS (MACs), 11.69 M
    ("resnet50", 4.09, 25_557_032),  # torchvision: 4.09, 25.56 M
])
def test_imagenet_costs_are_the_published_ones(kind, gmacs, params):
    plan = NetworkPlan(dim=2, in_channels=3, num_classes=1000, encoder=imagenet_encoder_layout(kind, 2))
    assert estimate_conv_flops(plan, [224, 224], "classification") / 2e9 == pytest.approx(gmacs, rel=0.02)
    assert estimate_parameter_count(plan, "classification") == params
    memory = estimate_activation_memory_bytes(plan, [224, 224], "classification")
    assert 5e6 < memory < 5e8


def test_costs_grow_with_patch_and_task():
    plan = NetworkPlan(dim=3, in_channels=1, num_classes=2, encoder=imagenet_encoder_layout("resnet18", 3))
    small = estimate_conv_flops(plan, [32, 32, 32])
    large = estimate_conv_flops(plan, [64, 64, 64])
    assert large == pytest.approx(8 * small, rel=0.05)
    assert estimate_conv_flops(plan, [32, 32, 32], "classification") < small
    assert estimate_activation_memory_bytes(plan, [64, 64, 64]) > estimate_activation_memory_bytes(plan, [32] * 3)


def test_count_parameters():
    model = build_segmentation_network(plain_plan(2))
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    model.encoder.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - count_parameters(model.encoder)
    assert estimate_parameter_count(plain_plan(2)) == count_parameters(model)
