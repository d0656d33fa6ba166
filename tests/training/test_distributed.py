"""Distributed data-parallel training: 2 gloo processes on the loopback interface (127.0.0.1).

A 2-process run writes exactly the files a single-process run writes (rank 0 alone writes), ends
with identical weights on both ranks (equal to its checkpoint), resumes with ``--continue``, and
its loss falls like the single-process run's. Trained until converged, rank 0 alone scores the whole
validation scans and every rank takes its decisions, so both stop at the same step. A GAN pretext task (two optimisers, a gradient
penalty's double backward) trains data-parallel too, under a wall-clock budget.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

HP = {"epochs": 2, "iters_per_epoch": 4, "val_iters": 1, "num_workers": 0, "checkpoint_every": 1, "batch_size": 4,
      "precision": "fp32", "tta": False}
EXTENDED = 3  # the run is then extended with --continue to this many epochs
# a wall-clock budget too: every rank must stop at the same step (rank 0, which validates, is slower)
GAN_HP = {"pretrain_epochs": 2, "pretrain_iters_per_epoch": 3, "val_iters": 1, "num_workers": 0, "batch_size": 2,
          "precision": "fp32", "pretrain_max_minutes": 0.02}
# until converged: margin 1.0 makes no score a gain, so the plateau comes at the third scoring (epoch 3)
CONVERGE_HP = {**HP, "epochs": 20, "final_validation": False, "until_converged": True, "converge_patience": 2,
               "converge_margin": 1.0, "converge_signal": 0.0}


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _capture_networks(captured: dict):
    """Record each rank's networks as the loop leaves them (the builder's call of fit)."""
    import selfconfig.training.builder as builder
    from selfconfig.training.distributed import networks_of

    real_fit = builder.fit

    def spy(module, state, *args, **kwargs):
        out = real_fit(module, state, *args, **kwargs)
        captured["networks"] = [{k: v.detach().clone() for k, v in net.state_dict().items()}
                                for net in networks_of(module)]
        captured["global_step"] = out.global_step
        return out

    builder.fit = spy


def _train_job(roots, name: str) -> dict:
    from selfconfig.training.api import train

    captured: dict = {}
    _capture_networks(captured)
    train("Scratch", name, hyperparameters=HP, roots=roots, progress=False, tag="ddp")
    res = train("Scratch", name, hyperparameters={**HP, "epochs": EXTENDED}, continue_training=True, roots=roots,
                progress=False, tag="ddp")
    return {"history": res.history, "networks": captured["networks"], "validation": res.validation}


def _converge_job(roots, name: str) -> dict:
    from selfconfig.training import convergence
    from selfconfig.training.api import train

    convergence.SCORING_SHARE = 1e9  # score every epoch (the interval is planned from measured time otherwise)
    captured: dict = {}
    _capture_networks(captured)
    res = train("Scratch", name, hyperparameters=CONVERGE_HP, roots=roots, progress=False, tag="ddp")
    return {"history": res.history, "networks": captured["networks"], "steps": captured["global_step"]}


def _gan_job(roots, name: str) -> dict:
    from selfconfig.pretext.api import run_pretraining

    captured: dict = {}
    _capture_networks(captured)
    res = run_pretraining("SurrogateWGAN", name, hyperparameters=GAN_HP, roots=roots, progress=False, tag="ddp")
    return {"history": res.history, "networks": captured["networks"], "trained": res.trained,
            "steps": captured["global_step"]}


def _worker(rank: int, world: int, port: int, job, out_dir: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.save(job(), Path(out_dir) / f"rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


def run_distributed(job, out_dir: Path, world: int = 2, timeout: float = 240.0) -> list[dict]:
    """Run ``job()`` in ``world`` gloo processes; each rank's return value."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = mp.start_processes(_worker, args=(world, _free_loopback_port(), job, str(out_dir)), nprocs=world,
                             join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the {world}-process run did not finish within {timeout:.0f} s")
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(world)]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _assert_same_networks(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and a
    for na, nb in zip(a, b):
        assert na.keys() == nb.keys()
        for k in na:
            assert torch.equal(na[k], nb[k]), k


def test_two_process_run_writes_once_keeps_ranks_identical_and_learns(planned, roots, tmp_path):
    from selfconfig.checkpoint import load_checkpoint
    from selfconfig.training.api import train

    planned("TDDP", task="segmentation", dim=2, shape=(32, 32), n_train=6, n_test=1, n_un=0)
    # the single-process run, the same way: 2 epochs, then extended to 3 with --continue
    train("Scratch", "TDDP", hyperparameters=HP, roots=roots, progress=False)
    single = train("Scratch", "TDDP", hyperparameters={**HP, "epochs": EXTENDED}, continue_training=True,
                   roots=roots, progress=False)

    ranks = run_distributed(functools.partial(_train_job, roots, "TDDP"), tmp_path / "ranks")

    ddp_dir = roots.results / "TDDP" / "Scratch__selfconfigPlans__2d__ddp" / "frac_1.0" / "fold_0"
    # exactly one set of outputs: the files of a single-process run, once
    assert _files(ddp_dir) == _files(single.run_dir)
    assert sorted(p.name for p in ddp_dir.parent.parent.parent.iterdir()) == sorted(
        ["Scratch__selfconfigPlans__2d", "Scratch__selfconfigPlans__2d__ddp"])
    log_text = (ddp_dir / "training.log").read_text()
    for line in ("Scratch epoch 1/2:", "Scratch epoch 2/2:", "Scratch epoch 3/3:"):
        assert log_text.count(line) == 1, (line, log_text)
    assert ranks[0]["validation"] is not None and ranks[1]["validation"] is None  # rank 0 alone validates

    # identical weights on both ranks, and they are what the checkpoint holds
    _assert_same_networks(ranks[0]["networks"], ranks[1]["networks"])
    ckpt = load_checkpoint(ddp_dir / "checkpoint_final.pt")
    _assert_same_networks([ckpt["module"]["network"]], ranks[0]["networks"][:1])
    assert ckpt["loop"]["epoch"] == EXTENDED and ckpt["loop"]["global_step"] == EXTENDED * HP["iters_per_epoch"]

    # the loss falls like the single-process run's (same global batch, same schedule)
    ddp_loss, one_loss = ranks[0]["history"]["train_loss"], single.history["train_loss"]
    assert len(ddp_loss) == len(one_loss) == EXTENDED
    assert ddp_loss[-1] < ddp_loss[0] and one_loss[-1] < one_loss[0]
    drop_ddp, drop_one = ddp_loss[0] - ddp_loss[-1], one_loss[0] - one_loss[-1]
    assert 0.5 * drop_one < drop_ddp < 2.0 * drop_one, (ddp_loss, one_loss)
    assert abs(ddp_loss[-1] - one_loss[-1]) < 0.25 * one_loss[0], (ddp_loss, one_loss)


def test_two_process_run_until_converged_stops_every_rank_at_the_plateau(planned, roots, tmp_path):
    import json

    from selfconfig.checkpoint import load_checkpoint

    planned("TDCONV", task="segmentation", dim=2, shape=(32, 32), n_train=6, n_test=1, n_un=0)
    ranks = run_distributed(functools.partial(_converge_job, roots, "TDCONV"), tmp_path / "ranks")

    run_dir = roots.results / "TDCONV" / "Scratch__selfconfigPlans__2d__ddp" / "frac_1.0" / "fold_0"
    info = json.loads((run_dir / "training_time.json").read_text())["convergence"]
    assert info["stop_reason"] == "converged" and info["plateau_epoch"] == 3, info
    cap = CONVERGE_HP["epochs"] * CONVERGE_HP["iters_per_epoch"]
    assert ranks[0]["steps"] == ranks[1]["steps"] < cap  # both ranks stopped, at the same step, long before the cap
    _assert_same_networks(ranks[0]["networks"], ranks[1]["networks"])
    final = load_checkpoint(run_dir / "checkpoint_final.pt")
    assert final["loop"]["global_step"] == ranks[0]["steps"]
    _assert_same_networks([final["module"]["network"]], ranks[0]["networks"][:1])
    best = load_checkpoint(run_dir / "checkpoint_best.pt")
    assert best["loop"]["epoch"] == info["best_epoch"]
    assert (run_dir / "training.log").read_text().count("stopped: converged") == 1  # rank 0 alone writes


def test_two_process_gan_pretraining_keeps_both_networks_identical(planned, roots, tmp_path):
    from selfconfig.checkpoint import load_checkpoint

    planned("TDGAN", task="segmentation", dim=2, shape=(32, 32), n_train=4, n_test=1, n_un=1)
    ranks = run_distributed(functools.partial(_gan_job, roots, "TDGAN"), tmp_path / "ranks")

    assert ranks[0]["trained"] and ranks[1]["trained"]
    assert ranks[0]["steps"] == ranks[1]["steps"] >= 1  # the budget stopped both ranks at the same step
    assert len(ranks[0]["networks"]) >= 2  # critic and generator, each with its own optimiser
    _assert_same_networks(ranks[0]["networks"], ranks[1]["networks"])
    folder = roots.results / "TDGAN" / "pretrain" / "SurrogateWGAN__selfconfigPlans__2d__ddp"
    written = sorted(p.name for p in folder.iterdir() if p.suffix == ".pt")
    assert {"checkpoint.pt", "checkpoint_final.pt"} <= set(written) and "checkpoint_latest.pt" not in written, written
    saved = load_checkpoint(folder / "checkpoint_final.pt")["module"]["networks"]
    _assert_same_networks(list(saved.values()), ranks[0]["networks"])


def test_the_batch_of_the_plan_is_the_global_batch(monkeypatch):
    from selfconfig.errors import ConfigurationError
    from selfconfig.training import distributed as dist

    assert dist.local_batch_size(4) == 4 and dist.rank_seed(12) == 12  # one process: as before
    monkeypatch.setattr(dist, "is_distributed", lambda: True)
    monkeypatch.setattr(tdist, "get_world_size", lambda *a: 2)
    monkeypatch.setattr(tdist, "get_rank", lambda *a: 1)
    assert dist.local_batch_size(4) == 2
    assert dist.rank_seed(12) != 12 and not dist.is_writer()
    with pytest.raises(ConfigurationError, match="does not split evenly over 2 processes"):
        dist.local_batch_size(3)


def test_nproc_per_node_starts_torchrun_with_the_same_arguments(monkeypatch):
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from selfconfig.cli import launch

    calls = []
    monkeypatch.setattr(torchrun, "run", lambda args: calls.append(args))
    assert launch.launch("selfconfig.cli.train", ["-d", "X", "--nproc-per-node", "2", "--epochs", "3"], 2) == 0
    args = calls[0]
    assert args.nproc_per_node == "2" and args.master_addr == "127.0.0.1" and args.module
    assert [args.training_script, *args.training_script_args] == ["selfconfig.cli.train", "-d", "X", "--epochs", "3"]
    assert launch.strip_flag(["--nproc-per-node=4", "-f", "1"]) == ["-f", "1"]

    def fails(args):  # a rank that stopped with a user error (exit code 2)
        failure = ProcessFailure(local_rank=1, pid=1, exitcode=2, error_file="")
        raise ChildFailedError("selfconfig.cli.train", {1: failure})

    monkeypatch.setattr(torchrun, "run", fails)
    assert launch.launch("selfconfig.cli.train", ["-d", "X"], 2) == 2
