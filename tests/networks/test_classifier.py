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


def test_centre_pooling_tells_the_centre_from_the_border():
    """``avg_centre``: the whole map's average, then its centre's. A blob in the centre and the same
    blob at the border have the same global average; only the centre half tells them apart."""
    from selfconfig.networks.blocks import centre_region, global_pool

    centre, border = torch.zeros(1, 1, 8, 8, 8), torch.zeros(1, 1, 8, 8, 8)
    centre[..., 3:5, 3:5, 3:5] = 1.0
    border[..., 0:2, 0:2, 0:2] = 1.0
    assert centre_region(centre).shape == (1, 1, 4, 4, 4)
    assert centre_region(torch.zeros(1, 1, 1, 3, 5)).shape == (1, 1, 1, 1, 2)
    a, b = global_pool("avg_centre", centre), global_pool("avg_centre", border)
    assert a.shape == (1, 2)
    assert a[0, 0] == b[0, 0] == global_pool("avg", centre)[0, 0]
    assert a[0, 1] == pytest.approx(8 / 64) and b[0, 1] == 0.0


@pytest.mark.parametrize("dim,shape", [(2, (32, 32)), (3, (16, 16, 16))])
def test_classifier_with_centre_pooling(dim, shape):
    import dataclasses

    plan = plain_plan(dim, num_classes=2)
    plan = dataclasses.replace(plan, head=dataclasses.replace(plan.head, pooling="avg_centre"))
    net = build_classification_network(plan)
    assert net.head.in_features == 32  # 16 channels, averaged over the whole map and over its centre
    assert net(torch.randn(2, 1, *shape)).shape == (2, 2)


def test_unknown_pooling_is_a_plans_error():
    import dataclasses

    from selfconfig.errors import PlansError

    plan = plain_plan(2)
    with pytest.raises(PlansError, match="avg_centre"):
        build_classification_network(dataclasses.replace(plan, head=dataclasses.replace(plan.head, pooling="centre")))


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
