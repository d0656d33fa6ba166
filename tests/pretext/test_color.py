"""SurrogateColor: conditional-GAN colourisation on the unlabeled pool, then transfer of the
generator's encoder + decoder into the segmenter (encoder only into a classifier)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from selfconfig.errors import IncompatibleDatasetError
from selfconfig.plans import ConfigurationPlan, DecoderPlan, EncoderPlan, NetworkPlan
from selfconfig.pretext.color import ColorizationPretext, PatchDiscriminator, luminance, rgb_channels, rgb_from_chroma
from selfconfig.training.config import TrainingConfig
from trainers.surrogate_color import SurrogateColor

PRETRAIN_HP = {"pretrain_epochs": 2, "pretrain_iters_per_epoch": 3, "val_iters": 1, "num_workers": 0,
               "checkpoint_every": 1, "precision": "fp32"}


# ---------------------------------------------------------------------------- unit (no dataset)
def _fake_data(channel_names=None, dim: int = 2, patch=(16, 16)):
    """Just enough of a DatasetContext for the task: a 2-stage plain U-Net on RGB patches."""
    channel_names = channel_names or {"0": "RGB"}
    in_ch = sum(3 if n.lower() == "rgb" else 1 for n in channel_names.values())
    net = NetworkPlan(dim=dim, in_channels=in_ch, num_classes=2,
                      encoder=EncoderPlan(features_per_stage=[4, 8], kernel_sizes=[[3] * dim] * 2,
                                          strides=[[1] * dim, [2] * dim], n_conv_per_stage=[1, 1]),
                      decoder=DecoderPlan(n_conv_per_stage=[1], deep_supervision=True))
    cfg = ConfigurationPlan(name="2d" if dim == 2 else "3d_fullres", dim=dim, spacing=[1.0] * dim,
                            median_shape=list(patch), patch_size=list(patch), batch_size=2,
                            normalization=["rgb"], network=net)
    plans = SimpleNamespace(channel_names=channel_names)
    return SimpleNamespace(config=cfg, plans=plans, dataset="FAKE", configuration=cfg.name, task="segmentation")


def _task(precision="fp32", **kw) -> ColorizationPretext:
    hp = TrainingConfig(precision=precision, pretrain_epochs=1, pretrain_iters_per_epoch=2)
    return ColorizationPretext(_fake_data(**kw), hp, torch.device("cpu"), seed=3)


def test_gray_is_luminance_replicated_into_the_rgb_slots():
    assert rgb_channels({"0": "RGB"}) == slice(0, 3)
    assert rgb_channels({"0": "MR", "1": "rgb"}) == slice(1, 4)
    assert rgb_channels({"0": "CT"}) is None
    x = torch.rand(2, 3, 8, 8)
    gray = luminance(x)
    expected = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(gray[:, 0], expected)
    task = _task(channel_names={"0": "MR", "1": "RGB"})
    x = torch.rand(2, 4, 16, 16)
    inp, g, colour = task.make_inputs(x)
    assert inp.shape == x.shape and g.shape == (2, 1, 16, 16) and torch.equal(colour, x[:, 1:4])
    assert torch.equal(inp[:, 0], x[:, 0])  # other channels pass through
    expected_gray = luminance(x[:, 1:4])[:, 0]
    for c in (1, 2, 3):
        assert torch.allclose(inp[:, c], expected_gray)


def test_chrominance_and_gray_give_back_the_colour():
    rgb = torch.rand(2, 3, 5, 6)
    y = luminance(rgb)
    cb, cr = (rgb[:, 2:3] - y) / 1.772, (rgb[:, 0:1] - y) / 1.402  # full-range YCbCr
    assert torch.allclose(rgb_from_chroma(y, torch.cat([cb, cr], 1)), rgb, atol=1e-5)
    assert cb.abs().max() <= 0.5 and cr.abs().max() <= 0.5  # the range 0.5 tanh(.) covers
    assert torch.equal(rgb_from_chroma(y, torch.zeros(2, 2, 5, 6)), y.expand(-1, 3, -1, -1))  # no chroma: gray
    # any chrominance keeps the luminance: the generator only decides the colour
    assert torch.allclose(luminance(rgb_from_chroma(y, torch.randn(2, 2, 5, 6) * 0.3)), y, atol=1e-3)


def test_generator_is_the_target_unet_predicting_chrominance_around_the_gray_input():
    task = _task()
    net = task.generator
    assert net.seg_layers[-1].out_channels == 2 and not net.deep_supervision
    x = torch.rand(2, 3, 16, 16) * 0.5 + 0.25  # mid-range colours: nothing is clipped
    inp, gray, _ = task.make_inputs(x)
    # the output layer starts at zero chrominance: the generator begins at the gray input
    assert torch.equal(task.colorize(inp, gray), gray.expand(-1, 3, -1, -1))
    torch.nn.init.normal_(net.seg_layers[-1].weight, 0.0, 0.05)
    out = task.colorize(inp, gray)
    assert out.shape == (2, 3, 16, 16) and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(luminance(out), gray, atol=1e-3) and not torch.allclose(out, gray.expand_as(out))
    # same encoder + decoder layout as the segmenter the plan builds
    from selfconfig.networks import build_segmentation_network

    target = build_segmentation_network(task.data.config.network).state_dict()
    state = task.transferable_state()
    for k, v in target.items():
        if not k.startswith("seg_layers."):
            assert state[k].shape == v.shape, k
    assert state.keys() == target.keys()
    assert state["seg_layers.0.weight"].shape[0] == 2  # Cb, Cr (the plan's segmenter has its own head)
    assert task.transfer_groups("segmentation") == ("encoder", "decoder")
    assert task.transfer_groups("classification") == ("encoder",)


@pytest.mark.parametrize("dim,patch,out", [(2, (32, 32), (7, 7)), (3, (16, 32, 32), (3, 7, 7)),
                                           (3, (2, 16, 16), (1, 3, 3))])
def test_patch_discriminator_is_dimension_generic(dim, patch, out):
    d = PatchDiscriminator(dim, 4, patch_size=patch)
    convs = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    assert [c.out_channels for c in convs] == [64, 128, 1] and convs[0].in_channels == 4
    assert d(torch.rand(2, 4, *patch)).shape == (2, 1, *out)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_step_updates_both_networks_and_reports_metrics(precision):
    task = _task(precision)
    assert task.lr == 2e-4 and task.opt_g.defaults["betas"] == (0.5, 0.999)
    assert task.opt_d.defaults["betas"] == (0.5, 0.999)
    g0 = {k: v.clone() for k, v in task.generator.state_dict().items()}
    d0 = {k: v.clone() for k, v in task.discriminator.state_dict().items()}
    from selfconfig.training.loop import LoopState

    logs = task.train_step({"data": torch.rand(2, 3, 16, 16)}, LoopState(epochs=1, iters_per_epoch=2))
    assert set(logs) >= {"loss", "l1", "g_adv", "d_loss", "accuracy", "lr"}
    assert all(math.isfinite(v) for v in logs.values()) and 0 <= logs["accuracy"] <= 1
    assert math.isclose(logs["loss"], logs["g_adv"] + 100 * logs["l1"], rel_tol=1e-4)
    assert any(not torch.equal(v, task.generator.state_dict()[k]) for k, v in g0.items())
    assert any(not torch.equal(v, task.discriminator.state_dict()[k]) for k, v in d0.items())
    assert all(p.requires_grad for p in task.discriminator.parameters())
    val = task.validation_end([task.validation_step({"data": torch.rand(2, 3, 16, 16)})])
    assert val["val_neg_l1"] == -val["val_l1"] and 0 <= val["val_accuracy"] <= 1
    assert task.monitor == "val_neg_l1"


def test_state_dict_round_trip_and_spatial_only_augmentation():
    task = _task()
    aug = task.augmenter.config
    assert aug.spatial_enabled and aug.mirror_enabled
    assert not any(getattr(aug, f"{t}_enabled") for t in ("noise", "blur", "brightness", "contrast", "lowres",
                                                            "gamma"))
    d = task.state_dict()
    assert set(d["networks"]) == {"generator", "discriminator"} and set(d["optimizers"]) == {"opt_g", "opt_d"}
    assert {"rng", "augmenter"} <= set(d)
    other = _task()
    torch.nn.init.normal_(other.generator.seg_layers[-1].weight)  # differs from the fresh zeros
    other.load_state_dict(d)
    assert torch.equal(other.generator.seg_layers[-1].weight, task.generator.seg_layers[-1].weight)


def test_check_compatible_refuses_gray_in_one_line():
    with pytest.raises(IncompatibleDatasetError) as e:
        ColorizationPretext.check_compatible(_fake_data({"0": "CT"}, dim=3, patch=(8, 16, 16)))
    msg = str(e.value)
    assert "\n" not in msg and "SurrogateColor needs colour (RGB) images" in msg and "FAKE" in msg
    assert "CT" in msg and "SurrogateFlip" in msg
    ColorizationPretext.check_compatible(_fake_data())  # RGB: fine


# ---------------------------------------------------------------------------- end to end
def _history_finite(history: dict, keys) -> None:
    for k in keys:
        assert history.get(k) and all(math.isfinite(v) for v in history[k]), k


def test_pretraining_writes_checkpoint_and_progress(planned, roots):
    from selfconfig.pretext.api import run_pretraining
    from selfconfig.pretext.run import load_pretrained

    planned("TCOL", task="segmentation", dim=2, rgb=True, shape=(32, 32), n_classes=2)
    res = run_pretraining("SurrogateColor", "TCOL", hyperparameters=PRETRAIN_HP, roots=roots, progress=False)
    assert res.trained and res.checkpoint.is_file() and res.checkpoint.name == "checkpoint.pt"
    assert (res.checkpoint.parent / "progress.png").stat().st_size > 0
    _history_finite(res.history, ["train_loss", "train_l1", "train_g_adv", "train_d_loss", "train_accuracy",
                                  "val_l1", "val_accuracy", "val_neg_l1"])
    assert len(res.history["train_loss"]) == 2
    # the summary judges the generator by its held-out L1 colour error against the gray image's, and
    # says that its accuracy is the discriminator's (high = the generator is easy to catch)
    err = res.summary["held_out_error"]
    assert err["name"] == "L1 colour error" and 0 <= err["value"] <= 1 and 0 < err["no_learning"] <= 1
    assert res.summary["accuracy_name"].startswith("discriminator")
    # a folder made by the earlier RGB formulation (its settings name none) is refused, not reused
    from selfconfig.errors import ConfigurationError
    from selfconfig.utils import read_json, write_json

    settings_file = res.checkpoint.parent / "settings.json"
    settings = read_json(settings_file)
    assert settings["formulation"] == "chroma"
    write_json(settings_file, {k: v for k, v in settings.items() if k != "formulation"})
    with pytest.raises(ConfigurationError, match=r"formulation not recorded, an older version"):
        run_pretraining("SurrogateColor", "TCOL", hyperparameters=PRETRAIN_HP, roots=roots, progress=False)
    write_json(settings_file, settings)
    ckpt = load_pretrained(res.checkpoint)
    assert ckpt["pretrained"]["groups"] == {"segmentation": ["encoder", "decoder"], "classification": ["encoder"]}
    assert ckpt["pretrained"]["state_dict"]["seg_layers.0.weight"].shape[0] == 2
    # the trained generator colours real pool patches: (B, 3, *patch) in [0, 1]
    from selfconfig.data.sampler import PatchSampler
    from selfconfig.pretext.run import unlabeled_pool
    from selfconfig.training.context import open_dataset

    data = open_dataset("TCOL", roots=roots)
    task = ColorizationPretext(data, TrainingConfig.from_dict(ckpt["hyperparameters"]), torch.device("cpu"))
    task.load_state_dict(torch.load(res.checkpoint.parent / "checkpoint_final.pt", weights_only=True)["module"])
    patch = data.config.patch_size
    batch = PatchSampler(unlabeled_pool(data), patch, 2, data.task, oversample=0.0, with_labels=False).sample(0)
    x = torch.from_numpy(batch["data"])
    assert x.shape == (2, 3, *patch) and 0 <= x.min() and x.max() <= 1  # RGB is normalised to 0-1
    with torch.no_grad():
        inp, gray, _ = task.make_inputs(x)
        out = task.colorize(inp, gray)
    assert out.shape == (2, 3, *patch) and out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()


def test_transfer_into_segmenter_copies_encoder_and_decoder(planned, roots, fast_hp):
    from selfconfig.training.api import train
    from selfconfig.training.context import open_dataset

    planned("TCOL", task="segmentation", dim=2, rgb=True, shape=(32, 32), n_classes=3)  # 3 classes != 2 chroma
    hp = {**fast_hp, "epochs": 1, "final_validation": False, "pretrain_epochs": 1, "pretrain_iters_per_epoch": 2}
    res = train("SurrogateColor", "TCOL", hyperparameters=hp, roots=roots, progress=False)
    assert (res.run_dir / "checkpoint_final.pt").is_file()
    init = json.loads((res.run_dir / "initialization.json").read_text())
    assert init["strategy"] == "SurrogateColor" and "encoder+decoder" in init["init"]
    rep = init["transfer"]
    target = SurrogateColor(TrainingConfig()).build_network(open_dataset("TCOL", roots=roots))
    groups = target.parameter_groups()
    assert set(rep["copied"]) == set(groups["encoder"]) | set(groups["decoder"])
    assert not rep["missing"] and not rep["unexpected"]
    assert not any(k.startswith("seg_layers.") for k in rep["copied"])
    assert any(s.startswith("seg_layers.") for s in rep["skipped"])


def test_classification_transfers_encoder_only(planned, roots, fast_hp):
    from selfconfig.training.api import train

    planned("CCOL", task="classification", dim=2, rgb=True, shape=(32, 32))
    hp = {**fast_hp, "epochs": 1, "final_validation": False, "pretrain_epochs": 1, "pretrain_iters_per_epoch": 2}
    res = train("SurrogateColor", "CCOL", hyperparameters=hp, roots=roots, progress=False)
    rep = json.loads((res.run_dir / "initialization.json").read_text())["transfer"]
    assert rep["groups"] == ["encoder"] and rep["copied"] and not rep["missing"]
    from selfconfig.training.context import open_dataset

    target = SurrogateColor(TrainingConfig()).build_network(open_dataset("CCOL", roots=roots))
    assert set(rep["copied"]) == set(target.parameter_groups()["encoder"])


def test_gray_dataset_is_refused_by_api_and_cli(planned, roots, capsys):
    from selfconfig.cli import train as train_cli
    from selfconfig.cli.common import run
    from selfconfig.pretext.api import run_pretraining
    from selfconfig.training.api import train

    planned("GRAY", task="segmentation", dim=2, shape=(32, 32))  # channel "MR"
    with pytest.raises(IncompatibleDatasetError, match="GRAY has channels MR"):
        train("SurrogateColor", "GRAY", hyperparameters={"num_workers": 0}, roots=roots, progress=False)
    with pytest.raises(IncompatibleDatasetError):
        run_pretraining("SurrogateColor", "GRAY", hyperparameters={"num_workers": 0}, roots=roots, progress=False)
    capsys.readouterr()
    code = run(train_cli.main, ["-tr", "SurrogateColor", "-d", "GRAY", "--no-progress"], prog="selfconfig_train")
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("selfconfig_train:")]
    assert len(lines) == 1 and "needs colour (RGB) images" in lines[0] and "Traceback" not in err
    assert not (roots.results / "GRAY").exists()


@pytest.mark.slow
def test_resumed_pretraining_equals_uninterrupted(planned, roots, tmp_path, monkeypatch):
    """Stopped at the start of epoch 2 (after checkpoint_latest of epoch 1), then resumed: same
    generator, discriminator, optimizer states and history as 2 epochs in one go (fp32)."""
    from selfconfig.pretext.run import pretrain
    from selfconfig.training.context import open_dataset

    planned("TCOL", task="segmentation", dim=2, rgb=True, shape=(32, 32), n_classes=2)
    hp = replace(TrainingConfig.for_device("cpu"), **{**PRETRAIN_HP, "pretrain_iters_per_epoch": 2})
    cpu = torch.device("cpu")
    ref_roots = type(roots)(roots.raw, roots.preprocessed, tmp_path / "ref_results")
    ref = pretrain(SurrogateColor, open_dataset("TCOL", roots=ref_roots), hp, cpu, progress=False)

    data = open_dataset("TCOL", roots=roots)
    original = ColorizationPretext.train_step

    def stop_at_epoch_two(self, batch, state):
        if state.global_step == 2:
            raise KeyboardInterrupt
        return original(self, batch, state)

    with monkeypatch.context() as m:
        m.setattr(ColorizationPretext, "train_step", stop_at_epoch_two)
        with pytest.raises(KeyboardInterrupt):
            pretrain(SurrogateColor, data, hp, cpu, progress=False)
    out = data.pretrain_dir("SurrogateColor")
    latest = torch.load(out / "checkpoint_latest.pt", weights_only=True)
    assert latest["loop"]["epoch"] == 1 and not (out / "checkpoint.pt").exists()
    resumed = pretrain(SurrogateColor, data, hp, cpu, progress=False)
    assert resumed.trained

    a = torch.load(ref.checkpoint.parent / "checkpoint_final.pt", weights_only=True)
    b = torch.load(out / "checkpoint_final.pt", weights_only=True)
    for net in ("generator", "discriminator"):
        na, nb = a["module"]["networks"][net], b["module"]["networks"][net]
        differ = [k for k in na if not torch.equal(na[k], nb[k])]
        assert not differ, f"{net}: {differ[:3]}"
    for opt in ("opt_g", "opt_d"):
        sa, sb = a["module"]["optimizers"][opt]["state"], b["module"]["optimizers"][opt]["state"]
        assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    for k in ("train_loss", "train_l1", "train_accuracy", "val_l1", "val_accuracy"):
        assert a["loop"]["history"][k] == b["loop"]["history"][k], k
