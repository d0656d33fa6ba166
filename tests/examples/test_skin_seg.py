"""SKIN_SEG generator: layout, dataset.json, label maps and determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from selfconfig.dataset.schema import load_dataset_json
from selfconfig.examples import skin_seg

SIZE = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw") / "SKIN_SEG"
    returned = skin_seg.generate(out, n_train=4, n_test=2, n_unlabeled=2, seed=0, size=SIZE)
    assert returned == out
    return out


def test_layout_and_dataset_json(dataset):
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["name"] == "SKIN_SEG"
    assert meta["synthetic"] is True and "SYNTHETIC" in meta["description"]
    assert meta["task"] == "segmentation" and meta["dimensionality"] == 2
    assert meta["channel_names"] == {"0": "RGB"}
    assert meta["labels"] == {"background": 0, "face": 1, "hand": 2, "foot": 3, "limb": 4, "trunk": 5,
                              "scalp": 6, "ignore": 7}
    assert (meta["numTraining"], meta["numTest"], meta["numUnlabeled"]) == (4, 2, 2)
    assert meta["surrogate_task"] == "SurrogateColor" and meta["metric"] == "mean_dice"
    assert meta["file_ending"] == ".png"
    info = load_dataset_json(dataset)  # the project's own parser accepts it
    # "ignore" (the uncertain pixels) is no class of the network: 7 outputs, background included
    assert info.is_color and info.num_classes == 7 and info.label_scheme.ignore_label == skin_seg.UNCERTAIN == 7

    for split, ids in (("Tr", range(4)), ("Ts", range(4, 6)), ("Un", range(6, 8))):
        assert sorted(p.name for p in (dataset / f"images{split}").iterdir()) == [f"SKIN_{i:04d}_0000.png" for i in ids]
        if split != "Un":
            assert sorted(p.name for p in (dataset / f"labels{split}").iterdir()) == [f"SKIN_{i:04d}.png" for i in ids]
    assert not (dataset / "labelsUn").exists()


def test_images_rgb_and_labels_single_channel(dataset):
    for path in sorted(dataset.glob("images*/*.png")):
        with Image.open(path) as im:
            assert im.mode == "RGB" and im.size == (SIZE, SIZE)
    for path in sorted(dataset.glob("labels*/*.png")):
        with Image.open(path) as im:
            assert im.mode == "L" and im.size == (SIZE, SIZE)
            lab = np.asarray(im)
        assert lab.dtype == np.uint8 and lab.ndim == 2
        assert set(np.unique(lab)) <= set(skin_seg.LABELS.values())


def test_labels_mark_skin_coloured_pixels():
    """Pixels labelled as a body part are skin-like on average (red > green > blue)."""
    body = []
    for i in range(12):
        img, lab = skin_seg.make_case(0, "Tr", i, SIZE)
        part = (lab >= 1) & (lab <= 6)
        body.append(img[part].reshape(-1, 3))
    colours = np.concatenate(body).astype(float)
    assert len(colours) > 0.05 * 12 * SIZE * SIZE
    r, g, b = colours.mean(0)
    assert r > g > b


def test_every_class_occurs():
    seen = set()
    for i in range(40):
        seen |= set(np.unique(skin_seg.make_case(0, "Tr", i, SIZE)[1]).tolist())
    assert seen == set(skin_seg.LABELS.values())


def test_deterministic_per_case(tmp_path, dataset):
    small = skin_seg.generate(tmp_path / "a", n_train=2, n_test=1, n_unlabeled=0, seed=0, size=SIZE)
    for i in range(2):
        for sub, name in (("imagesTr", f"SKIN_{i:04d}_0000.png"), ("labelsTr", f"SKIN_{i:04d}.png")):
            assert np.array_equal(np.asarray(Image.open(small / sub / name)), np.asarray(Image.open(dataset / sub / name)))
    # test case 0 has the same content even though its id moved with n_train
    a = np.asarray(Image.open(small / "labelsTs" / "SKIN_0002.png"))
    b = np.asarray(Image.open(dataset / "labelsTs" / "SKIN_0004.png"))
    assert np.array_equal(a, b)
    img0, _ = skin_seg.make_case(0, "Tr", 0, SIZE)
    assert not np.array_equal(img0, skin_seg.make_case(1, "Tr", 0, SIZE)[0])
