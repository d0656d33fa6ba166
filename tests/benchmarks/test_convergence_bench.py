"""The pieces of benchmarks/bench_convergence.py that need no training: which results row is a
cell's test score, how long the reference runs, and the comparison it reports."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_convergence", BENCH / "bench_convergence.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _results(path: Path, rows: list[dict]) -> Path:
    keys = ["dataset", "configuration", "strategy", "fraction", "fold", "split", "metric", "value", "n_train",
            "n_cases", "run_dir"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]) + "\n")
    return path


def _row(frac, split, value, fold=0, run_dir="LUNG/Scratch__p__3d__converge/frac_x/fold_0"):
    return {"dataset": "LUNG", "configuration": "3d", "strategy": "Scratch", "fraction": frac, "fold": fold,
            "split": split, "metric": "mean_dice", "value": value, "n_train": 3, "n_cases": 6, "run_dir": run_dir}


def test_the_test_row_of_the_asked_cell(bench, tmp_path):
    csv = _results(tmp_path / "results.csv", [_row(0.1, "val", 0.5), _row(0.1, "test", 0.61), _row(0.1, "test", 0.7, 1),
                                              _row(1.0, "test", 0.88)])
    assert float(bench.test_row(csv, 0.1)["value"]) == 0.61
    assert float(bench.test_row(csv, 1.0)["value"]) == 0.88
    with pytest.raises(KeyError, match="fraction 0.25"):
        bench.test_row(csv, 0.25)


def test_the_reference_trains_factor_times_as_long(bench):
    assert bench.long_epochs(1050, 4, 25) == 168  # 4 x 1050 = 4200 iterations = 168 epochs of 25
    assert bench.long_epochs(1060, 4, 25) == 170  # rounded up: never shorter than 4x
    assert bench.long_epochs(5, 4, 25) == 2
    with pytest.raises(ValueError):
        bench.long_epochs(0, 4, 25)


def test_comparison_reports_the_share_and_the_cost(bench):
    rec = bench.compare(0.1, {"test": 0.80, "iterations": 1000, "minutes": 5.0},
                        {"test": 0.85, "iterations": 4000, "minutes": 20.0})
    assert rec["share_of_reference"] == pytest.approx(0.80 / 0.85, abs=1e-4)
    assert rec["meets_target"] is False  # 0.941 < 0.97
    assert rec["iterations_saved"] == 0.75 and rec["minutes_ratio"] == 0.25
    ok = bench.compare(1.0, {"test": 0.90, "iterations": 1200, "minutes": 6.0},
                       {"test": 0.91, "iterations": 4800, "minutes": 24.0})
    assert ok["meets_target"] is True
    text = bench.table([rec, ok], "mean_dice")
    assert "| 0.1 | 0.800 | 1000 |" in text and "| 0.941 |" in text and "longer run test mean_dice" in text
    assert rec["length_ratio"] == 4.0 and "| 4000 | 4.00x |" in text
    # a reference kept from an earlier, shorter converged run: its real length ratio is recorded
    kept = bench.compare(0.1, {"test": 0.84, "iterations": 2500, "minutes": 12.0},
                         {"test": 0.85, "iterations": 4000, "minutes": 20.0})
    assert kept["length_ratio"] == 1.6 and "| 4000 | 1.60x |" in bench.table([kept], "mean_dice")


def test_a_kept_reference_is_found_by_its_test_row(bench, tmp_path):
    _results(tmp_path / "D" / "experiment" / "results.csv", [_row(0.1, "val", 0.5), _row(0.1, "test", 0.61)])
    assert bench.has_row(tmp_path, "D", 0.1) and not bench.has_row(tmp_path, "D", 1.0)
    # results.csv holds only the last call's cells: an earlier cell is found by its own scores.json
    cell = tmp_path / "D" / "Scratch__p__2d__quick" / "frac_1.0" / "fold_0"
    cell.mkdir(parents=True)
    (cell / "scores.json").write_text(json.dumps({"rows": [{"split": "val", "value": 0.2},
                                                           {"split": "test", "value": 0.3, "run_dir": "x"}]}))
    assert bench.has_row(tmp_path, "D", 1.0) and bench.cell_row(tmp_path, "D", 1.0)["value"] == 0.3
    assert not bench.has_row(tmp_path, "E", 0.1)


def test_a_cell_reads_its_iterations_and_rule_from_the_run(bench, tmp_path):
    run = tmp_path / "LUNG" / "Scratch__p__3d__converge" / "frac_0.1" / "fold_0"
    run.mkdir(parents=True)
    (run / "hyperparameters.json").write_text(json.dumps({"epochs": 192, "iters_per_epoch": 25}))
    curve = [{"epoch": 6, "iteration": 150, "score": 0.5}, {"epoch": 12, "iteration": 300, "score": 0.7}]
    (run / "training_time.json").write_text(json.dumps({"iterations": 1175, "convergence": {
        "stop_reason": "converged", "best": 0.7, "best_epoch": 12, "plateau_epoch": 42, "plateau_iteration": 1050,
        "tail_iterations": 125, "interval_epochs": 6, "curve": curve}}))
    _results(tmp_path / "LUNG" / "experiment" / "results.csv",
             [_row(0.1, "test", 0.66, run_dir="LUNG/Scratch__p__3d__converge/frac_0.1/fold_0")])
    cell = bench._cell(tmp_path, "LUNG", 0.1, 300.0)
    assert cell["test"] == 0.66 and cell["iterations"] == 1175 and cell["minutes"] == 5.0  # the call's: no loop minutes
    assert cell["convergence"]["plateau_iteration"] == 1050 and cell["n_test_cases"] == 6
    (run / "training_time.json").unlink()  # a fixed-length run records no rule: its iterations are the schedule's
    assert bench._cell(tmp_path, "LUNG", 0.1, 60.0)["iterations"] == 192 * 25


def test_a_cell_prefers_the_loops_own_minutes(bench, tmp_path):
    run = tmp_path / "LUNG" / "Scratch__p__3d__quick" / "frac_1.0" / "fold_0"
    run.mkdir(parents=True)
    (run / "hyperparameters.json").write_text(json.dumps({"epochs": 40, "iters_per_epoch": 25}))
    (run / "training_time.json").write_text(json.dumps({"iterations": 1000, "minutes": 7.5}))  # kept across a resume
    _results(tmp_path / "LUNG" / "experiment" / "results.csv",
             [_row(1.0, "test", 0.9, run_dir="LUNG/Scratch__p__3d__quick/frac_1.0/fold_0")])
    cell = bench._cell(tmp_path, "LUNG", 1.0, 120.0)
    assert cell["minutes"] == 7.5 and cell["call_minutes"] == 2.0 and cell["convergence"] is None
