"""Resuming and extending runs: a resumed run ends with exactly the weights of an uninterrupted
one (fp32, so no bfloat16 rounding); a finished run asked for more epochs is extended; a run
folder is never silently reused."""

from __future__ import annotations

import signal

import pytest
import torch

from selfconfig.errors import ConfigurationError
from selfconfig.training.api import train
from selfconfig.training.modules import SupervisedModule

NAME = "TRES"


def _hp(fast_hp, **kw) -> dict:
    # fp32: bf16 autocast would make the comparison depend on rounding; checkpoint_every=1
    return {**fast_hp, "precision": "fp32", "checkpoint_every": 1, "final_validation": False, **kw}


def _final(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint_final.pt", weights_only=True)


def _assert_same_weights(a: dict, b: dict) -> None:
    wa, wb = a["module"]["network"], b["module"]["network"]
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"{len(differ)} of {len(wa)} tensors differ, e.g. {differ[:3]}"


def _run(roots, hp, **kw):
    return train("Scratch", NAME, fold=0, fraction=1.0, hyperparameters=hp, roots=roots, progress=False, **kw)


@pytest.fixture(params=["segmentation", "classification"])
def tiny(request, planned):
    kw = dict(dim=2, shape=(32, 32)) if request.param == "segmentation" else dict(dim=2, rgb=True, shape=(32, 32))
    planned(NAME, task=request.param, **kw)
    return request.param


def _uninterrupted(roots, results, hp) -> dict:
    """Train the reference run (2 epochs x 2 iterations in one go) under another results root."""
    ref_roots = type(roots)(roots.raw, roots.preprocessed, results)
    r = _run(ref_roots, hp)
    assert r.trained and len(r.history["train_loss"]) == 2
    return {"ckpt": _final(r.run_dir), "history": r.history}


def test_extend_after_one_epoch_equals_uninterrupted(tiny, roots, tmp_path, fast_hp):
    """B: 1 epoch, then --continue with 2 epochs == A: 2 epochs in one go. With the default poly
    schedule the learning rate of epoch 1 depends on the total number of epochs, so the
    schedule is made constant (poly_exponent 0): everything else (weights, optimizer momentum,
    sampler position, augmentation generator, RNG) must carry over exactly."""
    hp = _hp(fast_hp, poly_exponent=0.0)
    ref = _uninterrupted(roots, tmp_path / "ref_results", hp)

    first = _run(roots, {**hp, "epochs": 1})
    assert len(first.history["train_loss"]) == 1
    second = _run(roots, {**hp, "epochs": 2}, continue_training=True)
    assert second.trained
    ckpt = _final(second.run_dir)
    assert ckpt["loop"]["epoch"] == 2 and ckpt["loop"]["global_step"] == 4
    assert ckpt["hyperparameters"]["epochs"] == 2
    _assert_same_weights(ref["ckpt"], ckpt)
    assert second.history["train_loss"] == ref["history"]["train_loss"]


def test_stop_after_epoch_one_resumes_to_same_weights(tiny, roots, tmp_path, fast_hp, monkeypatch):
    """Stopped at the end of epoch 1 of 2 (KeyboardInterrupt from a callback), then --continue:
    same final weights as the uninterrupted run, default (poly) learning-rate schedule."""
    from selfconfig.training.loop import Callback
    from trainers.scratch import Scratch

    hp = _hp(fast_hp)
    ref = _uninterrupted(roots, tmp_path / "ref_results", hp)

    class StopAfterFirstEpoch(Callback):
        def on_epoch_end(self, module, state, logs):
            if state.epoch == 1:
                raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Scratch, "extra_callbacks", lambda self, run: [StopAfterFirstEpoch()])
        with pytest.raises(KeyboardInterrupt):
            _run(roots, hp)
    run_dir = roots.results / NAME / "Scratch__selfconfigPlans__2d" / "frac_1.0" / "fold_0"
    assert (run_dir / "checkpoint_latest.pt").is_file()
    assert not (run_dir / "checkpoint_final.pt").exists()
    latest = torch.load(run_dir / "checkpoint_latest.pt", weights_only=True)
    assert latest["loop"]["epoch"] == 1 and latest["loop"]["global_step"] == 2 and not latest["loop"]["finished"]

    resumed = _run(roots, hp, continue_training=True)
    assert resumed.trained
    assert not (run_dir / "checkpoint_latest.pt").exists()
    _assert_same_weights(ref["ckpt"], _final(run_dir))
    assert resumed.history["train_loss"] == ref["history"]["train_loss"]


