"""Tests for the synthetic NODULE_FPR generator: layout, tables that agree, determinism."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from selfconfig.dataset.schema import load_dataset_json
from selfconfig.examples.nodule_fpr import NEGATIVES_PER_POSITIVE, generate

TINY = dict(n_train_scans=2, n_test_scans=1, n_unlabeled_scans=1, patch_size=16)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _cases(folder: Path) -> set[str]:
    return {p.name[: -len("_0000.nii.gz")] for p in folder.glob("*.nii.gz")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nodule_fpr")
    assert generate(out, seed=0, **TINY) == out
    return out


def test_layout_and_dataset_json(tiny: Path):
    meta = json.loads((tiny / "dataset.json").read_text())
    assert meta["name"] == "NODULE_FPR" and meta["synthetic"] is True
    assert "SYNTHETIC" in meta["description"]
    assert meta["task"] == "classification" and meta["dimensionality"] == 3
    assert meta["labels"] == {"false_candidate": 0, "nodule": 1}
    assert meta["metric"] == "froc_auc_3fp" and meta["surrogate_task"] == "SurrogateWGAN"
    for key in ("labels_file", "test_labels_file", "nodules_file", "scans_file"):
        assert (tiny / meta[key]).is_file(), key
    info = load_dataset_json(tiny)  # the framework's own parser accepts it
    assert info.task == "classification" and info.num_classes == 2
    assert info.normalization_schemes() == ["ct"]
    assert meta["numTraining"] == len(_rows(tiny / "labelsTr.csv")) > 0
    assert meta["numTest"] == len(_rows(tiny / "labelsTs.csv")) > 0
    assert meta["numUnlabeled"] == len(list((tiny / "imagesUn").glob("*.nii.gz"))) > 0
    assert not list(tiny.rglob(".tmp_*"))


def test_every_case_has_exactly_one_image(tiny: Path):
    tr, ts = _rows(tiny / "labelsTr.csv"), _rows(tiny / "labelsTs.csv")
    assert _cases(tiny / "imagesTr") == {r["case"] for r in tr}
    assert _cases(tiny / "imagesTs") == {r["case"] for r in ts}
    un = _cases(tiny / "imagesUn")
    all_cases = [r["case"] for r in tr + ts] + sorted(un)
    assert len(all_cases) == len(set(all_cases))  # names unique across splits


def test_tables_agree(tiny: Path):
    scans = {int(r["scan_id"]): r["split"] for r in _rows(tiny / "scans.csv")}
    assert sorted(scans.values()) == sorted(["train", "train", "test", "unlabeled"])
    nodules = {int(r["nodule_id"]): r for r in _rows(tiny / "nodules.csv")}
    assert nodules and all(scans[int(n["scan_id"])] == n["split"] for n in nodules.values())
    assert all(3.0 <= float(n["diameter_mm"]) <= 15.0 for n in nodules.values())
    hit = set()
    for table, split in (("labelsTr.csv", "train"), ("labelsTs.csv", "test")):
        for r in _rows(tiny / table):
            scan, nid, label = int(r["scan_id"]), int(r["nodule_id"]), int(r["label"])
            assert scans[scan] == split  # all of a scan's candidates in one split
            assert label == (nid >= 0) == (r["candidate_kind"] == "nodule")
            if label:
                nod = nodules[nid]
                assert int(nod["scan_id"]) == scan
                pos = np.array([float(r[k]) for k in "zyx"])
                centre = np.array([float(nod[k]) for k in "zyx"])
                assert np.linalg.norm(pos - centre) <= float(nod["diameter_mm"]) / 2
                hit.add(nid)
    labeled = {i for i, n in nodules.items() if n["split"] != "unlabeled"}
    assert hit == {i for i in labeled if nodules[i]["detected"] == "True"}


def test_negatives_per_positive(tiny: Path):
    labels = [int(r["label"]) for t in ("labelsTr.csv", "labelsTs.csv") for r in _rows(tiny / t)]
    pos, neg = sum(labels), len(labels) - sum(labels)
    assert pos >= 1
    assert 0.5 * NEGATIVES_PER_POSITIVE <= neg / pos <= 1.8 * NEGATIVES_PER_POSITIVE
    kinds = {r["candidate_kind"] for r in _rows(tiny / "labelsTr.csv") if r["label"] == "0"}
    assert len(kinds) >= 3 and {"vessel", "cross_section", "bifurcation"} & kinds


def test_patch_geometry(tiny: Path):
    rows = _rows(tiny / "labelsTr.csv")
    for r in rows[:10]:
        img = sitk.ReadImage(str(tiny / "imagesTr" / f"{r['case']}_0000.nii.gz"))
        assert img.GetSize() == (16, 16, 16)
        assert img.GetPixelID() == sitk.sitkInt16
        spacing = np.array(img.GetSpacing())[::-1]  # (z, y, x)
        assert np.all((spacing >= 0.9) & (spacing <= 1.5))
        arr = sitk.GetArrayFromImage(img)
        assert -1024 <= arr.min() and arr.max() <= 3071 and arr.std() > 10
        # the candidate lies near the patch centre: origin is the corner voxel in the scan frame
        centre = np.array(img.GetOrigin())[::-1] + spacing * 7.5
        pos = np.array([float(r[k]) for k in "zyx"])
        assert np.all(np.abs(pos - centre) <= spacing * 2.5)


def test_deterministic_and_stale_files_removed(tiny: Path, tmp_path: Path):
    generate(tmp_path, seed=0, **TINY)
    for name in ("labelsTr.csv", "labelsTs.csv", "nodules.csv", "scans.csv", "dataset.json"):
        assert (tmp_path / name).read_text() == (tiny / name).read_text(), name
    for case in sorted(_cases(tiny / "imagesTr"))[:5]:
        a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(d / "imagesTr" / f"{case}_0000.nii.gz")))
                for d in (tiny, tmp_path))
        np.testing.assert_array_equal(a, b)
    # another seed gives other data; rerunning smaller into the same folder leaves no stale patches
    generate(tmp_path, n_train_scans=1, n_test_scans=1, n_unlabeled_scans=0, seed=1, patch_size=16)
    assert (tmp_path / "labelsTr.csv").read_text() != (tiny / "labelsTr.csv").read_text()
    assert _cases(tmp_path / "imagesTr") == {r["case"] for r in _rows(tmp_path / "labelsTr.csv")}
    assert not list((tmp_path / "imagesUn").glob("*.nii.gz"))
