"""The run-folder lock with real processes: a second owner is refused (naming the first) or
waits; a holder killed with SIGKILL leaves a lock the next owner takes over; an orphaned forked
child does not keep the folder locked; the exclusive-file fallback where flock is missing."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from selfconfig import locking
from selfconfig.locking import Holder, RunFolderBusyError, read_holder, run_folder_lock

HOLDER = textwrap.dedent("""
    import os, sys, time
    from selfconfig.locking import run_folder_lock
    folder, fork = sys.argv[1], sys.argv[2] == "fork"
    with run_folder_lock(folder):
        if fork:
            r, w = os.pipe()
            if os.fork() == 0:  # an orphan-to-be (a data-loader worker); past fork it let go of the lock
                os.write(w, b"x")
                time.sleep(60)
                os._exit(0)
            os.read(r, 1)
        print("held", flush=True)
        time.sleep(float(sys.argv[3]))
        open(os.path.join(folder, "ending"), "w").close()
""")


def start_holder(folder: Path, seconds: float = 60, fork: bool = False) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), "fork" if fork else "-", str(seconds)],
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert p.stdout.readline().strip() == "held"
    return p


def stop(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    p = start_holder(tmp_path / "run")
    try:
        with pytest.raises(RunFolderBusyError) as e:
            with run_folder_lock(tmp_path / "run"):
                pass
        msg = str(e.value)
        assert "\n" not in msg
        assert f"pid {p.pid} on {socket.gethostname()}" in msg and "since" in msg and "--wait" in msg
        assert str(tmp_path / "run") in msg
    finally:
        stop(p)


def test_wait_starts_when_the_holder_ends(tmp_path, caplog):
    p = start_holder(tmp_path / "run", seconds=1.5)
    caplog.set_level(logging.INFO, logger="selfconfig.locking")
    t0 = time.monotonic()
    with run_folder_lock(tmp_path / "run", wait=True):
        assert (tmp_path / "run" / "ending").exists()  # only once the holder left its lock
        assert read_holder(tmp_path / "run").pid == os.getpid()
    assert time.monotonic() - t0 > 0.5
    assert "waiting for it to finish" in caplog.text and f"pid {p.pid}" in caplog.text
    assert "taking over" not in caplog.text  # a clean release is no take-over
    assert not (tmp_path / "run" / locking.LOCK_NAME).exists()
    p.wait()


def test_a_killed_holder_is_taken_over_with_a_message(tmp_path, caplog):
    p = start_holder(tmp_path / "run")
    stop(p)  # SIGKILL: no clean-up ran; the lock file and its holder line stay
    assert read_holder(tmp_path / "run").pid == p.pid
    caplog.set_level(logging.WARNING, logger="selfconfig.locking")
    with run_folder_lock(tmp_path / "run"):
        assert read_holder(tmp_path / "run").pid == os.getpid()
    assert f"taking over the lock of pid {p.pid}" in caplog.text


def test_an_orphaned_forked_child_does_not_keep_the_lock(tmp_path):
    p = start_holder(tmp_path / "run", fork=True)
    os.kill(p.pid, signal.SIGKILL)  # the parent only; its forked child sleeps on
    p.wait()
    try:
        with run_folder_lock(tmp_path / "run"):
            pass
    finally:
        stop(p)  # the child, by its process group


def test_nesting_in_one_process_and_a_thread_waiting(tmp_path):
    folder = tmp_path / "run"
    got = []
    with run_folder_lock(folder):
        with run_folder_lock(folder):  # a grid cell around its training run
            pass
        assert (folder / locking.LOCK_NAME).exists()  # the inner release kept the outer lock
    assert not (folder / locking.LOCK_NAME).exists()

    p = start_holder(folder, seconds=1.0)

    def take():
        with run_folder_lock(folder, wait=True):
            got.append(read_holder(folder).pid)

    t = threading.Thread(target=take)
    t.start()
    t.join(30)
    assert got == [os.getpid()] and p.wait() == 0


def test_without_flock_the_exclusive_file_fallback(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(locking, "fcntl", None)
    folder = tmp_path / "run"
    (folder).mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = Holder(int(dead.stdout), socket.gethostname(), "2020-01-01T00:00:00+00:00", "selfconfig_train")
    (folder / locking.LOCK_NAME).write_bytes(stale.to_bytes())
    caplog.set_level(logging.WARNING, logger="selfconfig.locking")
    with run_folder_lock(folder):
        assert read_holder(folder).pid == os.getpid()
    assert f"taking over the lock of pid {stale.pid}" in caplog.text
    assert not (folder / locking.LOCK_NAME).exists()

    alive = Holder(os.getppid(), socket.gethostname(), "2020-01-01T00:00:00+00:00", "x")  # a live pid
    (folder / locking.LOCK_NAME).write_bytes(alive.to_bytes())
    with pytest.raises(RunFolderBusyError, match=f"pid {alive.pid}"):
        with run_folder_lock(folder):
            pass
    other_host = Holder(int(dead.stdout), "elsewhere", "2020-01-01T00:00:00+00:00", "x")  # cannot be checked
    (folder / locking.LOCK_NAME).write_bytes(other_host.to_bytes())
    with pytest.raises(RunFolderBusyError, match="on elsewhere"):
        with run_folder_lock(folder):
            pass
