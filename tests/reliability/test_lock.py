"""One owner per run folder, through the commands: a second training, pre-training, grid cell or
prediction into a folder another process holds is refused in one line naming the holder (and
changes nothing), waits with --wait, and takes over the folder of a holder killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from .conftest import check_refused, run_cli

TRAIN = ["-d", "REL", "-c", "3d", "--epochs", "1", "--iters-per-epoch", "1", "--num-workers", "0",
         "--no-final-validation", "--device", "cpu"]

HOLDER = textwrap.dedent("""
    import os, sys, time
    from selfconfig.locking import run_folder_lock
    with run_folder_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
        open(sys.argv[1] + ".released", "w").close()
""")


def hold(folder, seconds: float = 120) -> subprocess.Popen:
    """Another process (a real one) that holds ``folder``'s lock."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    assert p.stdout.readline().strip() == "held"
    return p


def kill(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def run_dir(env, tag: str = "", fraction: str = "1.0", fold: int = 0):
    return env.roots.results / "REL" / f"Scratch__selfconfigPlans__3d{tag}" / f"frac_{fraction}" / f"fold_{fold}"


def test_second_training_is_refused_naming_the_holder(env, capsys):
    p = hold(run_dir(env))
    try:
        text = check_refused("train", [*TRAIN, "--continue"], capsys, "is in use by", f"pid {p.pid}",
                             socket.gethostname(), "since", "--wait", watch=[env.base])
        assert str(run_dir(env)) in text
    finally:
        kill(p)


def test_wait_trains_when_the_holder_is_done(env, capsys, tmp_path):
    results = tmp_path / "results"
    folder = results / "REL" / "Scratch__selfconfigPlans__3d" / "frac_1.0" / "fold_2"
    p = hold(folder, seconds=2)
    rc, _, err = run_cli("train", [*TRAIN, "-f", "2", "--results", str(results), "--wait"], capsys)
    assert rc == 0, err[-2000:]
    assert (folder.parent / "fold_2.released").exists()  # it trained only after the holder let go
    assert f"is in use by pid {p.pid}" in err and "waiting for it to finish" in err
    assert (folder / "checkpoint_final.pt").is_file() and not (folder / ".lock").exists()
    p.wait()


def test_a_killed_holder_is_taken_over(env, capsys, tmp_path):
    results = tmp_path / "results"
    folder = results / "REL" / "Scratch__selfconfigPlans__3d" / "frac_1.0" / "fold_3"
    p = hold(folder)
    kill(p)  # SIGKILL: its lock file and holder line stay behind
    assert (folder / ".lock").is_file()
    rc, _, err = run_cli("train", [*TRAIN, "-f", "3", "--results", str(results)], capsys)
    assert rc == 0, err[-2000:]
    assert f"taking over the lock of pid {p.pid}" in err
    assert (folder / "checkpoint_final.pt").is_file()


def test_prediction_into_a_held_output_folder_is_refused(env, capsys, tmp_path):
    out = tmp_path / "out"
    p = hold(out)
    try:
        check_refused("predict", ["-i", env.scans, "-o", out, "-d", "REL", "-c", "3d", "-tr", "Scratch", "-f", "0",
                                  "--no-tta", "--device", "cpu"], capsys, f"pid {p.pid}", "--wait",
                      watch=[env.base, out])
    finally:
        kill(p)


def test_prediction_refused_later_leaves_no_output_folder(env, capsys, tmp_path):
    """The lock makes the output folder; a refusal while predicting (a NaN scan) removes it again."""
    import numpy as np

    from selfconfig.dataset.io import read_image, write_image

    scans = tmp_path / "scans"
    scans.mkdir()
    src = sorted(env.scans.iterdir())[0]
    arr, geom = read_image(src)
    arr[0, 0, 0, 0] = np.nan
    write_image(arr, geom, scans / src.name)
    out = tmp_path / "out"
    check_refused("predict", ["-i", scans, "-o", out, "-d", "REL", "-c", "3d", "-tr", "Scratch", "-f", "0", "--no-tta",
                              "--device", "cpu"], capsys, "NaN", watch=[env.base])
    assert not out.exists()


def test_pretraining_in_a_held_folder_is_refused(env, capsys):
    folder = env.roots.results / "REL" / "pretrain" / "SurrogateFlip__selfconfigPlans__3d"
    p = hold(folder)
    try:
        check_refused("pretrain", ["-d", "REL", "-c", "3d", "-tr", "SurrogateFlip", "--epochs", "1",
                                   "--iters-per-epoch", "1", "--device", "cpu"], capsys, f"pid {p.pid}", "pre-train",
                      watch=[env.base])
    finally:
        kill(p)


@pytest.mark.slow
def test_two_real_trainings_in_one_folder(env, capsys, tmp_path):
    """The case the lock is for: selfconfig_train started twice on the same run (a double-click)."""
    from selfconfig.locking import read_holder

    results = tmp_path / "results"
    folder = results / "REL" / "Scratch__selfconfigPlans__3d" / "frac_1.0" / "fold_2"
    args = ["-d", "REL", "-c", "3d", "-f", "2", "--epochs", "1", "--iters-per-epoch", "100000", "--num-workers", "0",
            "--no-final-validation", "--device", "cpu", "--results", str(results), "--no-progress"]
    code = "import sys; from selfconfig.cli.train import entry; sys.argv[0] = 'selfconfig_train'; entry()"
    first = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and first.poll() is None and \
                getattr(read_holder(folder), "pid", None) != first.pid:
            time.sleep(0.2)
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        rc, _, err = run_cli("train", args, capsys)  # the same command, a second time
        assert rc == 2 and f"is in use by pid {first.pid}" in err, err[-2000:]
        assert "Traceback" not in err and first.poll() is None
    finally:
        kill(first)
