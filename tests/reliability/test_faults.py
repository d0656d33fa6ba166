"""Faults around runs: --overwrite that must not discard a run for a bad request, a run killed
before its first checkpoint (--continue starts it anew), a full disk during training, hostile
checkpoints (never unpickled), and a kill -9 that loses minutes, not epochs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .conftest import assert_one_line, check_refused, run_cli, snapshot

TRAIN = ["-d", "REL", "-c", "3d", "--epochs", "1", "--iters-per-epoch", "1", "--num-workers", "0",
         "--no-final-validation", "--device", "cpu"]
PREDICT = ["-d", "REL", "-c", "3d", "--no-tta", "--device", "cpu"]


def _user_trainers(folder):
    (folder / "broken_syntax.py").write_text("class T(:\n    pass\n")
    (folder / "raises.py").write_text("raise RuntimeError('boom at import')\n")
    (folder / "not_trainers.py").write_text("def make():\n    return 1\n\nclass Plain:\n    pass\n")
    (folder / "missing_import.py").write_text("import no_such_module_xyz\n")


@pytest.mark.parametrize("spec,keywords", [
    ("broken_syntax.py:T", ["syntax error", "line 1"]),
    ("raises.py:T", ["RuntimeError", "boom at import"]),
    ("not_trainers.py:make", ["not a trainer", "function"]),
    ("not_trainers.py:Plain", ["not a trainer", "class Plain"]),
    ("not_trainers.py:Nothing", ["cannot be loaded", "Nothing"]),
    ("missing_import.py:T", ["cannot be loaded", "no_such_module_xyz"]),
    ("no_such_file.py:T", ["does not exist"]),
], ids=["syntax-error", "raises-on-import", "function", "non-trainer-class", "no-such-class", "import-error",
        "no-such-file"])
def test_bad_user_trainer_is_one_line(env, capsys, tmp_path, spec, keywords):
    _user_trainers(tmp_path)
    check_refused("train", [*TRAIN, "-tr", str(tmp_path / spec)], capsys, *keywords, watch=[env.base])


@pytest.mark.parametrize("bad", [["--lr", "nan"], ["--batch-size", "-3"], ["-tr", "Nope"], ["-f", "abc"],
                                 ["--epochs", "0"]],
                         ids=["lr-nan", "batch-size", "trainer", "fold", "epochs"])
def test_overwrite_discards_nothing_for_a_bad_request(env, capsys, bad):
    """--overwrite --lr nan deleted the finished run's checkpoints first, then failed."""
    run_dir = env.roots.results / "REL" / "Scratch__selfconfigPlans__3d" / "frac_1.0" / "fold_0"
    assert (run_dir / "checkpoint_final.pt").is_file()
    check_refused("train", [*TRAIN, "--overwrite", *bad], capsys, watch=[env.base])
    assert (run_dir / "checkpoint_final.pt").is_file()


def _start_and_kill(args: list[str], prog: str, log: Path, started: str) -> None:
    """Start ``prog`` as a real process and SIGKILL it (its whole group) once ``log`` holds
    ``started`` (the run has begun, no checkpoint is written yet)."""
    code = f"import sys; from selfconfig.cli.{prog} import entry; sys.argv[0] = 'selfconfig_{prog}'; entry()"
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and started in log.read_text(errors="replace"):
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"it ended before the kill: {proc.stderr.read().decode()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _weights(path: Path) -> dict:
    from selfconfig.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    return ckpt["pretrained"]["state_dict"] if "pretrained" in ckpt else ckpt["module"]["network"]


RUNS = {  # command, its arguments, the run folder under the results root, its log, the line of a begun run
    "train": (["-d", "REL", "-c", "3d", "-f", "1", "--epochs", "1", "--iters-per-epoch", "60", "--num-workers", "0",
               "--no-final-validation", "--device", "cpu", "--precision", "fp32", "--checkpoint-every", "1"],
              "REL/Scratch__selfconfigPlans__3d/frac_1.0/fold_1", "training.log", "training Scratch on",
              ["--continue"], "checkpoint_final.pt"),
    "pretrain": (["-tr", "SurrogateFlip", "-d", "REL", "-c", "3d", "--epochs", "1", "--iters-per-epoch", "60",
                  "--val-iters", "1", "--num-workers", "0", "--device", "cpu", "--precision", "fp32"],
                 "REL/pretrain/SurrogateFlip__selfconfigPlans__3d", "pretraining.log", "pre-training SurrogateFlip",
                 [], "checkpoint.pt"),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(RUNS))
