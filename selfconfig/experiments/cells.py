"""One cell of the experiment grid (strategy x label fraction x fold) and how it runs: the same
function in one process (:mod:`selfconfig.experiments.grid`) and on a Dask worker
(:mod:`selfconfig.experiments.cluster`), so a finished cell is skipped, an interrupted one
resumes, and the rows are the same either way. Both runners import this module; neither imports
the other's internals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from selfconfig.evaluation.html_report import write_run_report
from selfconfig.experiments.budgets import FEW_ITERATIONS
from selfconfig.experiments.scoring import metric_value
from selfconfig.training.builder import (Settings, find_resume_checkpoint, is_finished_and_scored, owned_folder,
                                         resolve_settings,
                                         trained_epochs)
from selfconfig.training.context import DatasetContext
from selfconfig.utils import read_json, write_json

log = logging.getLogger(__name__)

#: a cell's scores (validation and test rows) in its run folder; newer than checkpoint_final.pt = done
SCORES = "scores.json"


@dataclass
class Cell:
    strategy: str
    fraction: float
    fold: int | str
    scored_cases: int | None = None  # score at most this many validation and test cases (the budget's; None: all)


def scored_subset(case_ids: list[str], limit: int | None) -> list[str]:
    """At most ``limit`` of ``case_ids``, evenly spread over their sorted order (all when ``limit``
    is None or not smaller): the same cases for every cell and every run of a grid."""
    ids = sorted(case_ids)
    if limit is None or len(ids) <= limit:
        return ids
    return [ids[int(i * len(ids) / limit)] for i in range(limit)]


def arm_settings(cls: type, data: DatasetContext, overrides: dict, device: torch.device | str | None,
                 budget_name: str = "") -> Settings:
    """The settings each cell of one arm (trainer class) trains with: budget and user overrides
    over the trainer's defaults; refused here when the arm cannot run on ``data``."""
    settings = resolve_settings(cls, overrides, device)
    cls(settings.hp).check_compatible(data)
    if getattr(cls, "uses_pretraining", False):
        from selfconfig.pretext.run import check_existing_pretraining

        check_existing_pretraining(cls, data, settings.hp)  # a pre-training made with other settings: say so now
    its = settings.hp.epochs * settings.hp.iters_per_epoch
    if budget_name and its < FEW_ITERATIONS:  # a pure wall-clock budget's bound is never below FEW_ITERATIONS
        log.warning("%s: %d iteration(s) per cell (%s budget, %.2f s estimated per iteration): that is the "
                    "start of training, not a result; plan for shorter iterations "
                    "(selfconfig_plan_and_preprocess --cpu-seconds 0.25) or give more epochs",
                    cls.name, its, budget_name, data.config.estimated_iteration_seconds or float("nan"))
    return settings


def run_cell(cls, data: DatasetContext, cell: Cell, overrides: dict, device: torch.device, raw_dir: Path,
             progress: bool, wait: bool = False) -> list[dict]:
    """Train (or resume, or skip) one cell and score it on validation and test; the cell owns its
    run folder from training to scores (another process's cell there: refused, or ``wait``)."""
    run_dir = data.run_dir(cls.name, cell.fraction, cell.fold)
    if _finished(run_dir, overrides.get("epochs")):
        return read_json(run_dir / SCORES)["rows"]
    with owned_folder(run_dir, wait=wait, what="train"):
        if _finished(run_dir, overrides.get("epochs")):  # finished by the process this one waited for
            return read_json(run_dir / SCORES)["rows"]
        return _train_and_score(cls, data, cell, overrides, device, raw_dir, progress)


def _train_and_score(cls, data: DatasetContext, cell: Cell, overrides: dict, device: torch.device, raw_dir: Path,
                     progress: bool) -> list[dict]:
    from selfconfig.inference.validation import validate_run
    from selfconfig.inference.whole_scan import whole_scan_scorer
    from selfconfig.training.run import train_run

    run_dir = data.run_dir(cls.name, cell.fraction, cell.fold)
    resume = find_resume_checkpoint(run_dir) is not None

    def validate(run_dir, data, val_ids, *args):  # the budget's share of the validation cases
        return validate_run(run_dir, data, scored_subset(val_ids, cell.scored_cases), *args)

    result = train_run(cls, data, cell.fold, cell.fraction, overrides, continue_training=resume, device=device,
                       progress=progress, validate=validate, scorer=whole_scan_scorer)
    cases = read_json(run_dir / "cases.json")
    val_ids = scored_subset(cases["val"], cell.scored_cases)
    base = {"dataset": data.dataset, "configuration": data.configuration, "strategy": cls.name,
            "fraction": cell.fraction, "fold": str(cell.fold), "n_train": len(cases["train"]),
            # relative to the results root ($SELFCONFIG_RESULTS), so the table still reads after a move
            "run_dir": run_dir.relative_to(data.roots.results).as_posix()}
    rows = []
    if result.validation is not None:
        scores = metric_value(raw_dir, "train", val_ids, result.validation, run_dir / "validation")
        rows.append({**base, "split": "val", "n_cases": len(val_ids), **scores})
    rows += _test_rows(run_dir, raw_dir, device, base, progress, cell.scored_cases)
    write_json(run_dir / SCORES, {"rows": rows})
    write_run_report(run_dir)  # again, now with the test set
    return rows


def _finished(run_dir: Path, wanted: int | None) -> bool:
    """The cell was trained (for at least ``wanted`` epochs) and scored: nothing to do."""
    if is_finished_and_scored(run_dir, wanted, result=SCORES):
        done = trained_epochs(run_dir)
        if wanted is not None and done is not None and int(wanted) < done:
            log.warning("%s: trained for %d epochs already, more than the %d asked for; kept as it is",
                        run_dir, done, int(wanted))
        log.info("%s: finished earlier, skipped", run_dir)
        return True
    if is_finished_and_scored(run_dir, result=SCORES):
        log.info("%s: extending from %d to %d epochs", run_dir, trained_epochs(run_dir), int(wanted))
    return False


def _test_rows(run_dir: Path, raw_dir: Path, device: torch.device, base: dict, progress: bool,
               limit: int | None = None) -> list[dict]:
    """The finished cell's scores on the held-out test set (none when the dataset has no test
    cases; at most ``limit`` of them)."""
    from selfconfig.inference.predictor import Predictor
    from selfconfig.inference.validation import predict_and_score, raw_cases

    _, test_cases = raw_cases(raw_dir, "test")
    if not test_cases:
        return []
    hp = read_json(run_dir / "hyperparameters.json")
    predictor = Predictor.from_checkpoints([run_dir / "checkpoint_final.pt"], device, tta=bool(hp.get("tta", True)))
    test_ids = scored_subset([c.case_id for c in test_cases], limit)
    summary = predict_and_score(predictor, raw_dir, "test", test_ids, run_dir / "test", progress)
    scores = metric_value(raw_dir, "test", test_ids, summary, run_dir / "test")
    return [{**base, "split": "test", "n_cases": len(test_ids), **scores}]
