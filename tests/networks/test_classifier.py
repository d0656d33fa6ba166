from __future__ import annotations

import pytest
import torch

from selfconfig.networks import (
    build_classification_network,
    build_pretext_network,
    build_segmentation_network,
    imagenet_encoder_layout,
)
from selfconfig.plans import NetworkPlan

from .conftest import plain_plan


@pytest.mark.parametrize("dim,shape", [(2, (32, 32)), (3, (16, 16, 16))])
def test_classifier_shapes(dim, shape):
    net = build_classification_network(plain_plan(dim, num_classes=5))
    assert net(torch.randn(2, 1, *shape)).shape == (2, 5)
    assert net.head.out_features == 5 and net.head.in_features == 16
    assert net.hidden is None


def test_classifier_hidden_head():
    net = build_classification_network(plain_plan(2, num_classes=4, hidden=7))
    assert net.hidden[0].out_features == 7 and net.head.in_features == 7
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 4)
    groups = net.parameter_groups()
    assert set(groups["hidden"]) == {"hidden.0.weight", "hidden.0.bias"}
    assert set(groups["head"]) == {"head.weight", "head.bias"}


def test_pretext_network_shares_the_encoder_layout(plan3d):
    pretext = build_pretext_network(plan3d, num_outputs=3)
    unet = build_segmentation_network(plan3d)
    assert pretext(torch.randn(2, 1, 16, 16, 16)).shape == (2, 3)
    assert pretext.head.out_features == 3
    assert pretext.encoder.state_dict().keys() == unet.encoder.state_dict().keys()


def test_efficientnet_classifier_uses_1280_head_features():
    plan = NetworkPlan(dim=2, in_channels=3, num_classes=2, encoder=imagenet_encoder_layout("efficientnet_lite0", 2))
    net = build_classification_network(plan)
    assert net.head.in_features == 1280
    assert net.features(torch.randn(2, 3, 32, 32)).shape == (2, 1280)


@pytest.mark.parametrize("kind,features", [("resnet18", 512), ("resnet50", 2048)])
def test_resnet_classifier_features(kind, features):
    plan = NetworkPlan(dim=2, in_channels=1, num_classes=2, encoder=imagenet_encoder_layout(kind, 2))
    net = build_classification_network(plan)
    assert net.head.in_features == features
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 2)
