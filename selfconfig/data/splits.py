"""Cross-validation folds and nested label fractions (the paper's protocol).

* ``preprocessed/NAME/splits.json``: 5 folds, seeded, created once and never rewritten (so every
  run of every strategy sees the same folds). Classification folds are stratified by class.
  Cases that belong together (e.g. the candidates of one scan: column ``scan_id`` of the labels
  table) stay in one fold, so that no scan is in training and validation at once.
* A fraction ``F`` of a fold's training cases is a deterministic, *nested* subset: each class's
  cases are put in one seeded order per fold, and fraction F takes the first round(F * n) of each
  class (at least one of every class present, at least one case overall). So the 10 % set lies
  inside the 25 % set, inside 50 %, inside 100 %.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from selfconfig.errors import ConfigurationError
from selfconfig.utils import write_json

log = logging.getLogger(__name__)

NUM_FOLDS = 5
SPLIT_SEED = 12345


def make_folds(case_ids: list[str], labels: dict[str, int] | None = None, n_folds: int = NUM_FOLDS,
               seed: int = SPLIT_SEED, groups: dict[str, str] | None = None) -> list[dict[str, list[str]]]:
    """``[{"train": [...], "val": [...]}, ...]``; stratified when ``labels`` are given; cases of
    one group (``groups[case]``) always share a fold."""
    ids = sorted(case_ids)
    if len(ids) < 2:
        raise ConfigurationError(f"{len(ids)} training case(s) cannot be split into folds; add cases")
    if groups:
        return _grouped_folds(ids, labels, groups, n_folds, seed)
    n = min(n_folds, len(ids))
    if n < n_folds:
        log.warning("only %d training cases: using %d folds instead of %d", len(ids), n, n_folds)
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    groups: dict[int, list[str]] = {}
    for cid in ids:
        groups.setdefault(labels[cid] if labels else 0, []).append(cid)
    offset = 0
    for key in sorted(groups):
        members = [groups[key][i] for i in rng.permutation(len(groups[key]))]
        for j, cid in enumerate(members):
            fold_of[cid] = (offset + j) % n  # round-robin keeps classes balanced over folds
        offset += len(members)
    folds = []
    for k in range(n):
        val = sorted(c for c in ids if fold_of[c] == k)
        folds.append({"train": sorted(c for c in ids if fold_of[c] != k), "val": val})
    return folds


def _grouped_folds(ids, labels, groups, n_folds, seed):
    """Whole groups to folds: groups in a seeded order, each to the fold that has the fewest cases
    of the group's majority class so far (then the fewest cases)."""
    members: dict[str, list[str]] = {}
    for cid in ids:
        members.setdefault(str(groups[cid]), []).append(cid)
    n = min(n_folds, len(members))
    if n < 2:
        raise ConfigurationError(f"all training cases belong to {len(members)} group(s); at least 2 are needed for folds")
    keys = sorted(members)
    order = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    order.sort(key=lambda g: -len(members[g]))  # big groups first balances the folds
    per_fold_cases = [0] * n
    per_fold_class: list[dict[int, int]] = [dict() for _ in range(n)]
    fold_of: dict[str, int] = {}
    for g in order:
        cls = max((labels[c] for c in members[g]), key=lambda v: (v != 0, v)) if labels else 0
        k = min(range(n), key=lambda f: (per_fold_class[f].get(cls, 0), per_fold_cases[f], f))
        for c in members[g]:
            fold_of[c] = k
        per_fold_cases[k] += len(members[g])
        per_fold_class[k][cls] = per_fold_class[k].get(cls, 0) + 1
    return [{"train": sorted(c for c in ids if fold_of[c] != k), "val": sorted(c for c in ids if fold_of[c] == k)}
            for k in range(n)]


def load_or_create_splits(preprocessed_dir: Path, case_ids: list[str], labels: dict[str, int] | None = None,
                          groups: dict[str, str] | None = None) -> list[dict]:
    """Read splits.json, or create it once. Cases added later are reported, not silently used."""
    path = Path(preprocessed_dir) / "splits.json"
    if path.is_file():
        splits = json.loads(path.read_text())
        known = {c for s in splits for c in s["train"] + s["val"]}
        new = sorted(set(case_ids) - known)
        if new:
            log.warning("%d training case(s) are not in %s (e.g. %s); delete the file to re-split",
                        len(new), path, ", ".join(new[:3]))
        return splits
    splits = make_folds(case_ids, labels, groups=groups)
    write_json(path, splits)
    return splits


def fold_cases(splits: list[dict], fold: int | str) -> tuple[list[str], list[str]]:
    """Training and validation case ids of one fold; ``'all'`` trains on everything."""
    if str(fold) == "all":
        every = sorted({c for s in splits for c in s["train"] + s["val"]})
        return every, []
    k = int(fold)
    if not 0 <= k < len(splits):
        raise ConfigurationError(f"fold {fold} does not exist; use 0..{len(splits) - 1} or 'all'")
    return list(splits[k]["train"]), list(splits[k]["val"])


def fraction_subset(train_ids: list[str], fraction: float, labels: dict[str, int] | None = None,
                    seed: int = SPLIT_SEED, fold: int | str = 0) -> list[str]:
    """The nested, deterministic (stratified) subset of ``train_ids`` for ``fraction``."""
    if not (0.0 < float(fraction) <= 1.0):
        raise ConfigurationError(f"fraction {fraction} must be in (0, 1]")
    ids = sorted(train_ids)
    if fraction >= 1.0:
        return ids
    fold_seed = seed + (1000 if str(fold) == "all" else int(fold) + 1)
    rng = np.random.default_rng(fold_seed)
    groups: dict[int, list[str]] = {}
    for cid in ids:
        groups.setdefault(labels[cid] if labels else 0, []).append(cid)
    chosen: list[str] = []
    for key in sorted(groups):
        members = groups[key]
        order = [members[i] for i in rng.permutation(len(members))]
        k = int(math.floor(fraction * len(order) + 0.5))
        if labels is not None:
            k = max(k, 1)
        chosen += order[:k]
    if not chosen:
        order = [ids[i] for i in np.random.default_rng(fold_seed).permutation(len(ids))]
        chosen = order[:1]
    return sorted(chosen)
