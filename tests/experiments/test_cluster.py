"""The grid and preprocessing on a Dask cluster: local clusters of 2 workers on the loopback interface."""

from __future__ import annotations

import sys
from dataclasses import replace

import pandas as pd
import pytest

from selfconfig.experiments.grid import run_experiment
from selfconfig.utils import read_json

pytest.importorskip("distributed")

TINY = {"epochs": 1, "iters_per_epoch": 2, "val_iters": 1, "num_workers": 0, "pretrain_epochs": 1,
        "pretrain_iters_per_epoch": 2, "tta": False, "precision": "fp32"}


@pytest.fixture(scope="module")
def scheduler():
    """One local cluster of 2 single-threaded workers on 127.0.0.1 for the grid tests (started once:
    a worker takes several seconds to import torch); its address is what --scheduler ADDRESS takes."""
    from selfconfig.dask_cluster import connect

    with connect("local:2", dashboard=False) as client:
        yield client.scheduler.address


def _table(csv, results_root) -> pd.DataFrame:
    df = pd.read_csv(csv)
    assert all((results_root / d).is_dir() for d in df["run_dir"])  # relative to its own results root
    return df


@pytest.mark.slow
def test_grid_on_two_local_workers_gives_the_one_process_results(planned, roots, scheduler):
    planned("EXC", task="segmentation", dim=3, n_train=4, configurations=["3d"])
    args = dict(budget="quick", progress=False, overrides=TINY)
    one = run_experiment("EXC", ["Scratch", "SurrogateFlip"], [1.0], [0], roots=roots, **args)
    other = replace(roots, results=roots.results.parent / "results_dask")
    res = run_experiment("EXC", ["Scratch", "SurrogateFlip"], [1.0], [0], roots=other, scheduler=scheduler, **args)
    a, b = _table(one.results_csv, roots.results), _table(res.results_csv, other.results)
    assert len(a) == 4  # 2 strategies x {val, test}
    pd.testing.assert_frame_equal(a, b)
    assert res.summary_md.is_file() and res.figure.is_file()
    assert len(list((other.results / "EXC" / "pretrain").glob("*/checkpoint.pt"))) == 1
    finals = sorted((other.results / "EXC").glob("*__quick/frac_*/fold_*/checkpoint_final.pt"))
    stamps = {p: p.stat().st_mtime_ns for p in finals}
    assert len(stamps) == 2
    again = run_experiment("EXC", ["Scratch", "SurrogateFlip"], [1.0], [0], roots=other, scheduler=scheduler,
                           **args)
    assert {p: p.stat().st_mtime_ns for p in finals} == stamps  # a finished cell is never run again
    pd.testing.assert_frame_equal(_table(again.results_csv, other.results), b)


KILLER = '''
import os
from pathlib import Path

from trainers.scratch import Scratch


class KillsItsWorkerOnce(Scratch):
    name = "KillsItsWorkerOnce"

    def initialize_weights(self, network, run):
        marker = Path(run.data.roots.results) / "killed_once"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)  # the worker process dies in the middle of the cell
        return super().initialize_weights(network, run)
'''


@pytest.mark.slow
def test_a_cell_whose_worker_dies_is_retried(planned, roots, tmp_path, scheduler):
    planned("EXK", task="segmentation", dim=3, n_train=4, configurations=["3d"])
    path = tmp_path / "killer.py"
    path.write_text(KILLER)
    res = run_experiment("EXK", [f"{path}:KillsItsWorkerOnce"], [1.0], [0], roots=roots, progress=False,
                         overrides={**TINY, "num_workers": 1}, scheduler=scheduler)
    assert (roots.results / "killed_once").is_file()  # the first attempt did die
    df = pd.read_csv(res.results_csv)
    assert set(df["split"]) == {"val", "test"} and set(df["strategy"]) == {"KillsItsWorkerOnce"}
    # the retry ran with a data-loader worker: the cluster's workers may start processes
    run_dir = next((roots.results / "EXK").glob("KillsItsWorkerOnce__*/frac_1.0/fold_0"))
    assert read_json(run_dir / "hyperparameters.json")["num_workers"] == 1


def test_preprocessing_on_two_local_workers_matches_local_processes(make_dataset, roots, tmp_path):
    import numpy as np

    from selfconfig.planning import plan_and_preprocess
    from selfconfig.preprocessing import storage

    make_dataset("EXP2", task="segmentation", dim=3, n_train=4, n_test=1, n_un=1)
    kw = dict(configurations=["3d"], cpu_gflops=20.0, cpu_target_seconds=0.3, progress=False)
    a = plan_and_preprocess("EXP2", roots=roots, num_processes=1, **kw)
    other = replace(roots, preprocessed=tmp_path / "pre_dask")
    b = plan_and_preprocess("EXP2", roots=other, scheduler="local:2", **kw)
    assert a.plans.to_dict() == b.plans.to_dict() and a.preprocessed == b.preprocessed
    folders = sorted(p for p in (roots.preprocessed / "EXP2").rglob("*") if p.is_dir() and storage.list_cases(p))
    assert folders
    for fa in folders:
        fb = other.preprocessed / fa.relative_to(roots.preprocessed)
        assert storage.list_cases(fa) == storage.list_cases(fb)
        for cid in storage.list_cases(fa):
            assert np.array_equal(storage.load_data(fa, cid), storage.load_data(fb, cid))
            sa, sb = storage.load_seg(fa, cid), storage.load_seg(fb, cid)
            assert (sa is None and sb is None) or np.array_equal(sa, sb)


@pytest.mark.parametrize("command", ["experiment", "plan_and_preprocess"])
def test_scheduler_without_dask_says_how_to_install_it(command, monkeypatch, capsys, roots):
    import importlib

    from selfconfig.cli.common import run

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    main = importlib.import_module(f"selfconfig.cli.{command}").main
    assert run(main, ["-d", "X", "--scheduler", "local:2"], prog=f"selfconfig_{command}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'selfconfig[cluster]'" in err


def test_scheduler_argument_is_parsed():
    from selfconfig.dask_cluster import parse_scheduler
    from selfconfig.errors import ConfigurationError

    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("local") == ("local", 2)
    assert parse_scheduler("tcp://10.0.0.5:8786") == ("tcp://10.0.0.5:8786", None)
    with pytest.raises(ConfigurationError):
        parse_scheduler("local:0")


def test_gpu_plans_ask_for_a_gpu_unless_the_cpu_is_asked_for(planned):
    from selfconfig.experiments.cluster import wants_gpu
    from selfconfig.training.context import open_dataset

    planned("EXG", task="segmentation", dim=3, n_train=4, configurations=["3d"])
    data = open_dataset("EXG", "3d")
    assert not wants_gpu(data, None)  # a CPU plan
    data.plans.budget = replace(data.plans.budget, device="cuda", gpu_memory_gb=8.0)
    assert wants_gpu(data, None) and wants_gpu(data, "cuda:1") and not wants_gpu(data, "cpu")
