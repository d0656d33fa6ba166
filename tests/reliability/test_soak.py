"""The kill-anywhere soak, short (benchmarks/soak_kill.py runs the long one): a training and a
prediction killed with SIGKILL while they write, run again, finish with complete outputs, leave
the user's files as they were and no lock behind; the resumed training ends with exactly the
weights of a training that was never interrupted (resume is promised bit-exact)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfconfig.cli.common import run

ROOT = Path(__file__).resolve().parents[2]


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak_kill", ROOT / "benchmarks" / "soak_kill.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak_kill"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


soak = _soak_module()


def in_process(command, work: Path, extra: tuple[str, ...] = ()) -> int:
    """Run a soak command in this process (no interpreter start-up), on ``work``'s roots."""
    name = command.name
    main = importlib.import_module(f"selfconfig.cli.{name}").main
    roots = ["--raw", str(work / "raw"), "--preprocessed", str(work / "preprocessed"), "--results",
             str(work / "results")]
    return run(main, [*command.argv[1:], *extra, *roots], prog=f"selfconfig_{name}")


def kill_when(command, work: Path, ready, timeout: float = 240) -> None:
    """Start ``command`` as its own process and SIGKILL it (and its children) once ``ready()``."""
    p = subprocess.Popen(command.argv, cwd=work, env=soak.env_for(work), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None and not ready():
        time.sleep(0.05)
    assert p.poll() is None, f"{command.name} ended before it could be killed: {p.stderr.read().decode()[-1500:]}"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


@pytest.mark.slow
def test_killed_training_and_prediction_finish_bit_exact(tmp_path):
    """Every run is its own process, as a user's: a run inside pytest has another thread count,
    and bit-exactness is promised for the same settings (fp32, threads), not across them."""
    live, ref = tmp_path / "live", tmp_path / "ref"
    log = tmp_path / "soak.log"
    soak.prepare(live)
    cmds = {c.name: c for c in soak.commands(live)}
    assert in_process(cmds["plan_and_preprocess"], live) == 0
    shutil.copytree(live, ref)
    ref_cmds = {c.name: c for c in soak.commands(ref)}
    for name in ("train", "predict"):
        assert soak.run_to_end(ref_cmds[name].argv, ref, log)[0] == 0, log.read_text()[-2000:]
    given = soak.tree_hashes(live / "raw", live / "scans")

    run_dir = soak._run_dir(live)
    kill_when(cmds["train"], live, lambda: (run_dir / "checkpoint_latest.pt").is_file())  # mid-run
    assert (run_dir / ".lock").is_file()  # the killed run's lock, left behind
    assert not (run_dir / "checkpoint_final.pt").exists()
    code, err = soak.run_to_end([*cmds["train"].argv, "--continue"], live, log)  # as a re-submitted job carries it
    assert code == 0, err[-2000:]
    assert "taking over the lock of pid" in err
    assert soak.check_train(live, ref) == []  # complete, loads, and the same weights to the bit

    kill_when(cmds["predict"], live, lambda: (live / "pred" / ".lock").is_file())  # while it predicts
    assert soak.run_to_end(cmds["predict"].argv, live, log)[0] == 0
    assert soak.check_predict(live, ref) == []

    assert soak.tree_hashes(live / "raw", live / "scans") == given
    assert soak.leftovers(live / "results", live / "preprocessed", live / "pred") == []
    assert not list(live.rglob(".lock"))
