"""LUNG_LOBES generator: layout, labels, geometry, intensities, determinism and anatomy sides."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from selfconfig.errors import ConfigurationError, SelfconfigError
from selfconfig.examples.lung_lobes import LABELS, generate, synthesize_case


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw") / "LUNG_LOBES"
    assert generate(out, n_train=2, n_test=1, n_unlabeled=1, seed=0, shape_scale=0.5) == out
    return out


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_folder_layout_and_dataset_json(tiny):
    assert _names(tiny / "imagesTr") == ["LOBES_000_0000.nii.gz", "LOBES_001_0000.nii.gz"]
    assert _names(tiny / "labelsTr") == ["LOBES_000.nii.gz", "LOBES_001.nii.gz"]
    assert _names(tiny / "imagesTs") == ["LOBES_002_0000.nii.gz"]
    assert _names(tiny / "labelsTs") == ["LOBES_002.nii.gz"]
    assert _names(tiny / "imagesUn") == ["LOBES_003_0000.nii.gz"]
    meta = json.loads((tiny / "dataset.json").read_text())
    assert meta["name"] == "LUNG_LOBES" and meta["synthetic"] is True
    assert "SYNTHETIC" in meta["description"]
    assert meta["task"] == "segmentation" and meta["dimensionality"] == 3
    assert meta["channel_names"] == {"0": "CT"} and meta["file_ending"] == ".nii.gz"
    assert meta["labels"] == {"background": 0, "left_upper_lobe": 1, "left_lower_lobe": 2,
                              "right_upper_lobe": 3, "right_middle_lobe": 4, "right_lower_lobe": 5}
    assert (meta["numTraining"], meta["numTest"], meta["numUnlabeled"]) == (2, 1, 1)
    assert meta["surrogate_task"] == "SurrogateFlip" and "ISBI 2019" in meta["reference"]


def test_dataset_json_parses_with_selfconfig_schema(tiny):
    from selfconfig.dataset.schema import load_dataset_json

    info = load_dataset_json(tiny)
    assert info.num_classes == 6 and info.normalization_schemes() == ["ct"] and info.synthetic


def test_labels_geometry_and_intensities(tiny):
    pairs = [("imagesTr", "labelsTr", "LOBES_000"), ("imagesTr", "labelsTr", "LOBES_001"),
             ("imagesTs", "labelsTs", "LOBES_002")]
    for img_dir, lab_dir, cid in pairs:
        img = sitk.ReadImage(str(tiny / img_dir / f"{cid}_0000.nii.gz"))
        lab = sitk.ReadImage(str(tiny / lab_dir / f"{cid}.nii.gz"))
        assert img.GetPixelID() == sitk.sitkInt16 and lab.GetPixelID() == sitk.sitkUInt8
        assert img.GetSize() == lab.GetSize()
        assert np.allclose(img.GetSpacing(), lab.GetSpacing())
        assert np.allclose(img.GetOrigin(), lab.GetOrigin())
        assert np.allclose(img.GetDirection(), np.eye(3).ravel())
        sx, sy, sz = img.GetSpacing()  # shape_scale 0.5 doubles the spacing
        assert 9.0 <= sz <= 11.0 and 6.4 <= sx <= 7.6 and sx == pytest.approx(sy)
        hu = sitk.GetArrayFromImage(img)
        label = sitk.GetArrayFromImage(lab)
        assert set(np.unique(label).tolist()) == set(LABELS.values())
        assert hu.min() >= -1024 and 300 < hu.max() < 1500  # bone present, nothing absurd
        assert abs(np.median(hu[:, :3, :3]) + 1000) < 60  # air in the corner
        assert -920 < np.median(hu[label > 0]) < -650  # aerated lung with vessels
        body = (hu > -300) & (hu < 150)
        assert body.mean() > 0.2  # a body, not an empty volume


def test_full_size_volumes_stay_small_and_lobes_are_reasonable():
    for index in range(3):
        case = synthesize_case(index, seed=1)
        assert case.image.shape == case.label.shape and case.image.dtype == np.int16
        nz, ny, nx = case.image.shape
        assert 36 <= nz <= 48 and 80 <= ny <= 112 and ny == nx
        sz, sy, sx = case.spacing
        assert 4.5 <= sz <= 5.5 and 3.2 <= sx <= 3.8
        assert 250 < nx * sx < 420  # field of view holds a ~300 mm chest
        counts = np.bincount(case.label.ravel(), minlength=6)[1:]
        assert counts.min() > 0.04 * counts.sum()


def test_deterministic_and_independent_of_case_count(tiny, tmp_path):
    a = synthesize_case(3, seed=0, shape_scale=0.5)
    b = synthesize_case(3, seed=0, shape_scale=0.5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    # case 3 is the unlabeled scan of the tiny dataset; a bigger dataset holds the same case
    stored = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny / "imagesUn" / "LOBES_003_0000.nii.gz")))
    assert np.array_equal(stored, a.image)
    other = synthesize_case(3, seed=1, shape_scale=0.5)
    assert other.image.shape != a.image.shape or not np.array_equal(other.image, a.image)


def test_left_right_head_feet_front_back_anatomy():
    left_sizes, right_sizes = [], []
    for index in range(4):
        lab = synthesize_case(index, seed=0, shape_scale=0.5).label
        z, y, x = np.nonzero(lab)
        lobe = lab[z, y, x]
        centre = {k: np.array([c[lobe == k].mean() for c in (z, y, x)]) for k in range(1, 6)}
        left, right = lobe <= 2, lobe >= 3
        left_sizes.append(left.sum())
        right_sizes.append(right.sum())
        assert x[left].mean() > x[right].mean()  # patient's left lung at high x
        assert centre[1][0] > centre[2][0] and centre[3][0] > centre[5][0]  # upper lobes superior
        assert centre[4][1] < centre[5][1] and centre[4][1] < centre[3][1]  # middle lobe anterior
        assert centre[4][0] < centre[3][0]  # ... and below the horizontal fissure
    # the heart sits on the left, so the left lung is the smaller one
    assert np.mean(left_sizes) < 0.92 * np.mean(right_sizes)


def test_rerun_removes_stale_cases(tmp_path):
    out = tmp_path / "LUNG_LOBES"
    generate(out, n_train=2, n_test=0, n_unlabeled=1, shape_scale=0.3)
    generate(out, n_train=1, n_test=1, n_unlabeled=0, shape_scale=0.3)
    assert _names(out / "imagesTr") == ["LOBES_000_0000.nii.gz"]
    assert _names(out / "imagesTs") == ["LOBES_001_0000.nii.gz"]
    assert _names(out / "imagesUn") == []


@pytest.mark.parametrize("kwargs", [{"n_train": -1}, {"n_test": 1.5}, {"shape_scale": 0.0},
                                    {"shape_scale": 3}, {"seed": -1}])
def test_bad_arguments_raise_user_errors(tmp_path, kwargs):
    with pytest.raises(ConfigurationError) as err:
        generate(tmp_path / "x", **kwargs)
    assert isinstance(err.value, SelfconfigError)
