from __future__ import annotations

import json

import pytest

from selfconfig.data.splits import fold_cases, fraction_subset, load_or_create_splits, make_folds
from selfconfig.errors import ConfigurationError

IDS = [f"c{i:03d}" for i in range(40)]


def test_folds_partition_cases_and_are_seeded():
    folds = make_folds(IDS)
    assert len(folds) == 5
    vals = [c for f in folds for c in f["val"]]
    assert sorted(vals) == IDS  # every case validated exactly once
    for f in folds:
        assert not set(f["train"]) & set(f["val"])
        assert sorted(f["train"] + f["val"]) == IDS
    assert make_folds(IDS) == folds
    assert make_folds(IDS, seed=1) != folds


def test_stratified_folds_balance_classes():
    labels = {c: (1 if i < 10 else 0) for i, c in enumerate(IDS)}
    for f in make_folds(IDS, labels):
        assert sum(labels[c] for c in f["val"]) == 2  # 10 positives over 5 folds


@pytest.mark.parametrize("labels", [None, "strat"])
def test_fractions_are_nested_deterministic_and_nonempty(labels):
    lab = {c: i % 3 for i, c in enumerate(IDS)} if labels else None
    train, _ = fold_cases(make_folds(IDS, lab), 0)
    subsets = [fraction_subset(train, f, lab, fold=0) for f in (0.1, 0.25, 0.5, 1.0)]
    for small, big in zip(subsets, subsets[1:]):
        assert set(small) <= set(big)
        assert len(small) < len(big)
    assert subsets[-1] == sorted(train)
    assert subsets[0] == fraction_subset(train, 0.1, lab, fold=0)
    assert fraction_subset(train, 0.1, lab, fold=1) != subsets[0]
    if lab:
        for s in subsets:
            assert {lab[c] for c in s} == {0, 1, 2}  # every class present
        counts = [sum(lab[c] == k for c in subsets[2]) for k in range(3)]
        assert max(counts) - min(counts) <= 1  # stratified


def test_fraction_keeps_at_least_one_case():
    assert len(fraction_subset(IDS[:4], 0.01)) == 1


def test_bad_fraction_and_fold():
    with pytest.raises(ConfigurationError):
        fraction_subset(IDS, 0.0)
    with pytest.raises(ConfigurationError):
        fraction_subset(IDS, 1.5)
    with pytest.raises(ConfigurationError):
        fold_cases(make_folds(IDS), 7)


def test_fold_all_trains_on_everything():
    train, val = fold_cases(make_folds(IDS), "all")
    assert train == IDS and val == []


def test_splits_file_created_once(tmp_path):
    s1 = load_or_create_splits(tmp_path, IDS)
    text = (tmp_path / "splits.json").read_text()
    s2 = load_or_create_splits(tmp_path, IDS + ["extra"])  # new case: reported, file unchanged
    assert s1 == s2 == json.loads(text)
    assert (tmp_path / "splits.json").read_text() == text


def test_grouped_folds_keep_groups_together():
    groups = {c: f"scan{i // 4}" for i, c in enumerate(IDS)}  # 10 scans of 4 candidates
    labels = {c: int(i % 4 == 0) for i, c in enumerate(IDS)}
    folds = make_folds(IDS, labels, groups=groups)
    assert len(folds) == 5
    assert sorted(c for f in folds for c in f["val"]) == IDS
    for f in folds:
        val_groups = {groups[c] for c in f["val"]}
        assert not val_groups & {groups[c] for c in f["train"]}
        assert len(val_groups) == 2
