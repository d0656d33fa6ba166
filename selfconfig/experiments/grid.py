"""Run the experiment grid: strategies x label fractions x folds.

Every missing cell is trained (pre-training once per strategy), scored on the held-out test set
and on its validation fold; finished cells are skipped, interrupted ones resume. Results go to
``results/NAME/experiment/`` (results.csv, paired.csv, summary.md, figure.png).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from selfconfig.errors import ConfigurationError
from selfconfig.experiments.budgets import FEW_ITERATIONS, budget_hyperparameters, get_budget, pretext_cost
from selfconfig.experiments.claims import claims_for
from selfconfig.experiments.scoring import metric_value, primary_metric
from selfconfig.paths import Roots
from selfconfig.planning import DEFAULT_PLANS_NAME
from selfconfig.device import pick_device
from selfconfig.training.context import DatasetContext, open_dataset
from selfconfig.training.registry import get_trainer
from selfconfig.utils import read_json, write_json

log = logging.getLogger(__name__)

#: a cell's scores (validation and test rows) in its run folder; newer than checkpoint_final.pt = done
SCORES = "scores.json"


@dataclass
class Cell:
    strategy: str
    fraction: float
    fold: int | str


@dataclass
class ExperimentResult:
    folder: Path
    rows: list[dict] = field(default_factory=list)
    results_csv: Path | None = None
    paired_csv: Path | None = None
    summary_md: Path | None = None
    figure: Path | None = None
    summary_text: str = ""


def choose_configuration(data_plans, strategies: list[str], requested: str | None) -> str:
    """The plans' recommended configuration, or its ImageNet-compatible twin when ImageNet is one
    of the arms (one architecture for every arm makes the comparison fair)."""
    if requested:
        return requested
    rec = data_plans.recommended_configuration
    if "ImageNet" not in strategies:
        return rec
    if data_plans.configurations[rec].dim == 2:
        return f"{rec}_imagenet"
    raise ConfigurationError(
        "ImageNet weights are 2D and this dataset is 3D: run every arm on slices with -c 2d_imagenet, "
        "or on 3D with -c 3d_imagenet --inflate-3d (kernel inflation)")


def run_experiment(dataset: str | None, strategies: list[str], fractions: list[float], folds: list[int | str] | None,
                   *, configuration: str | None = None, plans_name: str = DEFAULT_PLANS_NAME, budget: str = "quick",
                   roots: Roots | None = None, device: str | None = None, progress: bool = True,
                   overrides: dict | None = None, scheduler: str | None = None) -> ExperimentResult:
    """``folds``: None runs the budget's folds. ``scheduler``: run the cells as tasks on a Dask
    cluster (an address, or ``local:N``); None runs them one after the other in this process."""
    from selfconfig.experiments.report import describe_cell_iterations, write_reports

    bad = [f for f in fractions if not 0.0 < float(f) <= 1.0]  # every cell's request, before the first cell runs
    if bad:
        raise ConfigurationError(f"fraction(s) {', '.join(f'{f:g}' for f in bad)} out of range: each must be in (0, 1]")
    if scheduler:
        from selfconfig.dask_cluster import check_scheduler

        check_scheduler(scheduler)  # before any work (says how to install the cluster extra)

    roots = roots or Roots.resolve()
    probe = open_dataset(dataset, None, plans_name, roots)
    config_name = choose_configuration(probe.plans, strategies, configuration)
    b = get_budget(budget)
    folds = list(b.folds) if folds is None else folds
    tag = "" if b.name == "full" else b.name
    data = open_dataset(probe.dataset, config_name, plans_name, roots, tag=tag)
    dev = pick_device(device)
    # refuse incompatible arms before spending any time
    classes, hp_overrides, iterations, caps = {}, {}, {}, set()
    for s in strategies:
        cls = get_trainer(s)
        cost = pretext_cost(getattr(cls, "pretext_task", None), data.config, data.task, data.plans.budget)
        hp_overrides[s] = {**budget_hyperparameters(b, data.config, cost), **(overrides or {})}
        hp = replace(cls.default_hyperparameters(dev.type), **hp_overrides[s]).check()
        cls(hp).check_compatible(data)
        if getattr(cls, "uses_pretraining", False):
            from selfconfig.pretext.run import check_existing_pretraining

            check_existing_pretraining(cls, data, hp)  # a pre-training made with other settings: say so now
        classes[s] = cls
        its = hp.epochs * hp.iters_per_epoch  # a pure wall-clock budget's bound is never below FEW_ITERATIONS
        iterations[s] = its
        caps.add((hp.max_minutes, bool(hp.max_minutes) and hp.fit_schedule_to_minutes))
        if its < FEW_ITERATIONS:
            log.warning("%s: %d iteration(s) per cell (%s budget, %.2f s estimated per iteration): that is the "
                        "start of training, not a result; plan for shorter iterations "
                        "(selfconfig_plan_and_preprocess --cpu-seconds 0.25) or give more epochs",
                        s, its, b.name, data.config.estimated_iteration_seconds or float("nan"))
    from selfconfig.data.splits import fold_cases

    splits = data.splits()
    for k in folds:
        fold_cases(splits, k)  # a fold the splits do not have is refused before any cell runs
    cells = [Cell(s, float(f), k) for s in strategies for f in fractions for k in folds]
    raw_dir = roots.raw / data.dataset
    if not (raw_dir / "dataset.json").is_file():
        raise ConfigurationError(f"the raw dataset {raw_dir} is needed to score the test set; it is missing")
    info = _info(raw_dir)
    metric = primary_metric(info)
    log.info("experiment on %s/%s (%s budget): %d cell(s), metric %s", data.dataset, config_name, b.name,
             len(cells), metric)
    rows: list[dict] = []
    if scheduler:
        from selfconfig.experiments.cluster import run_cells_on_cluster

        rows = run_cells_on_cluster(scheduler, data, cells, hp_overrides, device, raw_dir, progress)
    else:
        bar = tqdm(cells, desc="experiment", disable=not progress)
        for i, cell in enumerate(bar):
            bar.set_postfix_str(f"{cell.strategy} frac {cell.fraction:g} fold {cell.fold}")
            log.info("cell %d/%d: %s, fraction %g, fold %s", i + 1, len(cells), cell.strategy, cell.fraction,
                     cell.fold)
            rows += run_cell(classes[cell.strategy], data, cell, hp_overrides[cell.strategy], dev, raw_dir, progress)
    folder = roots.results / data.dataset / "experiment"
    res = ExperimentResult(folder, rows)
    pretraining = {s: read_json(f) for s in strategies
                   if (f := data.pretrain_dir(s) / "pretrain_summary.json").is_file()}
    claims = claims_for(data.dataset, info.extra.get("surrogate_task"))
    cap, fitted = caps.pop() if len(caps) == 1 else (None, False)
    write_reports(res, data.dataset, config_name, b.name, metric, strategies, fractions, pretraining, claims,
                  describe_cell_iterations(iterations, overrides, cap, fitted))
    return res


def _info(raw_dir: Path):
    from selfconfig.dataset.schema import load_dataset_json

    return load_dataset_json(raw_dir)


def run_cell(cls, data: DatasetContext, cell: Cell, overrides: dict, device: torch.device, raw_dir: Path,
             progress: bool) -> list[dict]:
    """Train (or resume, or skip) one cell and score it on validation and test."""
    from selfconfig.inference.predictor import Predictor
    from selfconfig.inference.validation import predict_and_score, raw_cases, validate_run
    from selfconfig.training.builder import find_resume_checkpoint, is_finished_and_scored, trained_epochs
    from selfconfig.training.run import train_run

    run_dir = data.run_dir(cls.name, cell.fraction, cell.fold)
    scores_file = run_dir / SCORES
    final = run_dir / "checkpoint_final.pt"
    wanted = overrides.get("epochs")
    if is_finished_and_scored(run_dir, wanted, result=SCORES):
        done = trained_epochs(run_dir)
        if wanted is not None and done is not None and int(wanted) < done:
            log.warning("%s: trained for %d epochs already, more than the %d asked for; kept as it is",
                        run_dir, done, int(wanted))
        log.info("%s: finished earlier, skipped", run_dir)
        return read_json(scores_file)["rows"]
    if is_finished_and_scored(run_dir, result=SCORES):
        log.info("%s: extending from %d to %d epochs", run_dir, trained_epochs(run_dir), int(wanted))
    resume = find_resume_checkpoint(run_dir) is not None
    result = train_run(cls, data, cell.fold, cell.fraction, overrides, continue_training=resume, device=device,
                       progress=progress, validate=validate_run)
    cases = read_json(run_dir / "cases.json")
    rows = []
    base = {"dataset": data.dataset, "configuration": data.configuration, "strategy": cls.name,
            "fraction": cell.fraction, "fold": str(cell.fold), "n_train": len(cases["train"]),
            # relative to the results root ($SELFCONFIG_RESULTS), so the table still reads after a move
            "run_dir": run_dir.relative_to(data.roots.results).as_posix()}
    if result.validation is not None:
        scores = metric_value(raw_dir, "train", cases["val"], result.validation, run_dir / "validation")
        rows.append({**base, "split": "val", "n_cases": len(cases["val"]), **scores})
    hp = read_json(run_dir / "hyperparameters.json")
    predictor = Predictor.from_checkpoints([final], device, tta=bool(hp.get("tta", True)))
    _, test_cases = raw_cases(raw_dir, "test")
    if test_cases:
        test_ids = [c.case_id for c in test_cases]
        summary = predict_and_score(predictor, raw_dir, "test", test_ids, run_dir / "test", progress)
        scores = metric_value(raw_dir, "test", test_ids, summary, run_dir / "test")
        rows.append({**base, "split": "test", "n_cases": len(test_ids), **scores})
    write_json(scores_file, {"rows": rows})
    return rows
