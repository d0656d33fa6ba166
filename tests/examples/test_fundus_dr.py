"""FUNDUS_DR generator: layout, dataset.json, labels table, anatomy and determinism."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from selfconfig.dataset.schema import load_dataset_json
from selfconfig.examples import fundus_dr

SIZE = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw") / "FUNDUS_DR"
    returned = fundus_dr.generate(out, n_train=4, n_test=2, n_unlabeled=2, seed=0, size=SIZE)
    assert returned == out
    return out


def _read_table(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_layout_and_dataset_json(dataset):
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["name"] == "FUNDUS_DR"
    assert meta["synthetic"] is True and "SYNTHETIC" in meta["description"]
    assert meta["task"] == "classification" and meta["dimensionality"] == 2
    assert meta["channel_names"] == {"0": "RGB"}
    assert meta["labels"] == {f"grade_{g}": g for g in range(5)}
    assert (meta["numTraining"], meta["numTest"], meta["numUnlabeled"]) == (4, 2, 2)
    assert meta["surrogate_task"] == "SurrogateRotation"
    assert meta["metric"] == "quadratic_weighted_kappa"
    assert meta["labels_file"] == "labelsTr.csv" and meta["test_labels_file"] == "labelsTs.csv"
    info = load_dataset_json(dataset)  # the project's own parser accepts it
    assert info.is_color and info.num_input_channels == 3

    names = {split: sorted(p.name for p in (dataset / f"images{split}").iterdir()) for split in ("Tr", "Ts", "Un")}
    assert names["Tr"] == [f"FUNDUS_{i:04d}_0000.png" for i in range(4)]
    assert names["Ts"] == [f"FUNDUS_{i:04d}_0000.png" for i in range(4, 6)]
    assert names["Un"] == [f"FUNDUS_{i:04d}_0000.png" for i in range(6, 8)]
    assert not (dataset / "labelsUn.csv").exists()


def test_images_are_rgb_fundus_photos(dataset):
    for path in sorted(dataset.glob("images*/*.png")):
        with Image.open(path) as im:
            assert im.mode == "RGB" and im.size == (SIZE, SIZE)
            a = np.asarray(im)
        assert a[:3, :3].max() < 20 and a[-3:, -3:].max() < 20  # black outside the field of view
        centre = a[SIZE // 4: -SIZE // 4, SIZE // 4: -SIZE // 4].reshape(-1, 3).mean(0)
        assert centre[0] > centre[1] > 0 and centre[0] > centre[2]  # orange-red retina


def test_labels_tables_match_images(dataset):
    for split, table in (("Tr", "labelsTr.csv"), ("Ts", "labelsTs.csv")):
        rows = _read_table(dataset / table)
        assert list(rows[0]) == ["case", "label", "eye"]
        cases = sorted(p.name[: -len("_0000.png")] for p in (dataset / f"images{split}").iterdir())
        assert [r["case"] for r in rows] == cases
        for i, r in enumerate(rows):
            assert int(r["label"]) == fundus_dr.case_grade(0, split, i)
            assert r["eye"] in ("left", "right")


def test_every_grade_in_each_block_of_20_and_skewed():
    grades = [fundus_dr.case_grade(3, "Tr", i) for i in range(40)]
    for block in (grades[:20], grades[20:]):
        counts = np.bincount(block, minlength=5)
        assert counts.min() >= 1 and counts[0] == counts.max()
    assert grades[:20] != grades[20:]  # blocks are shuffled independently


def test_disc_on_nasal_side_and_eyes_mirrored():
    """Right eye: the optic disc (brightest structure of a grade-0 image) is right of centre."""
    for k in range(3):
        for eye, sign in (("right", 1), ("left", -1)):
            img = fundus_dr.render_fundus(np.random.default_rng(k), 0, eye, SIZE).astype(float)
            bright = ndimage.gaussian_filter(img.mean(-1), 2)
            y, x = np.unravel_index(np.argmax(bright), bright.shape)
            assert sign * (x - SIZE / 2) > SIZE * 0.15
            assert abs(y - SIZE / 2) < SIZE * 0.2


def _dark_spot_fraction(img: np.ndarray) -> float:
    g = img[..., 1].astype(float)
    return float((g - ndimage.median_filter(g, 7) < -8).mean())


def test_severe_grade_has_more_dark_lesions():
    """Grade 3 (haemorrhages in all quadrants) has more small dark spots than grade 0."""
    g0 = [_dark_spot_fraction(fundus_dr.render_fundus(np.random.default_rng(k), 0, "left", 96)) for k in range(4)]
    g3 = [_dark_spot_fraction(fundus_dr.render_fundus(np.random.default_rng(k), 3, "left", 96)) for k in range(4)]
    assert np.mean(g3) > 1.5 * np.mean(g0)


def test_deterministic_per_case(tmp_path, dataset):
    small = fundus_dr.generate(tmp_path / "a", n_train=2, n_test=1, n_unlabeled=0, seed=0, size=SIZE)
    for i in range(2):
        a = np.asarray(Image.open(small / "imagesTr" / f"FUNDUS_{i:04d}_0000.png"))
        b = np.asarray(Image.open(dataset / "imagesTr" / f"FUNDUS_{i:04d}_0000.png"))
        assert np.array_equal(a, b)
    # test case 0 has the same content even though its id moved with n_train
    a = np.asarray(Image.open(small / "imagesTs" / "FUNDUS_0002_0000.png"))
    b = np.asarray(Image.open(dataset / "imagesTs" / "FUNDUS_0004_0000.png"))
    assert np.array_equal(a, b)
    assert _read_table(small / "labelsTr.csv") == _read_table(dataset / "labelsTr.csv")[:2]
    other = fundus_dr.make_case(1, "Tr", 0, SIZE)[0]
    assert not np.array_equal(other, fundus_dr.make_case(0, "Tr", 0, SIZE)[0])
