"""SurrogateWGAN: the WGAN-GP pretext task, its generator, penalty, fading, transfer and resume."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from selfconfig.errors import IncompatibleDatasetError
from selfconfig.networks import (
    build_classification_network,
    build_segmentation_network,
    imagenet_encoder_layout,
    transfer_weights,
)
from selfconfig.plans import EncoderPlan, HeadPlan, NetworkPlan
from selfconfig.pretext.gan_parts import (
    PatchGenerator,
    fade,
    gradient_penalty,
    lowpass,
    progressive_phase,
    resolution_levels,
    separation_accuracy,
)
from selfconfig.pretext.wgan import WGANPretext
from selfconfig.training.config import TrainingConfig
from selfconfig.training.loop import LoopState
from trainers.surrogate_wgan import SurrogateWGAN

FAST = {"pretrain_epochs": 2, "pretrain_iters_per_epoch": 3, "val_iters": 1, "num_workers": 0,
        "checkpoint_every": 1, "precision": "fp32"}
FINETUNE = {**FAST, "epochs": 1, "iters_per_epoch": 2, "final_validation": False}


def _plan(dim: int, features, strides, kernels=None, hidden: int = 0, channels: int = 1) -> NetworkPlan:
    kernels = kernels or [[3] * dim for _ in features]
    enc = EncoderPlan("plain", list(features), kernels, strides, [1] * len(features))
    return NetworkPlan(dim, channels, 3, enc, head=HeadPlan(hidden_features=hidden))


def _fake_data(plan: NetworkPlan, patch) -> SimpleNamespace:
    """What WGANPretext reads of a DatasetContext, without files."""
    return SimpleNamespace(config=SimpleNamespace(network=plan, patch_size=list(patch), dim=plan.dim))


PLAN3D = _plan(3, [4, 8, 16], [[1, 1, 1], [1, 2, 2], [2, 2, 2]], [[1, 3, 3], [3, 3, 3], [3, 3, 3]])
PLAN2D = _plan(2, [4, 8, 8, 16], [[1, 1], [2, 2], [2, 2], [2, 2]])


# ---------------------------------------------------------------------------------- generator
@pytest.mark.parametrize("plan,patch", [
    (PLAN3D, (16, 16, 16)),
    (PLAN3D, (10, 20, 18)),  # odd sizes: the encoder rounds up, the generator crops
    (PLAN2D, (64, 48)),
    (PLAN2D, (30, 44)),
    (_plan(2, [8, 16], [[2, 2], [2, 2]]), (32, 32)),  # strided first stage (ImageNet-like)
])
def test_generator_output_has_the_patch_shape(plan, patch):
    torch.manual_seed(0)
    gen = PatchGenerator(plan, patch, latent_dim=16)
    z = gen.sample_latent(3, torch.Generator().manual_seed(0))
    x = gen(z)
    assert tuple(x.shape) == (3, plan.in_channels, *patch)
    assert torch.isfinite(x).all() and x.std() > 0
    critic = build_classification_network(replace(plan, num_classes=1))
    assert tuple(critic(x).shape) == (3, 1)
    # the bottleneck is the last encoder stage's output for this patch size
    feats = critic.encoder(torch.zeros(1, plan.in_channels, *patch))
    assert gen.bottleneck_shape == list(feats[-1].shape[1:])


def test_generator_mirrors_the_encoder_features():
    gen = PatchGenerator(PLAN2D, (64, 48), latent_dim=8)
    ups = [s["up"] for s in gen.stages]
    assert [u.in_channels for u in ups] == [16, 8, 8]
    assert [u.out_channels for u in ups] == [8, 8, 4]
    assert [list(u.stride) for u in ups] == [[2, 2]] * 3
    assert gen.out.out_channels == 1


# ---------------------------------------------------------------------------------- WGAN-GP
def test_gradient_penalty_of_a_linear_critic_is_exact():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 1))
    real, fake = torch.randn(5, 2, 4, 4), torch.randn(5, 2, 4, 4)
    gp = gradient_penalty(critic, real, fake, torch.rand(5))
    w_norm = critic[1].weight.norm()
    assert torch.allclose(gp, (w_norm - 1) ** 2, atol=1e-5)
    gp.backward()  # double backward reaches the critic's weights
    assert critic[1].weight.grad is not None and torch.isfinite(critic[1].weight.grad).all()


@pytest.mark.parametrize("plan,patch", [(PLAN3D, (16, 16, 16)), (PLAN2D, (32, 32))])
def test_gradient_penalty_of_the_critic_is_finite(plan, patch):
    torch.manual_seed(0)
    critic = build_classification_network(replace(plan, num_classes=1))
    real, fake = torch.randn(2, 1, *patch), torch.randn(2, 1, *patch)
    gp = gradient_penalty(critic, real, fake, torch.rand(2))
    assert math.isfinite(float(gp.detach())) and float(gp.detach()) >= 0
    gp.backward()
    grads = [p.grad for p in critic.encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_separation_accuracy():
    assert separation_accuracy(torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert separation_accuracy(torch.tensor([0.0, 1.0]), torch.tensor([3.0, 4.0])) == 0.0
    # threshold (2 + 1) / 2 = 1.5: real 0.5 and fake 2.0 are on the wrong side
    assert separation_accuracy(torch.tensor([3.5, 0.5]), torch.tensor([0.0, 2.0])) == 0.5


# ---------------------------------------------------------------------------------- fading
def test_progressive_schedule():
    levels = resolution_levels([[1, 1, 1], [1, 2, 2], [2, 4, 4], [4, 8, 8]], (16, 16, 16), min_size=4)
    assert levels == [[1, 1, 1], [1, 2, 2], [2, 4, 4]]  # 16 / 8 = 2 < 4 voxels: not used
    total = 100  # growth in the first 50 steps: 4 slots of 12.5 steps for 3 levels
    assert progressive_phase(0, total, 3) == (2, 0.0)
    assert progressive_phase(12, total, 3) == (2, 0.0)
    level, alpha = progressive_phase(18, total, 3)  # fading level 1 in
    assert level == 2 and alpha == pytest.approx((18 - 12.5) / 12.5)
    assert progressive_phase(30, total, 3) == (1, 0.0)
    assert progressive_phase(40, total, 3)[0] == 1 and progressive_phase(40, total, 3)[1] > 0
    assert progressive_phase(50, total, 3) == (0, 0.0)
    assert progressive_phase(99, total, 3) == (0, 0.0)
    assert progressive_phase(0, total, 1) == (0, 0.0)


def test_fade_blends_resolutions():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    levels = [[1, 1], [2, 2], [4, 4]]
    assert torch.equal(fade(x, levels, 0, 0.0), x)
    coarse = fade(x, levels, 2, 0.0)
    assert torch.equal(coarse, lowpass(x, [4, 4]))
    assert torch.allclose(coarse[..., :4, :4], x[..., :4, :4].mean(dim=(-2, -1), keepdim=True).expand(2, 1, 4, 4))
    half = fade(x, levels, 2, 0.5)
    assert torch.allclose(half, 0.5 * lowpass(x, [4, 4]) + 0.5 * lowpass(x, [2, 2]))
    assert torch.allclose(x.mean(dim=(-2, -1)), coarse.mean(dim=(-2, -1)))
    odd = torch.randn(1, 1, 5, 7, 9)
    assert lowpass(odd, [2, 2, 2]).shape == odd.shape


# ---------------------------------------------------------------------------------- the task
class _ProgressiveWGAN(WGANPretext):
    progressive = True
    progressive_min_size = 2
    n_critic = 2


def test_train_steps_update_critic_every_step_and_generator_every_n_critic():
    data = _fake_data(PLAN3D, (16, 16, 16))
    task = _ProgressiveWGAN(data, TrainingConfig(precision="fp32"), torch.device("cpu"), seed=3)
    assert task.levels == [[1, 1, 1], [1, 2, 2], [2, 4, 4]]
    d = task.state_dict()
    assert set(d["networks"]) == {"critic", "image_generator"} and set(d["optimizers"]) == {"opt_critic", "opt_generator"}
    assert "rng" in d
    # the critic is the target classifier less its output layer
    target = build_classification_network(PLAN3D)
    tsd, csd = target.state_dict(), task.critic.state_dict()
    enc = target.parameter_groups()["encoder"]
    assert enc and all(tsd[k].shape == csd[k].shape for k in enc)
    assert set(tsd) == set(csd) and csd["head.weight"].shape[0] == 1
    state = LoopState(epochs=1, iters_per_epoch=40)  # growth over 20 steps: slots of 5 steps
    batch = {"data": torch.randn(2, 1, 16, 16, 16)}
    snap = lambda m: [p.detach().clone() for p in m.parameters()]  # noqa: E731
    for step in range(4):
        c0, g0 = snap(task.critic), snap(task.image_generator)
        state.global_step = step
        logs = task.train_step(batch, state)
        assert {"loss", "wasserstein", "gp", "g_loss", "accuracy", "resolution_level"} <= set(logs)
        assert all(math.isfinite(v) for v in logs.values())
        assert any(not torch.equal(a, b) for a, b in zip(c0, snap(task.critic)))
        g_changed = any(not torch.equal(a, b) for a, b in zip(g0, snap(task.image_generator)))
        assert g_changed == (step % 2 == 1)
    assert logs["lr"] == pytest.approx(1e-4)  # constant schedule
    assert task.phase == (2, 0.0) and logs["resolution_level"] == 2  # the first slot holds the coarsest level
    out = task.validation_end([task.validation_step(batch), task.validation_step(batch)])
    assert set(out) == {"val_loss", "val_wasserstein", "val_accuracy"} and 0 <= out["val_accuracy"] <= 1


def test_hidden_layers_and_encoder_transfer_into_the_classifier():
    plan = _plan(2, [4, 8, 8, 16], [[1, 1], [2, 2], [2, 2], [2, 2]], hidden=8)
    task = WGANPretext(_fake_data(plan, (32, 32)), TrainingConfig(precision="fp32"), torch.device("cpu"))
    groups = task.transfer_groups("classification")
    target = build_classification_network(plan)
    declared = target.parameter_groups()
    assert groups == (("encoder", "hidden") if "hidden" in declared else ("encoder",))
    report = transfer_weights(task.transferable_state(), target, groups=groups)
    assert len(report.copied) == sum(len(declared[g]) for g in groups)
    assert task.transfer_groups("segmentation") == ("encoder",)
    seg = build_segmentation_network(plan)
    report = transfer_weights(task.transferable_state(), seg, groups=("encoder",))
    assert len(report.copied) == len(seg.parameter_groups()["encoder"])


# ---------------------------------------------------------------------------------- end to end
def _check_pretraining(roots, name: str) -> None:
    from selfconfig.pretext.api import run_pretraining
    from selfconfig.training.checkpoint import load_checkpoint

    res = run_pretraining("SurrogateWGAN", name, hyperparameters=FAST, roots=roots, progress=False)
    assert res.trained and res.checkpoint.is_file()
    assert (res.checkpoint.parent / "progress.png").is_file()
    h = res.history
    for key in ("train_loss", "train_wasserstein", "train_gp", "train_g_loss", "train_accuracy", "val_accuracy",
                "val_wasserstein"):
        assert len(h[key]) == 2 and all(math.isfinite(v) for v in h[key]), key
    ckpt = load_checkpoint(res.checkpoint)
    assert ckpt["pretrained"]["groups"] == {"segmentation": ["encoder"], "classification": ["encoder"]}


def _check_transfer(roots, name: str, build) -> None:
    from selfconfig.training.api import train
    from selfconfig.training.checkpoint import load_checkpoint
    from selfconfig.training.context import open_dataset
    from selfconfig.utils import read_json

    res = train("SurrogateWGAN", name, hyperparameters=FINETUNE, roots=roots, progress=False)
    init = read_json(res.run_dir / "initialization.json")
    assert init["strategy"] == "SurrogateWGAN" and init["init"] == "xavier + pre-trained encoder"
    network = build(open_dataset(name, roots=roots).config.network)
    encoder_keys = network.parameter_groups()["encoder"]
    assert sorted(init["transfer"]["copied"]) == sorted(encoder_keys)
    assert not init["transfer"]["missing"]
    final = load_checkpoint(res.run_dir / "checkpoint_final.pt")
    assert len(final["initialization"]["transfer"]["copied"]) == len(encoder_keys)


def test_pretrain_and_transfer_3d_classification(planned, roots):
    planned("WC", task="classification", dim=3, shape=(16, 16, 16), n_train=4, n_test=1, n_un=1)
    _check_pretraining(roots, "WC")
    _check_transfer(roots, "WC", build_classification_network)


def test_pretrain_and_transfer_2d_segmentation(planned, roots):
    planned("WS", task="segmentation", dim=2, shape=(1, 48, 48), n_train=4, n_test=1, n_un=1)
    _check_pretraining(roots, "WS")
    _check_transfer(roots, "WS", build_segmentation_network)


def test_resume_equals_uninterrupted(planned, roots, monkeypatch):
    from selfconfig.pretext.run import pretrain
    from selfconfig.training.checkpoint import load_checkpoint
    from selfconfig.training.context import open_dataset

    planned("WR", task="classification", dim=3, shape=(16, 16, 16), n_train=4, n_test=1, n_un=1)
    data = open_dataset("WR", roots=roots)
    hp = replace(SurrogateWGAN.default_hyperparameters("cpu"), **FAST)
    cpu = torch.device("cpu")
    out = data.pretrain_dir(SurrogateWGAN.name)

    def final_state():
        ck = load_checkpoint(out / "checkpoint_final.pt")
        return ck["module"], ck["loop"]["history"]

    pretrain(SurrogateWGAN, data, hp, cpu, progress=False)
    ref_module, ref_hist = final_state()

    original = WGANPretext.train_step
    interrupted = []

    def stop_at_epoch_two(self, batch, state):
        if state.global_step == hp.pretrain_iters_per_epoch and not interrupted:
            interrupted.append(state.global_step)
            raise KeyboardInterrupt
        return original(self, batch, state)

    monkeypatch.setattr(WGANPretext, "train_step", stop_at_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        pretrain(SurrogateWGAN, data, hp, cpu, progress=False, overwrite=True)
    assert interrupted and (out / "checkpoint_latest.pt").is_file() and not (out / "checkpoint.pt").exists()
    assert load_checkpoint(out / "checkpoint_latest.pt")["loop"]["epoch"] == 1
    pretrain(SurrogateWGAN, data, hp, cpu, progress=False, continue_training=True)
    module, hist = final_state()
    for net in ("critic", "image_generator"):
        for k, v in ref_module["networks"][net].items():
            assert torch.equal(v, module["networks"][net][k]), f"{net}.{k}"
    assert torch.equal(ref_module["rng"], module["rng"])
    for k in ("train_loss", "train_wasserstein", "val_accuracy", "val_wasserstein"):
        assert hist[k] == ref_hist[k], k


def test_batch_norm_encoders_are_refused(planned, roots):
    from selfconfig.planning import load_plans, plans_file
    from selfconfig.pretext.api import run_pretraining
    from selfconfig.training.context import open_dataset

    planned("WB", task="segmentation", dim=2, shape=(1, 32, 32), n_train=2, n_test=1, n_un=0)
    data = open_dataset("WB", roots=roots)
    WGANPretext.check_compatible(data)  # the default plain plan is fine
    path = plans_file(data.preprocessed_dir, data.plans.plans_name)
    plans = load_plans(data.preprocessed_dir)
    net = plans.configurations[data.configuration].network
    net.encoder = imagenet_encoder_layout("efficientnet_lite0", net.dim)
    plans.save(path)
    with pytest.raises(IncompatibleDatasetError) as err:
        run_pretraining("SurrogateWGAN", "WB", hyperparameters=FAST, roots=roots, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "batch norm" in msg and "plain" in msg and str(path) in msg
    plain_bn = open_dataset("WB", roots=roots)
    plain_bn.config.network.encoder = replace(data.config.network.encoder, norm="batch")
    with pytest.raises(IncompatibleDatasetError):
        SurrogateWGAN(TrainingConfig()).check_compatible(plain_bn)
