"""Label schemes: nnU-Net v2 regions, regions_class_order and the ignore label in dataset.json."""

from __future__ import annotations

import numpy as np
import pytest

from selfconfig.dataset.labels import LabelScheme
from selfconfig.dataset.schema import parse_dataset_json
from selfconfig.errors import DatasetFormatError

BRATS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3}


def _ds(labels, **extra):
    return {"channel_names": {"0": "T1"}, "labels": labels, "file_ending": ".nii.gz", **extra}


def test_region_labels_parse_as_nnunet_does():
    info = parse_dataset_json(_ds(BRATS, regions_class_order=[1, 2, 3]))
    s = info.label_scheme
    assert s.has_regions and not s.has_ignore
    assert s.foreground_regions == [(1, 2, 3), (2, 3), (3,)]  # an int among regions is a one-value region
    assert s.output_names == ["whole tumor", "tumor core", "enhancing tumor"]
    assert info.num_classes == 3  # one sigmoid output per region, no background channel
    assert info.label_values == [0, 1, 2, 3]
    assert info.regions_class_order == [1, 2, 3]
    assert s.evaluation_targets() == [("whole tumor", (1, 2, 3)), ("tumor core", (2, 3)), ("enhancing tumor", (3,))]


def test_ignore_label_is_no_output():
    info = parse_dataset_json(_ds({"background": 0, "a": 1, "b": 2, "ignore": 3}))
    s = info.label_scheme
    assert s.ignore_label == 3 and not s.has_regions
    assert info.num_classes == 3 and s.trained_labels == [0, 1, 2]
    assert info.label_values == [0, 1, 2, 3]
    assert s.foreground_labels == [1, 2]
    assert [n for n, _ in s.evaluation_targets()] == ["a", "b"]
    # regions and ignore together (BraTS with unlabelled voxels)
    both = parse_dataset_json(_ds({**BRATS, "ignore": 4}, regions_class_order=[1, 2, 3]))
    assert both.num_classes == 3 and both.label_scheme.ignore_label == 4 and both.label_values == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("labels, extra, message", [
    ({"background": 0, "a": 1, "ignore": 1}, {}, "highest label value"),
    ({"background": 0, "a": 2, "ignore": 1}, {}, "highest label value"),
    ({"background": 0, "a": [1, 2], "ignore": [3]}, {"regions_class_order": [1]}, "one integer"),
    (BRATS, {}, "need 'regions_class_order'"),
    (BRATS, {"regions_class_order": [1, 2]}, "has 2 entries but there are 3 regions"),
    (BRATS, {"regions_class_order": "123"}, "list of integer"),
    ({"background": 0, "a": 1}, {"regions_class_order": [1]}, "no label is a region"),
    ({"background": 0, "a": [1, "x"]}, {}, "integer label values"),
    ({"background": 0, "a": 2}, {}, "consecutive from 0"),
    ({"a": [1, 2], "b": [2]}, {"regions_class_order": [1, 2]}, "background label with value 0"),
])
def test_invalid_label_declarations_are_refused_with_the_reason(labels, extra, message):
    with pytest.raises(DatasetFormatError, match=message):
        parse_dataset_json(_ds(labels, **extra))


def test_classification_has_no_regions_or_ignore():
    base = {"task": "classification", "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}
    with pytest.raises(DatasetFormatError, match="only in segmentation"):
        parse_dataset_json({**base, "labels": {"a": 0, "b": [1, 2]}})
    with pytest.raises(DatasetFormatError, match="only in segmentation"):
        parse_dataset_json({**base, "labels": {"a": 0, "b": 1, "ignore": 2}})


def test_regions_to_label_map_follows_regions_class_order():
    s = LabelScheme.from_labels(BRATS, [1, 2, 3])
    probs = np.zeros((3, 1, 1, 5), np.float32)
    probs[0, ..., 1:] = 0.9  # whole tumor on voxels 1-4
    probs[1, ..., 2:] = 0.8  # core on 2-4
    probs[2, ..., 3] = 0.7  # enhancing on 3
    probs[2, ..., 4] = 0.4  # below the threshold
    assert s.regions_to_label_map(probs).ravel().tolist() == [0, 1, 2, 3, 2]
    # the declared order decides: written the other way round, the outermost region wins
    rev = LabelScheme.from_labels({"background": 0, "enh": [3], "core": [2, 3], "whole": [1, 2, 3]}, [3, 2, 1])
    assert rev.regions_to_label_map(probs[::-1]).ravel().tolist() == [0, 1, 1, 1, 1]
    # round trip: region masks of a nested label map give the label map back
    seg = np.array([[0, 1, 2, 3, 3, 1]])
    assert np.array_equal(s.regions_to_label_map(s.region_masks(seg).astype(np.float32)), seg)


def test_a_prediction_never_holds_the_ignore_value():
    s = LabelScheme.from_labels({"background": 0, "a": 1, "ignore": 2})
    rng = np.random.default_rng(0)
    probs = rng.random((s.num_outputs, 4, 8, 8))
    seg = s.probabilities_to_label_map(probs)
    assert s.num_outputs == 2 and set(np.unique(seg)) <= {0, 1}


def test_verification_knows_region_and_ignore_values(tmp_path):
    """Values listed only inside regions, and the ignore value, are valid label-map values; others are not."""
    from selfconfig.dataset.geometry import Geometry
    from selfconfig.dataset.io import write_segmentation
    from selfconfig.dataset.verify import verify_dataset
    from selfconfig.errors import VerificationError
    from selfconfig.testing import write_region_dataset

    raw = write_region_dataset(tmp_path, "REGV", n_train=2, n_test=0, shape=(8, 12, 12), with_ignore=True)
    info, cases, _ = verify_dataset(raw, progress=False)
    assert info.label_values == [0, 1, 2, 3, 4] and len(cases["train"]) == 2
    seg = np.zeros((8, 12, 12), np.uint8)
    seg[0, 0, 0] = 5
    geom = Geometry(spacing=(1.0, 1.0, 1.0), shape=(8, 12, 12), dim=3, file_ending=".nii.gz")
    write_segmentation(seg, geom, raw / "labelsTr" / "regv_000.nii.gz")
    with pytest.raises(VerificationError, match=r"label values \[5\] are not in dataset.json's labels \[0, 1, 2, 3, 4\]"):
        verify_dataset(raw, progress=False)
