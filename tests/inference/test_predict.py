"""Prediction keeps the input's geometry and format: NIfTI affine (also oblique and flipped),
PNG size, DICOM series -> NIfTI with the series' spacing/origin/direction; classification
writes a predictions table whose probabilities sum to one."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from PIL import Image
from pydicom.uid import generate_uid

from selfconfig.testing import rotation_matrix, write_dicom_slice
from selfconfig.dataset.io import read_image
from selfconfig.inference.api import predict
from selfconfig.training.api import train

LABELS = {0, 1, 2}


def _trained(planned, roots, name: str, hp: dict, **kw):
    planned(name, **kw)
    return train("Scratch", name, fold=0, hyperparameters={**hp, "final_validation": False}, roots=roots,
                 progress=False)


def _affine(rotation: np.ndarray, zooms_xyz, origin) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = rotation @ np.diag(zooms_xyz)
    a[:3, 3] = origin
    return a


# ------------------------------------------------------------------------------ 3D NIfTI

def test_predict_3d_nifti_keeps_affine_shape_and_dtype(planned, roots, tmp_path, fast_hp):
    _trained(planned, roots, "TP3", fast_hp, task="segmentation", dim=3)
    src = sorted((roots.raw / "TP3" / "imagesTs").glob("*_0000.nii.gz"))
    assert len(src) == 2
    inp = tmp_path / "in"
    inp.mkdir()
    data0 = np.asanyarray(nib.load(src[0]).dataobj).astype(np.float32)  # (x, y, z)
    data1 = np.asanyarray(nib.load(src[1]).dataobj).astype(np.float32)
    cases = {
        # as written by the dataset (axis-aligned, spacing 1, 1, 2 in x, y, z)
        "plain": (data0, nib.load(src[0]).affine),
        # oblique, other spacing, far from the origin
        "oblique": (data1, _affine(rotation_matrix(0.3, -0.2, 0.5), (0.9, 1.1, 2.5), (-120.5, 33.0, 410.0))),
        # a flipped (left-handed) axis and a shape the network never saw
        "flipped": (data0[2:30, 1:31, 3:15], _affine(np.diag([-1.0, 1.0, 1.0]) @ rotation_matrix(0.0, 0.1, -0.4),
                                                      (1.3, 0.8, 1.7), (50.0, -20.0, 5.0))),
    }
    for name, (arr, aff) in cases.items():
        nib.save(nib.Nifti1Image(arr, aff), inp / f"{name}_0000.nii.gz")

    out = tmp_path / "out"
    res = predict(inp, out, trainer="Scratch", dataset="TP3", tta=False, roots=roots, progress=False)
    assert sorted(res.cases) == sorted(cases)
    info = json.loads((out / "prediction_info.json").read_text())
    assert info["trainer"] == "Scratch" and info["configuration"] == "3d"
    for name, (arr, aff) in cases.items():
        pred = nib.load(out / f"{name}.nii.gz")
        np.testing.assert_allclose(pred.affine, aff, atol=1e-4, err_msg=name)
        assert pred.shape == arr.shape, name
        assert np.issubdtype(pred.get_data_dtype(), np.integer), (name, pred.get_data_dtype())
        values = set(np.unique(np.asanyarray(pred.dataobj)).tolist())
        assert values <= LABELS, (name, values)


def test_predict_3d_with_mirroring_and_probabilities(planned, roots, tmp_path, fast_hp):
    """Mirroring (8 flips in 3D) and --save-probabilities: probabilities on the input grid sum to
    one and the written label map is their argmax."""
    _trained(planned, roots, "TP3M", fast_hp, task="segmentation", dim=3)
    inp = roots.raw / "TP3M" / "imagesTs"
    out = tmp_path / "out"
    predict(inp, out, trainer="Scratch", dataset="TP3M", tta=True, save_probabilities=True, roots=roots,
            progress=False)
    for f in sorted(inp.glob("*_0000.nii.gz")):
        case = f.name[: -len("_0000.nii.gz")]
        pred = nib.load(out / f"{case}.nii.gz")
        seg = np.asanyarray(pred.dataobj)
        probs = np.load(out / f"{case}_probabilities.npz")["probabilities"].astype(np.float32)
        assert probs.shape[0] == 3
        # probabilities are in array order (Z, Y, X); nibabel gives (X, Y, Z)
        assert probs.shape[1:] == seg.shape[::-1]
        np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-2)
        # the written label has the largest probability (up to the float16 storage of the file)
        seg_zyx = seg.transpose(2, 1, 0).astype(np.int64)
        p_written = np.take_along_axis(probs, seg_zyx[None], 0)[0]
        assert (p_written >= probs.max(0) - 2e-3).all()
        assert (probs.argmax(0) == seg_zyx).mean() > 0.99
        np.testing.assert_allclose(pred.affine, nib.load(f).affine, atol=1e-4)


# ------------------------------------------------------------------------------- 2D PNG

def test_predict_2d_png_keeps_size(planned, roots, tmp_path, fast_hp):
    _trained(planned, roots, "TP2", fast_hp, task="segmentation", dim=2, shape=(32, 32))
    inp = tmp_path / "in"
    inp.mkdir()
    sizes = {}
    for f in sorted((roots.raw / "TP2" / "imagesTs").glob("*.png")):
        target = inp / f.name
        target.write_bytes(f.read_bytes())
        sizes[f.name[: -len("_0000.png")]] = Image.open(f).size
    rng = np.random.default_rng(0)
    odd = (rng.random((41, 57)) * 255).astype(np.uint8)  # another size, not a multiple of the patch
    Image.fromarray(odd).save(inp / "odd_0000.png")
    sizes["odd"] = (57, 41)

    out = tmp_path / "out"
    res = predict(inp, out, trainer="Scratch", dataset="TP2", tta=True, roots=roots, progress=False)
    assert sorted(res.cases) == sorted(sizes)
    for case, size in sizes.items():
        path = out / f"{case}.png"
        assert path.is_file(), f"no PNG for {case}: {sorted(p.name for p in out.iterdir())}"
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size == size, (case, im.size, size)
            arr = np.asarray(im)
        assert arr.ndim == 2 and np.issubdtype(arr.dtype, np.integer)
        assert set(np.unique(arr).tolist()) <= LABELS


# -------------------------------------------------------------------------------- DICOM

def _write_dicom_series(folder: Path, volume: np.ndarray, rotation: np.ndarray, origin, dz: float,
                        pixel_spacing=(0.8, 0.7)) -> None:
    """One CT series of ``volume`` (Z, Y, X) with slices along the normal of ``rotation``."""
    folder.mkdir(parents=True)
    series_uid = generate_uid()
    row, col, normal = rotation[:, 0], rotation[:, 1], rotation[:, 2]
    for k, plane in enumerate(volume):
        position = np.asarray(origin) + k * dz * normal
        write_dicom_slice(folder / f"slice{k:03d}.dcm", plane, position, (*row, *col), series_uid, instance=k + 1,
                          pixel_spacing=pixel_spacing, intercept=-100.0, slice_thickness=dz, patient_id="predict-test")


def test_predict_dicom_series_writes_nifti_with_series_geometry(planned, roots, tmp_path, fast_hp):
    _trained(planned, roots, "TPD", fast_hp, task="segmentation", dim=3)  # channel "CT"
    ref_img, _ = read_image(next((roots.raw / "TPD" / "imagesTs").glob("*_0000.nii.gz")))
    volume = np.clip(ref_img[0][::2, 4:24, 6:28] + 100, -1000, 3000)  # (8, 20, 22) CT-like values
    inp = tmp_path / "in"
    series = inp / "patient7"
    _write_dicom_series(series, volume, rotation_matrix(0.15, -0.25, 0.4), origin=(-80.0, 15.5, 220.0), dz=3.0)
    _, geom = read_image(series)
    np.testing.assert_allclose(geom.spacing, (3.0, 0.8, 0.7), atol=1e-5)  # precondition: non-identity

    out = tmp_path / "out"
    res = predict(inp, out, trainer="Scratch", dataset="TPD", tta=False, roots=roots, progress=False)
    assert res.cases == ["patient7"]
    written = out / "patient7.nii.gz"
    assert written.is_file(), sorted(p.name for p in out.iterdir())
    seg, pgeom = read_image(written)
    assert tuple(pgeom.shape) == tuple(geom.shape) == volume.shape
    np.testing.assert_allclose(pgeom.spacing, geom.spacing, atol=1e-4)
    np.testing.assert_allclose(pgeom.origin, geom.origin, atol=1e-4)
    np.testing.assert_allclose(pgeom.direction, geom.direction, atol=1e-4)
    assert set(np.unique(seg).tolist()) <= LABELS
    assert np.issubdtype(nib.load(written).get_data_dtype(), np.integer)

    # the series folder itself as the input (one case named after the folder)
    out2 = tmp_path / "out2"
    res2 = predict(series, out2, trainer="Scratch", dataset="TPD", tta=False, roots=roots, progress=False)
    assert res2.cases == ["patient7"]
    np.testing.assert_array_equal(read_image(out2 / "patient7.nii.gz")[0], seg)


# ----------------------------------------------------------------------- classification

def test_predict_classification_writes_csv(planned, roots, tmp_path, fast_hp):
    _trained(planned, roots, "TPC", fast_hp, task="classification", dim=2, rgb=True, shape=(32, 32))
    inp = roots.raw / "TPC" / "imagesTs"
    out = tmp_path / "out"
    res = predict(inp, out, trainer="Scratch", dataset="TPC", tta=True, roots=roots, progress=False)
    table = pd.read_csv(out / "predictions.csv")
    expected = sorted(f.name[: -len("_0000.png")] for f in inp.glob("*.png"))
    assert sorted(table["case"].astype(str)) == expected == sorted(res.cases)
    prob_cols = [c for c in table.columns if c.startswith("prob_")]
    assert prob_cols == ["prob_background", "prob_class1", "prob_class2"]
    probs = table[prob_cols].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs >= 0).all()
    np.testing.assert_array_equal(table["prediction"].to_numpy(), probs.argmax(1))
    names = np.array(["background", "class1", "class2"])
    assert list(table["prediction_name"]) == list(names[probs.argmax(1)])
    # no label files are written for classification
    assert not list(out.glob("*.png"))


def test_predict_ensembles_every_finished_fold(planned, roots, tmp_path, fast_hp):
    """Without -f, every finished fold of the run is ensembled; -f picks folds."""
    planned("TPE", task="classification", dim=2, rgb=True, shape=(32, 32))
    hp = {**fast_hp, "epochs": 1, "iters_per_epoch": 1, "final_validation": False}
    for fold in (0, 1):
        train("Scratch", "TPE", fold=fold, hyperparameters=hp, roots=roots, progress=False)
    inp = roots.raw / "TPE" / "imagesTs"
    both = predict(inp, tmp_path / "both", trainer="Scratch", dataset="TPE", tta=False, roots=roots, progress=False)
    assert [p.parent.name for p in both.checkpoints] == ["fold_0", "fold_1"]
    one = predict(inp, tmp_path / "one", trainer="Scratch", dataset="TPE", folds=["1"], tta=False, roots=roots,
                  progress=False)
    assert [p.parent.name for p in one.checkpoints] == ["fold_1"]
    p_both = pd.read_csv(tmp_path / "both" / "predictions.csv").filter(like="prob_").to_numpy()
    p_one = pd.read_csv(tmp_path / "one" / "predictions.csv").filter(like="prob_").to_numpy()
    np.testing.assert_allclose(p_both.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(p_both, p_one), "the ensemble equals a single fold"


def test_large_volumes_are_stitched_on_the_cpu(planned, roots, monkeypatch):
    """The decision (no GPU here): the windows run on the GPU and the volume is stitched there,
    unless it would take more than half of the GPU's free memory; then it is stitched on the CPU."""
    import torch

    from selfconfig.inference.predictor import (LoadedModel, Predictor, build_network_for, choose_stitch_device,
                                                stitch_bytes)
    from selfconfig.planning import load_plans

    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    ct = stitch_bytes(num_outputs=4, in_channels=1, spatial_shape=(400, 512, 512), mirroring=True)
    assert ct == 4 * 400 * 512 * 512 * (2 + 12 + 1)  # about 6.3 GB in float32
    assert choose_stitch_device(gpu, ct, free_bytes=40 * 2**30) == gpu
    assert choose_stitch_device(gpu, ct, free_bytes=10 * 2**30) == cpu
    assert choose_stitch_device(cpu, ct, free_bytes=0) == cpu  # a CPU run stitches where it runs

    planned("STITCH", task="segmentation", dim=3, n_train=2, configurations=["3d"])
    plans = load_plans(roots.preprocessed / "STITCH")
    model = LoadedModel(build_network_for(plans, "3d"), plans, "3d", "Scratch", roots.results / "x.pt")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * 2**30, 16 * 2**30))
    auto = Predictor([model], gpu, tta=True, precision="fp32")
    assert auto.stitch_device((1, 64, 128, 128)) == gpu
    assert auto.stitch_device((1, 400, 512, 512)) == cpu
    assert Predictor([model], gpu, precision="fp32", stitch="device").stitch_device((1, 400, 512, 512)) == gpu
    assert Predictor([model], gpu, precision="fp32", stitch="cpu").stitch_device((1, 64, 128, 128)) == cpu
    assert Predictor([model], cpu, precision="fp32", stitch="cpu").stitch_device((1, 400, 512, 512)) == cpu
