"""Run the experiment grid: strategies x label fractions x folds.

Every missing cell is trained (pre-training once per strategy), scored on the held-out test set
and on its validation fold; finished cells are skipped, interrupted ones resume. Results go to
``results/NAME/experiment/`` (results.csv, paired.csv, summary.md, figure.png).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from selfconfig.device import pick_device
from selfconfig.errors import ConfigurationError
from selfconfig.experiments.budgets import Budget, budget_hyperparameters, get_budget, pretext_cost
from selfconfig.experiments.cells import Cell, arm_settings, run_cell
from selfconfig.experiments.claims import claims_for
from selfconfig.experiments.cluster import run_cells_on_cluster
from selfconfig.experiments.scoring import primary_metric
from selfconfig.paths import Roots
from selfconfig.planning import DEFAULT_PLANS_NAME
from selfconfig.training.context import DatasetContext, open_dataset
from selfconfig.training.registry import get_trainer
from selfconfig.utils import read_json

log = logging.getLogger(__name__)


@dataclass
class ExperimentResult:
    folder: Path
    rows: list[dict] = field(default_factory=list)
    results_csv: Path | None = None
    paired_csv: Path | None = None
    summary_md: Path | None = None
    figure: Path | None = None
    summary_text: str = ""
    #: each scored cell's montage of overlays (classification: confusion matrix, ROC curves)
    pictures: list[Path] = field(default_factory=list)
    report: Path | None = None


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
                   overrides: dict | None = None, scheduler: str | None = None,
                   wait: bool = False) -> ExperimentResult:
    """``folds``: None runs the budget's folds. ``scheduler``: run the cells as tasks on a Dask
    cluster (an address, or ``local:N``); None runs them one after the other in this process.
    ``wait``: a cell that another process is training is waited for (then skipped as finished)
    instead of refused."""
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
    data = open_dataset(probe.dataset, config_name, plans_name, roots, tag="" if b.name == "full" else b.name)
    dev = pick_device(device)
    arms = {s: _arm(s, data, b, overrides, dev) for s in strategies}  # refuse incompatible arms before any work
    # a Dice is per case, so a segmentation cell may score a fixed subset; AUC, kappa and FROC are of the whole set
    cells = _cells(data, strategies, fractions, folds, b.scored_cases if data.task == "segmentation" else None)
    raw_dir = roots.raw / data.dataset
    if not (raw_dir / "dataset.json").is_file():
        raise ConfigurationError(f"the raw dataset {raw_dir} is needed to score the test set; it is missing")
    info = _info(raw_dir)
    metric = primary_metric(info)
    log.info("experiment on %s/%s (%s budget): %d cell(s), metric %s", data.dataset, config_name, b.name,
             len(cells), metric)
    hp_overrides = {s: arm[1] for s, arm in arms.items()}
    if scheduler:
        rows = run_cells_on_cluster(scheduler, data, cells, hp_overrides, device, raw_dir, progress)
    else:
        rows = _run_here({s: arm[0] for s, arm in arms.items()}, data, cells, hp_overrides, dev, raw_dir, progress,
                         wait)
    res = ExperimentResult(roots.results / data.dataset / "experiment", rows)
    _report(res, data, b, metric, strategies, fractions, info, {s: arm[2].hp for s, arm in arms.items()}, overrides)
    return res


def _arm(strategy: str, data: DatasetContext, b: Budget, overrides: dict | None, device: torch.device):
    """(trainer class, the overrides its cells train with, their settings) of one arm."""
    cls = get_trainer(strategy)
    cost = pretext_cost(getattr(cls, "pretext_task", None), data.config, data.task, data.plans.budget)
    arm_overrides = {**budget_hyperparameters(b, data.config, cost), **(overrides or {})}
    return cls, arm_overrides, arm_settings(cls, data, arm_overrides, device, b.name)


def _cells(data: DatasetContext, strategies: list[str], fractions: list[float], folds: list,
           scored_cases: int | None = None) -> list[Cell]:
    """Every strategy x fraction x fold; a fold the splits do not have is refused before any cell runs."""
    from selfconfig.data.splits import fold_cases

    splits = data.splits()
    for k in folds:
        fold_cases(splits, k)
    return [Cell(s, float(f), k, scored_cases) for s in strategies for f in fractions for k in folds]


def _run_here(classes: dict[str, type], data: DatasetContext, cells: list[Cell], hp_overrides: dict[str, dict],
              device: torch.device, raw_dir: Path, progress: bool, wait: bool = False) -> list[dict]:
    """The cells one after the other in this process."""
    rows: list[dict] = []
    bar = tqdm(cells, desc="experiment", disable=not progress)
    for i, cell in enumerate(bar):
        bar.set_postfix_str(f"{cell.strategy} frac {cell.fraction:g} fold {cell.fold}")
        log.info("cell %d/%d: %s, fraction %g, fold %s", i + 1, len(cells), cell.strategy, cell.fraction, cell.fold)
        rows += run_cell(classes[cell.strategy], data, cell, hp_overrides[cell.strategy], device, raw_dir, progress,
                         wait)
    return rows


def _report(res: ExperimentResult, data: DatasetContext, b: Budget, metric: str, strategies: list[str],
            fractions: list[float], info, hps: dict, overrides: dict | None) -> None:
    """results.csv, paired.csv, summary.md and figure.png of the grid."""
    from selfconfig.experiments.report import describe_cell_iterations, write_reports

    pretraining = {s: read_json(f) for s in strategies
                   if (f := data.pretrain_dir(s) / "pretrain_summary.json").is_file()}
    claims = claims_for(data.dataset, info.extra.get("surrogate_task"))
    iterations = {s: hp.epochs * hp.iters_per_epoch for s, hp in hps.items()}
    caps = {(hp.max_minutes, bool(hp.max_minutes) and hp.fit_schedule_to_minutes) for hp in hps.values()}
    cap, fitted = caps.pop() if len(caps) == 1 else (None, False)
    write_reports(res, data.dataset, data.configuration, b.name, metric, strategies, fractions, pretraining, claims,
                  describe_cell_iterations(iterations, overrides, cap, fitted,
                                           all(hp.until_converged for hp in hps.values())))


def _info(raw_dir: Path):
    from selfconfig.dataset.schema import load_dataset_json

    return load_dataset_json(raw_dir)
