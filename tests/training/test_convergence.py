"""--until-converged: a run whose score plateaus anneals and stops, and says so; a run that keeps
improving trains to its cap; checkpoint_best holds the best whole-scan score and prediction can
select it; a resumed run keeps the rule's state and ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json

import pytest
import torch

from selfconfig.errors import CheckpointError, ConfigurationError
from selfconfig.training import convergence
from selfconfig.training.convergence import ConvergenceCallback, ConvergenceRule
from selfconfig.training.loop import Callback, LoopState, fit

NAME = "TCONV"


# ----------------------------------------------------------------------------- the rule, on a scripted score
class _Module:
    monitor = "val_metric"

    def __init__(self):
        self.factors: list[float] = []  # the learning-rate factor of each step

    def train_step(self, batch, state):
        self.factors.append(state.schedule_point()[2])
        return {"loss": 1.0}

    def validation_step(self, batch):
        return {}

    def validation_end(self, outputs):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        pass


def _stream(start):
    while True:
        yield {}


def _fit(scores, epochs: int, patience: int = 3, margin: float = 0.01):
    """Fit 2-iteration epochs, scoring ``scores[epoch - 1]`` at each scoring; the epochs kept as best."""
    module, state, kept = _Module(), LoopState(epochs=epochs, iters_per_epoch=2), []
    rule = ConvergenceRule(patience=patience, margin=margin, tail=0.1, interval=0.01, metric="score")
    cb = ConvergenceCallback(rule, lambda m, st, logs: scores[st.epoch - 1], lambda m, st: kept.append(st.epoch))
    fit(module, state, _stream, None, [cb], progress=False)
    return module, state, kept


def test_a_plateau_starts_the_annealing_tail_and_stops_the_run():
    module, state, kept = _fit([0.1, 0.2, 0.3, 0.3, 0.305, 0.29] + [0.3] * 20, epochs=26)
    rec = state.converge
    # scores 0.3 at epoch 3, then three without a gain above 0.01: the plateau is epoch 6 (iteration 12)
    assert rec["plateau_epoch"] == 6 and rec["plateau_step"] == 12
    assert state.tail_start == 12 and state.stop_step == 14  # the tail: ceil(10 % of 12) = 2 iterations
    assert state.finished and state.epoch == 7 and state.global_step == 14 and state.epochs == 7
    assert rec["stop_reason"] == "converged"
    assert module.factors[:12] == [1.0] * 12 and module.factors[12:] == [1.0, 0.5], "linear decay to zero"
    assert rec["best"] == pytest.approx(0.305) and rec["best_epoch"] == 5 and kept == [1, 2, 3, 5]
    assert [e for e, _, _ in rec["curve"]] == [1, 2, 3, 4, 5, 6, 7]  # the last score after the tail


def test_a_run_that_keeps_improving_trains_to_its_cap():
    module, state, kept = _fit([0.02 * i for i in range(1, 11)], epochs=10)
    rec = state.converge
    assert state.epoch == 10 and state.global_step == 20 and state.tail_start is None
    assert rec["stop_reason"] == "epochs cap" and rec["plateau_epoch"] is None
    assert set(module.factors) == {1.0} and kept == list(range(1, 11))


def test_a_run_whose_scores_have_not_left_their_start_trains_on_until_it_learns(caplog):
    # chance-level scatter (0.5 +- 0.06, one early peak) for eight scores: no plateau although five scores
    # in a row gain nothing on the peak; then the run learns (0.8) and plateaus there
    noise = [0.49, 0.56, 0.46, 0.49, 0.39, 0.45, 0.47, 0.44]
    with caplog.at_level("INFO", logger="selfconfig.training.convergence"):
        module, state, kept = _fit(noise + [0.6, 0.75, 0.8, 0.8, 0.8, 0.8, 0.8] + [0.8] * 20, epochs=35, patience=5)
    rec = state.converge
    assert rec["held"] and "no plateau yet" in caplog.text
    assert rec["plateau_epoch"] == 16 and rec["stop_reason"] == "converged"  # 0.8 at epoch 11, five more
    assert rec["best"] == pytest.approx(0.8) and state.epoch < 35
    assert convergence.summary(state)["held_before_plateau"] is True


def test_the_best_of_many_noisy_scores_is_not_a_plateau():
    # NODULE_FPR at 10 % of the labels, fold 0 (validation AUC with 8 nodules): a network at chance for
    # 140 epochs. The best of 23 noisy scores (0.573 at the 17th) stands 0.082 above the first; the level
    # of the scores after it (0.536) does not stand clear of their scatter: no plateau, the cap ends it
    scores = [0.4915, 0.5318, 0.5580, 0.4613, 0.4944, 0.3850, 0.4472, 0.4702, 0.5541, 0.4309, 0.4623, 0.4227,
              0.4371, 0.5328, 0.3496, 0.4659, 0.5734, 0.5482, 0.4721, 0.5521, 0.5275, 0.5547, 0.5320, 0.5100]
    module, state, kept = _fit(scores, epochs=len(scores), patience=5, margin=0.005)
    rec = state.converge
    assert rec["held"] and rec["plateau_epoch"] is None and rec["stop_reason"] == "epochs cap"


def test_a_run_that_never_leaves_its_start_ends_at_its_cap_and_says_so(caplog):
    scores = [0.49, 0.56, 0.46, 0.49, 0.39, 0.45, 0.47, 0.44, 0.52, 0.48, 0.5, 0.46]
    with caplog.at_level("INFO", logger="selfconfig.training.convergence"):
        module, state, kept = _fit(scores, epochs=12, patience=5)
    rec = state.converge
    assert state.tail_start is None and rec["plateau_epoch"] is None and rec["stop_reason"] == "epochs cap"
    assert set(module.factors) == {1.0}
    assert "its scores had not left their start" in caplog.text


def test_the_interval_is_planned_from_the_horizon_and_the_cost_of_scoring(monkeypatch):
    monkeypatch.setattr(convergence, "SCORING_SHARE", 0.1)
    rule = ConvergenceRule(patience=5, margin=0.0, tail=0.1, interval=0.03, metric="score")
    state = LoopState(epochs=1000, iters_per_epoch=10)
    assert convergence.plan_interval(rule, state, epoch_seconds=10.0, score_seconds=1.0) == 30  # 3 % of 1000
    assert convergence.plan_interval(rule, state, epoch_seconds=1.0, score_seconds=50.0) == 500  # scoring <= 10 %
    short = LoopState(epochs=10, iters_per_epoch=10)
    assert convergence.plan_interval(rule, short, epoch_seconds=10.0, score_seconds=0.1) == 1  # at least an epoch


# ----------------------------------------------------------------------------- real runs on tiny data
def _hp(fast_hp, **kw) -> dict:
    return {**fast_hp, "precision": "fp32", "final_validation": False, "until_converged": True, "epochs": 20,
            "converge_patience": 2, "converge_margin": 1.0, "converge_signal": 0.0, **kw}
    # margin 1.0: no score is ever a gain, so the plateau comes at epoch 3; signal 0: the check that the
    # run has left its start is off (with no gain it would compare the first score with itself; it has
    # its own tests above)


@pytest.fixture(autouse=True)
def _score_every_epoch(monkeypatch):
    """Scoring never decides the interval (it is planned from measured time otherwise): every epoch."""
    monkeypatch.setattr(convergence, "SCORING_SHARE", 1e9)


def _train(roots, hp, **kw):
    from selfconfig.training.api import train

    return train("Scratch", NAME, fold=0, fraction=1.0, hyperparameters=hp, roots=roots, progress=False, **kw)


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_a_plateaued_run_stops_says_so_and_keeps_its_best_whole_scan_checkpoint(task, planned, roots, fast_hp,
                                                                                  tmp_path):
    kw = dict(dim=2, shape=(32, 32)) if task == "segmentation" else dict(dim=2, rgb=True, shape=(32, 32))
    planned(NAME, task=task, **kw)
    res = _train(roots, _hp(fast_hp))
    run_dir = res.run_dir
    info = json.loads((run_dir / "training_time.json").read_text())["convergence"]
    # scored at epochs 1, 2, 3: two without a gain -> plateau at epoch 3 (iteration 6), tail of 1 iteration
    assert info["stop_reason"] == "converged" and info["plateau_epoch"] == 3 and info["tail_iterations"] == 1
    assert len(res.history["train_loss"]) == 4, "stopped long before its cap of 20 epochs"
    scores = [c["score"] for c in info["curve"]]
    assert len(scores) == 4 and all(0.0 <= s <= 1.0 for s in scores)
    assert info["best"] == pytest.approx(max(scores))
    log_text = (run_dir / "training.log").read_text()
    assert "plateau at epoch 3" in log_text and "stopped: converged" in log_text and "whole-scan val_" in log_text
    best = torch.load(run_dir / "checkpoint_best.pt", weights_only=True)
    assert best["loop"]["epoch"] == info["best_epoch"]
    assert (run_dir / "checkpoint_final.pt").is_file() and (run_dir / "progress.png").is_file()
    again = _train(roots, _hp(fast_hp), continue_training=True)  # its own cap asked again: finished
    assert not again.trained and len(again.history["train_loss"]) == 4


def test_predict_selects_the_best_checkpoint_and_says_when_there_is_none(planned, roots, fast_hp, tmp_path, capsys):
    from selfconfig.cli import predict as predict_cli
    from selfconfig.cli.common import run
    from selfconfig.inference.api import predict

    planned(NAME, task="segmentation", dim=2, shape=(32, 32))
    res = _train(roots, _hp(fast_hp))
    images = roots.raw / NAME / "imagesTs"
    code = run(predict_cli.main, ["-i", str(images), "-o", str(tmp_path / "best"), "-d", NAME, "-chk", "best",
                                  "--no-progress"], prog="selfconfig_predict")
    assert code == 0, capsys.readouterr().err
    out = predict(images, tmp_path / "best2", trainer="Scratch", dataset=NAME, checkpoint="best", roots=roots,
                  progress=False)
    assert out.checkpoints == [res.run_dir / "checkpoint_best.pt"]
    (res.run_dir / "checkpoint_best.pt").unlink()
    with pytest.raises(CheckpointError, match="checkpoint_best.pt.*--until-converged.*-chk final"):
        predict(images, tmp_path / "none", trainer="Scratch", dataset=NAME, checkpoint="best", roots=roots,
                progress=False)


def test_resume_keeps_the_convergence_state(planned, roots, fast_hp, tmp_path, monkeypatch):
    """Interrupted at the end of epoch 2 (one score before the plateau), then --continue: the same
    scores, plateau, stop and final weights as the uninterrupted run."""
    from trainers.scratch import Scratch

    planned(NAME, task="segmentation", dim=2, shape=(32, 32))
    hp = _hp(fast_hp)
    ref = _train(type(roots)(roots.raw, roots.preprocessed, tmp_path / "ref"), hp)
    ref_info = json.loads((ref.run_dir / "training_time.json").read_text())["convergence"]

    class StopAtEpoch2(Callback):
        def on_epoch_end(self, module, state, logs):
            if state.epoch == 2:
                raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Scratch, "extra_callbacks", lambda self, run: [StopAtEpoch2()])
        with pytest.raises(KeyboardInterrupt):
            _train(roots, hp)
    res = _train(roots, hp, continue_training=True)
    info = json.loads((res.run_dir / "training_time.json").read_text())["convergence"]
    assert info["curve"] == ref_info["curve"] and info["plateau_epoch"] == ref_info["plateau_epoch"] == 3
    assert info["stop_reason"] == "converged"
    a = torch.load(ref.run_dir / "checkpoint_final.pt", weights_only=True)["module"]["network"]
    b = torch.load(res.run_dir / "checkpoint_final.pt", weights_only=True)["module"]["network"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    best = torch.load(res.run_dir / "checkpoint_best.pt", weights_only=True)
    assert best["loop"]["epoch"] == info["best_epoch"] == ref_info["best_epoch"]


def test_until_converged_needs_validation_cases(planned, roots, fast_hp):
    planned(NAME, task="segmentation", dim=2, shape=(32, 32))
    from selfconfig.training.api import train

    with pytest.raises(ConfigurationError, match="--until-converged needs validation cases"):
        train("Scratch", NAME, fold="all", hyperparameters=_hp(fast_hp), roots=roots, progress=False)


def test_the_rules_flags_reach_the_hyperparameters():
    from selfconfig.cli.train import build_parser, overrides_from
    from selfconfig.training.config import TrainingConfig

    args = build_parser().parse_args(["-d", "X", "-tr", "Scratch", "--until-converged", "--converge-signal", "0",
                                      "--converge-patience", "7"])
    given = overrides_from(args)
    assert given["converge_signal"] == 0.0 and given["converge_patience"] == 7 and given["until_converged"] is True
    hp = TrainingConfig.from_dict(given).check()
    rule = ConvergenceRule.of(hp, pretext=False, metric="s")
    assert rule.signal == 0.0 and rule.patience == 7
    with pytest.raises(ConfigurationError, match="converge_signal"):
        TrainingConfig(converge_signal=-1.0).check()