def test_graceful_ctrl_c_mid_epoch_resumes_to_same_weights(planned, roots, tmp_path, fast_hp, monkeypatch):
    """SIGINT during epoch 2 (what Ctrl-C sends): the step finishes, checkpoint_latest is written
    mid-epoch, and --continue ends with the uninterrupted run's weights and history."""
    planned(NAME, task="segmentation", dim=2, shape=(32, 32))
    hp = _hp(fast_hp)
    ref = _uninterrupted(roots, tmp_path / "ref_results", hp)

    original = SupervisedModule.train_step

    def step_then_ctrl_c(self, batch, state):
        logs = original(self, batch, state)
        if state.global_step == 2:  # the first step of epoch 2
            signal.raise_signal(signal.SIGINT)
        return logs

    handler_before = signal.getsignal(signal.SIGINT)
    with monkeypatch.context() as m:
        m.setattr(SupervisedModule, "train_step", step_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            _run(roots, hp)
    assert signal.getsignal(signal.SIGINT) is handler_before  # the loop restored the previous handler
    run_dir = roots.results / NAME / "Scratch__selfconfigPlans__2d" / "frac_1.0" / "fold_0"
    latest = torch.load(run_dir / "checkpoint_latest.pt", weights_only=True)
    assert latest["loop"]["global_step"] == 3 and latest["loop"]["step_in_epoch"] == 1
    assert not (run_dir / "checkpoint_final.pt").exists()

    resumed = _run(roots, hp, continue_training=True)
    _assert_same_weights(ref["ckpt"], _final(run_dir))
    assert resumed.history["train_loss"] == ref["history"]["train_loss"]


def test_hard_interrupt_with_worker_resumes_to_same_weights(planned, roots, tmp_path, fast_hp, monkeypatch):
    """KeyboardInterrupt inside a step (a second Ctrl-C), with one background loader process:
    the resumed run reads batch 3 again and ends where the uninterrupted in-process run ends."""
    planned(NAME, task="segmentation", dim=2, shape=(32, 32))
    ref = _uninterrupted(roots, tmp_path / "ref_results", _hp(fast_hp, num_workers=0))
    hp = _hp(fast_hp, num_workers=1)

    original = SupervisedModule.train_step

    def interrupt_before_step_4(self, batch, state):
        if state.global_step == 3:
            raise KeyboardInterrupt
        return original(self, batch, state)

    with monkeypatch.context() as m:
        m.setattr(SupervisedModule, "train_step", interrupt_before_step_4)
        with pytest.raises(KeyboardInterrupt):
            _run(roots, hp)
    run_dir = roots.results / NAME / "Scratch__selfconfigPlans__2d" / "frac_1.0" / "fold_0"
    latest = torch.load(run_dir / "checkpoint_latest.pt", weights_only=True)
    assert latest["loop"]["global_step"] == 3 and latest["hyperparameters"]["num_workers"] == 1

    resumed = _run(roots, hp, continue_training=True)
    _assert_same_weights(ref["ckpt"], _final(run_dir))
    assert resumed.history["train_loss"] == ref["history"]["train_loss"]


def test_finished_run_is_extended_by_more_epochs(planned, roots, fast_hp):
    planned(NAME, task="segmentation", dim=2, shape=(32, 32))
    hp = _hp(fast_hp)
    first = _run(roots, hp)
    assert len(first.history["train_loss"]) == 2

    again = _run(roots, hp, continue_training=True)  # same epochs: nothing left to do
    assert not again.trained and len(again.history["train_loss"]) == 2

    longer = _run(roots, {**hp, "epochs": 3}, continue_training=True)
    assert longer.trained
    assert len(longer.history["train_loss"]) == 3
    assert longer.history["train_loss"][:2] == first.history["train_loss"]
    ckpt = _final(longer.run_dir)
    assert ckpt["loop"]["epoch"] == 3 and ckpt["loop"]["global_step"] == 6 and ckpt["loop"]["finished"]
    assert ckpt["hyperparameters"]["epochs"] == 3


def test_existing_run_needs_continue_or_overwrite(planned, roots, fast_hp, monkeypatch):
    planned(NAME, task="segmentation", dim=2, shape=(32, 32))
    hp = _hp(fast_hp)
    first = _run(roots, hp)
    before = (first.run_dir / "checkpoint_final.pt").stat().st_mtime_ns

    with pytest.raises(ConfigurationError, match="--continue") as e:
        _run(roots, hp)
    assert "--overwrite" in str(e.value) and "finished" in str(e.value)
    assert (first.run_dir / "checkpoint_final.pt").stat().st_mtime_ns == before  # untouched

    again = _run(roots, hp, overwrite=True)  # start over
    assert again.trained and len(again.history["train_loss"]) == 2

    # an interrupted run is refused too, and says so
    original = SupervisedModule.train_step

    def interrupt(self, batch, state):
        if state.global_step == 1:
            raise KeyboardInterrupt
        return original(self, batch, state)

    with monkeypatch.context() as m:
        m.setattr(SupervisedModule, "train_step", interrupt)
        with pytest.raises(KeyboardInterrupt):
            _run(roots, hp, overwrite=True)
    with pytest.raises(ConfigurationError, match="interrupted"):
        _run(roots, hp)
