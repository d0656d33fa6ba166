"""Verification: check every case before anything is written, and list every problem at once."""

from __future__ import annotations

import logging
from pathlib import Path

from selfconfig.dataset.cases import Case, discover_all
from selfconfig.dataset.inspect import CaseReport, inspect_cases
from selfconfig.dataset.schema import DatasetInfo, load_dataset_json
from selfconfig.errors import VerificationError

log = logging.getLogger(__name__)


def cross_case_problems(reports: list[CaseReport], info: DatasetInfo) -> list[str]:
    """Problems that only show across cases (mixed dimensionality, channel counts)."""
    problems = []
    dims = {r.dim for r in reports if r.dim is not None}
    if len(dims) > 1:
        by_dim = {d: [r.case_id for r in reports if r.dim == d][:3] for d in dims}
        problems.append(
            "cases mix 2D and 3D images (" + "; ".join(f"{d}D: {', '.join(v)}..." for d, v in by_dim.items())
            + "); one dataset holds one dimensionality"
        )
    chans = {r.num_channels for r in reports if r.num_channels is not None}
    if len(chans) > 1:
        problems.append(f"cases have different channel counts {sorted(chans)}; every case needs the same channels")
    train = [r for r in reports if r.split == "train"]
    if not train:
        problems.append("no training cases found in imagesTr; add at least one labeled case")
    return problems


def verify_dataset(raw_dir: Path, num_processes: int = 1, progress: bool = True,
                   info: DatasetInfo | None = None, pool=None) -> tuple[DatasetInfo, dict[str, list[Case]], list[CaseReport]]:
    """Check every case of every split. Raises :class:`VerificationError` listing all problems.

    Returns the parsed dataset.json, the cases per split and one report per case (reused by the
    fingerprint so that each image is read once).
    """
    raw_dir = Path(raw_dir)
    info = info or load_dataset_json(raw_dir)
    cases, problems = discover_all(raw_dir, info)
    all_cases = [c for split in ("train", "test", "unlabeled") for c in cases[split]]
    from selfconfig.parallel import WorkerPool

    if pool is None:
        with WorkerPool(num_processes) as own:
            reports = inspect_cases(all_cases, info, own, progress)
    else:
        reports = inspect_cases(all_cases, info, pool, progress)
    for r in reports:
        problems.extend(r.problems)
    problems.extend(cross_case_problems(reports, info))
    if problems:
        raise VerificationError(problems, dataset=info.name)
    log.info("verified %d training, %d test and %d unlabeled case(s) of %s: no problems",
             len(cases["train"]), len(cases["test"]), len(cases["unlabeled"]), info.name)
    return info, cases, reports
