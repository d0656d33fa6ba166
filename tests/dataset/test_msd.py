"""Medical Segmentation Decathlon tasks: conversion to an nnU-Net v2 raw dataset, then planning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from selfconfig.cli.common import run as run_cli
from selfconfig.cli.convert_msd import main as convert_main
from selfconfig.dataset.msd import convert_msd_dataset, msd_target_name
from selfconfig.errors import ConfigurationError, DatasetFormatError
from selfconfig.planning import plan_and_preprocess
from selfconfig.testing import write_msd_task


@pytest.fixture
def task(tmp_path):
    return write_msd_task(tmp_path / "msd")


def test_names_follow_nnunet():
    assert msd_target_name("x/Task04_Hippocampus") == "Dataset004_Hippocampus"
    assert msd_target_name("Task01_BrainTumour", overwrite_id=501) == "Dataset501_BrainTumour"
    with pytest.raises(DatasetFormatError, match="TaskNN_Name"):
        msd_target_name("Hippocampus")


def test_conversion_splits_channels_and_keeps_geometry(task, roots):
    res = convert_msd_dataset(task, roots=roots, progress=False)
    out = roots.raw / "Dataset007_Tiny"
    assert res.target == out and (res.n_training, res.n_test, res.n_channels) == (4, 1, 2)
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [
        f"tiny_{i:03d}_{c:04d}.nii.gz" for i in range(4) for c in range(2)]
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == ["tiny_004_0000.nii.gz", "tiny_004_0001.nii.gz"]
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == [f"tiny_{i:03d}.nii.gz" for i in range(4)]
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "T1", "1": "FLAIR"}
    assert ds["labels"] == {"background": 0, "oedema": 1, "core": 2}
    assert ds["file_ending"] == ".nii.gz" and "training" not in ds and "modality" not in ds
    # each channel file is the 4D image's volume with its first three axes' geometry
    src = sitk.ReadImage(str(task / "imagesTr" / "tiny_001.nii.gz"))
    arr4 = sitk.GetArrayFromImage(src)
    for c in range(2):
        img = sitk.ReadImage(str(out / "imagesTr" / f"tiny_001_{c:04d}.nii.gz"))
        assert img.GetDimension() == 3
        assert np.array_equal(sitk.GetArrayFromImage(img), arr4[c])
        assert np.allclose(img.GetSpacing(), src.GetSpacing()[:3])
        assert np.allclose(img.GetOrigin(), src.GetOrigin()[:3])
        assert np.allclose(img.GetDirection(), np.asarray(src.GetDirection()).reshape(4, 4)[:3, :3].ravel())
        label = sitk.ReadImage(str(out / "labelsTr" / "tiny_001.nii.gz"))
        assert np.allclose(label.GetDirection(), img.GetDirection()) and label.GetSize() == img.GetSize()
    assert not list(roots.raw.glob(".*"))  # no temporary folder left


def test_converted_task_plans_and_preprocesses_like_any_dataset(task, roots):
    convert_msd_dataset(task, roots=roots, progress=False)
    res = plan_and_preprocess("7", configurations=["3d"], num_processes=1, cpu_gflops=20.0, cpu_target_seconds=0.3,
                              roots=roots, progress=False)
    assert res.dataset == "Dataset007_Tiny"
    assert res.verified_cases == {"train": 4, "test": 1, "unlabeled": 0}
    assert res.plans.num_input_channels == 2 and res.plans.num_classes == 3
    assert res.plans.configuration("3d").normalization == ["zscore", "zscore"]
    from selfconfig.training.context import open_dataset

    ctx = open_dataset("Dataset007_Tiny", "3d", roots=roots)
    refs = ctx.case_refs("train")
    assert len(refs) == 4
    from selfconfig.preprocessing import storage

    data = storage.load_data(ctx.split_folder("train"), refs[0].case_id)
    seg = storage.load_seg(ctx.split_folder("train"), refs[0].case_id)
    assert data.shape[0] == 2 and set(np.unique(seg)) <= {0, 1, 2} and seg.max() == 2


def test_taken_id_is_refused_and_overwrite_id_chooses_another(task, roots):
    convert_msd_dataset(task, roots=roots, progress=False)
    with pytest.raises(ConfigurationError, match="already taken by Dataset007_Tiny.*-overwrite_id"):
        convert_msd_dataset(task, roots=roots, progress=False)
    res = convert_msd_dataset(task, roots=roots, overwrite_id=512, progress=False)
    assert res.target == roots.raw / "Dataset512_Tiny" and (res.target / "dataset.json").is_file()
    # the command: one line and exit code 2 for the taken id, 0 with another
    assert run_cli(convert_main, ["-i", str(task), "--no-progress"], prog="selfconfig_convert_msd") == 2
    assert run_cli(convert_main, ["-i", str(task), "-overwrite_id", "13", "--no-progress"]) == 0
    assert (roots.raw / "Dataset013_Tiny" / "imagesTs" / "tiny_004_0001.nii.gz").is_file()


def test_broken_tasks_are_refused_before_anything_is_written(task, roots):
    meta = json.loads((task / "dataset.json").read_text())
    meta["training"].append({"image": "./imagesTr/gone.nii.gz", "label": "./labelsTr/gone.nii.gz"})
    (task / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match="do not exist, e.g. .*gone.nii.gz"):
        convert_msd_dataset(task, roots=roots, progress=False)
    meta["training"].pop()
    meta["modality"] = {"0": "T1"}  # the images hold two volumes
    (task / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match="holds 2 volumes but dataset.json lists 1"):
        convert_msd_dataset(task, roots=roots, progress=False)
    del meta["modality"]
    (task / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match="'modality'"):
        convert_msd_dataset(task, roots=roots, progress=False)
    assert not roots.raw.exists() or not any(roots.raw.iterdir())
