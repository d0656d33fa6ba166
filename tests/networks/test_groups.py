from __future__ import annotations

import pytest
import torch

from selfconfig.networks import (
    build_classification_network,
    build_pretext_network,
    build_segmentation_network,
    freeze_group,
    group_parameters,
    imagenet_encoder_layout,
    unfreeze_group,
)
from selfconfig.plans import NetworkPlan

from .conftest import plain_plan


def _networks():
    yield "unet3d", build_segmentation_network(plain_plan(3))
    yield "unet2d-bn", build_segmentation_network(plain_plan(2, norm="batch"))
    yield "classifier", build_classification_network(plain_plan(2, hidden=6))
    yield "pretext", build_pretext_network(plain_plan(3), 3)
    for kind in ("efficientnet_lite0", "resnet18"):
        plan = NetworkPlan(dim=2, in_channels=1, num_classes=2, encoder=imagenet_encoder_layout(kind, 2))
        yield f"{kind}-unet", build_segmentation_network(plan)
        yield f"{kind}-cls", build_classification_network(plan)


@pytest.mark.parametrize("name,net", list(_networks()), ids=lambda v: v if isinstance(v, str) else "")
def test_groups_partition_the_state_dict(name, net):
    groups = net.parameter_groups()
    keys = list(net.state_dict().keys())
    parts = [k for g in ("encoder", "decoder", "hidden", "head") for k in groups.get(g, [])]
    assert sorted(parts) == sorted(keys)  # every key exactly once
    assert len(parts) == len(set(parts))
    assert groups["stem"] and set(groups["stem"]) <= set(groups["encoder"])
    assert all(k.startswith("encoder.stem.") for k in groups["stem"])
    assert groups["head"]
    assert ("decoder" in groups) == name.endswith(("unet", "unet3d", "unet2d-bn"))


def test_stem_is_the_first_conv_block():
    net = build_segmentation_network(plain_plan(3))
    assert net.parameter_groups()["stem"] == [
        "encoder.stem.conv.weight", "encoder.stem.conv.bias", "encoder.stem.norm.weight", "encoder.stem.norm.bias"]


def test_freeze_and_unfreeze_encoder():
    net = build_segmentation_network(plain_plan(2))
    n = freeze_group(net, "encoder")
    assert n == len(group_parameters(net, "encoder")) > 0
    frozen = {name for name, p in net.named_parameters() if not p.requires_grad}
    assert frozen == set(k for k in net.parameter_groups()["encoder"] if k in dict(net.named_parameters()))
    loss = net(torch.randn(1, 1, 32, 32))[0].sum()
    loss.backward()
    assert net.encoder.stem.conv.weight.grad is None and net.seg_layers[-1].weight.grad is not None
    unfreeze_group(net, "encoder")
    assert all(p.requires_grad for p in net.parameters())