def test_killed_before_its_first_checkpoint_starts_anew(env, capsys, tmp_path, command):
    """--continue refused where a kill -9 came before the first checkpoint (a re-submitted job
    failed); now, as nnU-Net's --c: one warning line, and a new run from scratch that ends with
    exactly the weights of a run that was never started before (pre-training resumes by itself)."""
    args, folder, log_name, started, resume, final = RUNS[command]
    results, reference = tmp_path / "results", tmp_path / "reference"
    run_dir = results / folder
    _start_and_kill([*args, "--no-progress", "--results", results], command, run_dir / log_name, started)
    assert (run_dir / ".lock").is_file() and (run_dir / log_name).is_file()  # what the killed start left
    assert not list(run_dir.glob("*.pt"))
    code, _, err = run_cli(command, [*args, *resume, "--results", results], capsys)
    assert code == 0, err[-2000:]
    warned = [ln for ln in err.splitlines() if "no checkpoint found in" in ln]
    assert len(warned) == 1 and "starting a new" in warned[0] and str(run_dir) in warned[0], err
    assert ("--continue: " in warned[0]) == bool(resume)
    assert "resuming" not in err
    assert run_cli(command, [*args, "--results", reference], capsys)[0] == 0  # never interrupted
    a, b = _weights(run_dir / final), _weights(reference / folder / final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (run_dir / ".lock").exists()


def test_continue_where_no_run_exists_warns_and_trains(env, capsys, tmp_path):
    """--continue on a fold never trained: one warning line, then a new run (nnU-Net's --c)."""
    results = tmp_path / "results"
    code, _, err = run_cli("train", [*TRAIN, "-f", "2", "--continue", "--results", results], capsys)
    assert code == 0, err[-2000:]
    run_dir = results / "REL" / "Scratch__selfconfigPlans__3d" / "frac_1.0" / "fold_2"
    assert f"--continue: no checkpoint found in {run_dir}" in err and "starting a new run from epoch 1" in err
    assert (run_dir / "checkpoint_final.pt").is_file()


def test_disk_full_during_training_names_the_file(env, capsys, monkeypatch):
    import errno

    import selfconfig.utils as utils

    real_open = open

    class FullFile:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return FullFile(f) if "checkpoint" in str(path) and "w" in mode else f

    monkeypatch.setattr(utils, "open", fake_open, raising=False)
    before = snapshot(env.roots.raw, env.roots.preprocessed)
    code, _, err = run_cli("train", [*TRAIN, "--tag", "diskfull"], capsys)
    assert_one_line(code, err, "train", "disk full while writing", "checkpoint", "was not written")
    assert snapshot(env.roots.raw, env.roots.preprocessed) == before
    run_dir = env.roots.results / "REL" / "Scratch__selfconfigPlans__3d__diskfull"
    assert not [p for p in run_dir.rglob("*.pt")] and not [p for p in run_dir.rglob(".partial*")]


def _copy_results(env, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(env.roots.results, results)
    return results, next(results.rglob("fold_0/checkpoint_final.pt"))


class Planted:
    """Unpickling this would create a marker file: proof that a planted pickle never runs."""

    marker = None

    def __reduce__(self):
        return (open, (str(Planted.marker), "w"))


@pytest.mark.parametrize("kind", ["planted-pickle", "truncated", "text-file", "foreign-dict"])
def test_hostile_checkpoint_is_refused_in_one_line(env, capsys, tmp_path, kind):
    results, ckpt = _copy_results(env, tmp_path)
    Planted.marker = tmp_path / "PWNED"
    if kind == "planted-pickle":
        payload = torch.load(ckpt, weights_only=True)
        payload["extra"] = Planted()
        torch.save(payload, ckpt)
        keywords = ["tampered", "not loaded"]
    elif kind == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
        keywords = ["truncated or not a checkpoint"]
    elif kind == "text-file":
        ckpt.write_text("hello")
        keywords = ["not a checkpoint"]
    else:
        torch.save({"weights": torch.zeros(3)}, ckpt)
        keywords = ["is not a selfconfig checkpoint"]
    check_refused("predict", ["-i", env.scans, "-o", tmp_path / "out", *PREDICT, "--results", results], capsys,
                  str(ckpt.name), *keywords, watch=[env.base, results])
    assert not Planted.marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_kill_9_loses_minutes_not_epochs(env, tmp_path, capsys):
    """With --checkpoint-minutes, checkpoint_latest is written mid-epoch by wall time; after
    kill -9, --continue resumes there (not at epoch 1) and finishes."""
    from selfconfig.training.checkpoint import load_checkpoint

    results = tmp_path / "results"
    args = ["-d", "REL", "-c", "3d", "--epochs", "1", "--iters-per-epoch", "40", "--num-workers", "0",
            "--no-final-validation", "--device", "cpu", "--checkpoint-minutes", "0.001", "--no-progress",
            "--results", str(results)]
    code = "import sys; from selfconfig.cli.train import entry; sys.argv[0] = 'selfconfig_train'; entry()"
    envv = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=envv, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    run_dir = results / "REL" / "Scratch__selfconfigPlans__3d" / "frac_1.0" / "fold_0"
    latest = run_dir / "checkpoint_latest.pt"
    deadline = time.time() + 120
    step = 0
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file():
            try:
                step = load_checkpoint(latest)["loop"]["step_in_epoch"]
            except Exception:  # noqa: BLE001 - never half-written, but may be replaced while read
                step = 0
            if step >= 3:
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert step >= 3, proc.stderr.read().decode()[-2000:]
    assert not (run_dir / "checkpoint_final.pt").exists()
    saved = load_checkpoint(latest)["loop"]
    assert saved["epoch"] == 0 and 0 < saved["step_in_epoch"] < 40  # mid-epoch, by wall time
    rc, _, err = run_cli("train", [*args[:-3], "--results", str(results), "--continue"], capsys)  # in-process
    assert rc == 0, err[-2000:]
    assert "resuming checkpoint_latest.pt at epoch 1, step" in err
    final = load_checkpoint(run_dir / "checkpoint_final.pt")["loop"]
    assert final["global_step"] == 40 and final["finished"]
