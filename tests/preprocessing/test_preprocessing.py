from __future__ import annotations

import numpy as np
import pytest

from selfconfig.dataset.geometry import Geometry
from selfconfig.dataset.io import read_case, read_label
from selfconfig.inference.predictor import revert_to_original
from selfconfig.planning import plan_and_preprocess
from selfconfig.preprocessing import storage
from selfconfig.preprocessing.normalize import normalize
from selfconfig.preprocessing.preprocessor import preprocess_case
from selfconfig.preprocessing.resample import resample_labels


def _dice(a, b, labels):
    return np.mean([2 * np.sum((a == l) & (b == l)) / max(1, np.sum(a == l) + np.sum(b == l)) for l in labels])


def test_geometry_round_trip(planned, roots):
    res = planned("GEO", task="segmentation", dim=3, spacing=(3.0, 0.7, 0.7))
    plans = res.plans
    cfg = plans.configuration("3d")
    raw = roots.raw / "GEO"
    image, geom = read_case([raw / "imagesTr" / "geo_000_0000.nii.gz"])
    seg, _ = read_label(raw / "labelsTr" / "geo_000.nii.gz")
    # pad with a zero border so that cropping to non-zero does something
    image = np.pad(image, ((0, 0), (2, 1), (3, 0), (0, 4)))
    seg = np.pad(seg, ((2, 1), (3, 0), (0, 4)))
    geom = Geometry(geom.spacing, image.shape[1:], geom.origin, geom.direction)
    data, seg_p, props = preprocess_case(image, geom, seg, plans, cfg)
    assert props["crop_box"] == [[2, 18], [3, 35], [0, 32]]
    expected = [round(s * sp / t) for s, sp, t in zip(props["shape_after_crop"], geom.spacing, cfg.spacing)]
    assert list(data.shape[1:]) == expected == props["shape_after_resampling"]
    # a perfect prediction in preprocessed space goes back onto the original grid
    onehot = np.stack([(seg_p == c).astype(np.float32) for c in range(plans.num_classes)])
    back = revert_to_original(onehot, props).argmax(0)
    assert back.shape == seg.shape
    assert _dice(back, seg, [1, 2]) > 0.9
    assert (back[:2] == 0).all() and (back[..., -4:] == 0).all()  # outside the crop box: background


def test_preprocessed_files_and_rerun_skips(planned, roots):
    planned("ST", task="segmentation", dim=3)
    folder = roots.preprocessed / "ST" / "3d" / "train"
    ids = storage.list_cases(folder)
    assert len(ids) == 6
    props = storage.load_properties(folder, ids[0])
    assert {"geometry", "crop_box", "shape_after_crop", "spacing_after_resampling", "preprocess_key"} <= set(props)
    data = storage.load_data(folder, ids[0])
    assert isinstance(data, np.memmap) and data.dtype == np.float32
    fg = storage.load_fg_locations(folder, ids[0])
    seg = storage.load_seg(folder, ids[0])
    assert fg.shape[1] == 4 and set(np.unique(fg[:, 0])) <= {1, 2}
    assert all(seg[z, y, x] == c for c, z, y, x in fg[:50])
    for split in ("test", "unlabeled"):
        assert len(storage.list_cases(roots.preprocessed / "ST" / "3d" / split)) == 2
    assert storage.load_seg(roots.preprocessed / "ST" / "3d" / "unlabeled",
                            storage.list_cases(roots.preprocessed / "ST" / "3d" / "unlabeled")[0]) is None
    # a half-written case (its JSON is missing) is redone; finished ones are skipped
    (folder / f"{ids[0]}.json").unlink()
    before = (folder / f"{ids[1]}.npy").stat().st_mtime_ns
    plan_and_preprocess("ST", num_processes=1, cpu_gflops=20.0, cpu_target_seconds=0.3, roots=roots, progress=False)
    assert (folder / f"{ids[0]}.json").is_file()
    assert (folder / f"{ids[1]}.npy").stat().st_mtime_ns == before


def test_verification_failure_writes_nothing(make_dataset, roots):
    from selfconfig.errors import VerificationError

    raw = make_dataset("NOPE", task="segmentation", dim=3)
    (raw / "labelsTr" / "nope_000.nii.gz").unlink()
    with pytest.raises(VerificationError):
        plan_and_preprocess("NOPE", num_processes=1, cpu_gflops=20.0, roots=roots, progress=False)
    assert not (roots.preprocessed / "NOPE").exists()


def test_normalisation_schemes():
    rng = np.random.default_rng(0)
    x = rng.normal(100, 20, (3, 4, 8, 8)).astype(np.float32)
    props = {"0": {"mean": 100.0, "std": 20.0, "percentile_00_5": 60.0, "percentile_99_5": 140.0}}
    ct = normalize(x[:1], ["ct"], props)
    assert ct.min() >= (60 - 100) / 20 - 1e-6 and ct.max() <= (140 - 100) / 20 + 1e-6
    z = normalize(x[:1], ["zscore"], props)
    assert abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-3
    rgb = normalize(np.full((3, 1, 2, 2), 255, np.float32), ["rgb"], props)
    assert np.allclose(rgb, 1.0)


def test_label_resampling_keeps_labels():
    seg = np.zeros((10, 20, 20), np.uint8)
    seg[2:8, 5:15, 5:15] = 1
    seg[4:6, 8:12, 8:12] = 2
    out = resample_labels(seg, [20, 40, 40], [0, 1, 2])
    assert set(np.unique(out)) == {0, 1, 2}
    assert abs((out == 1).sum() / 8 - (seg == 1).sum()) / (seg == 1).sum() < 0.15
