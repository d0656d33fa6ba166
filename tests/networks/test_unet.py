from __future__ import annotations

import pytest
import torch

from selfconfig.errors import PlansError
from selfconfig.networks import build_segmentation_network, decoder_stage_count, imagenet_encoder_layout
from selfconfig.plans import NetworkPlan

from .conftest import plain_plan


def test_unet_3d_deep_supervision_shapes(plan3d):
    net = build_segmentation_network(plan3d)
    out = net(torch.randn(2, 1, 16, 16, 16))
    assert isinstance(out, list)
    assert [tuple(o.shape) for o in out] == [(2, 3, 16, 16, 16), (2, 3, 8, 8, 8)]
    assert net.deep_supervision_scales() == [[1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]


def test_unet_2d_switch_off_deep_supervision(plan2d):
    net = build_segmentation_network(plan2d)
    x = torch.randn(2, 1, 32, 32)
    net.eval()
    with torch.no_grad():
        full = net(x)[0]
        net.deep_supervision = False
        single = net(x)
    assert isinstance(single, torch.Tensor) and single.shape == (2, 3, 32, 32)
    assert torch.allclose(full, single)


def test_unet_without_deep_supervision_in_plan():
    net = build_segmentation_network(plain_plan(2, deep_supervision=False, norm="batch"))
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 3, 32, 32)


def test_unet_encoder_interface(plan3d):
    net = build_segmentation_network(plan3d)
    enc = net.encoder
    assert enc.out_channels == [4, 8, 16]
    assert enc.strides == [[1, 1, 1], [2, 2, 2], [2, 2, 2]]
    assert isinstance(enc.stem, torch.nn.Module) and isinstance(enc.stem.conv, torch.nn.Conv3d)
    feats = enc(torch.randn(1, 1, 16, 16, 16))
    assert [tuple(f.shape) for f in feats] == [(1, 4, 16, 16, 16), (1, 8, 8, 8, 8), (1, 16, 4, 4, 4)]
    # stage 0 = stem + one more conv block; the other stages have two each
    assert len(enc.stages[0]) == 1 and len(enc.stages[1]) == 2


def test_anisotropic_plain_unet():
    plan = plain_plan(3)
    plan.encoder.kernel_sizes = [[1, 3, 3], [3, 3, 3], [3, 3, 3]]
    plan.encoder.strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
    net = build_segmentation_network(plan)
    out = net(torch.randn(1, 1, 8, 16, 16))
    assert [tuple(o.shape) for o in out] == [(1, 3, 8, 16, 16), (1, 3, 8, 8, 8)]


def test_input_not_divisible_is_explained(plan2d):
    net = build_segmentation_network(plan2d)
    with pytest.raises(ValueError, match="divisible by"):
        net(torch.randn(1, 1, 30, 32))


def test_inconsistent_plan_raises():
    plan = plain_plan(3)
    plan.encoder.strides = plan.encoder.strides[:2]
    with pytest.raises(PlansError, match="strides"):
        build_segmentation_network(plan)
    plan = plain_plan(3)
    plan.decoder.n_conv_per_stage = [2]
    with pytest.raises(PlansError, match="n_conv_per_stage"):
        build_segmentation_network(plan)


@pytest.mark.parametrize("kind", ["efficientnet_lite0", "resnet18"])
def test_imagenet_unet_2d_full_resolution(kind):
    plan = NetworkPlan(dim=2, in_channels=1, num_classes=2, encoder=imagenet_encoder_layout(kind, 2))
    assert decoder_stage_count(plan.encoder) == 5
    net = build_segmentation_network(plan)
    out = net(torch.randn(1, 1, 64, 64))
    assert [o.shape[-1] for o in out] == [64, 32, 16, 8, 4]
    assert all(o.shape[:2] == (1, 2) for o in out)


def test_imagenet_unet_3d_anisotropic_strides():
    layout = imagenet_encoder_layout("efficientnet_lite0", 3)
    layout.strides = [[1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    plan = NetworkPlan(dim=3, in_channels=1, num_classes=2, encoder=layout)
    net = build_segmentation_network(plan)
    net.deep_supervision = False
    assert net(torch.randn(2, 1, 8, 32, 32)).shape == (2, 2, 8, 32, 32)


def test_imagenet_plan_with_wrong_features_raises():
    layout = imagenet_encoder_layout("resnet18", 2)
    layout.features_per_stage = [32, 64, 128, 256, 512]
    with pytest.raises(PlansError, match="resnet18"):
        build_segmentation_network(NetworkPlan(dim=2, in_channels=1, num_classes=2, encoder=layout))


def test_decoder_stage_count():
    assert decoder_stage_count(plain_plan(3).encoder) == 2
    plan = plain_plan(2)
    plan.encoder.strides = [[2, 2], [2, 2], [2, 2]]
    assert decoder_stage_count(plan.encoder) == 3
    plan.decoder.n_conv_per_stage = [2, 2, 1]
    out = build_segmentation_network(plan)(torch.randn(1, 1, 32, 32))
    assert [o.shape[-1] for o in out] == [32, 16, 8]
