"""3d_lowres: planned when the budget-limited full-resolution patch sees too little of the case,
recommended on CPU budgets, and predicted back into each scan's own geometry."""

from __future__ import annotations

import numpy as np
import pytest

from planners import DefaultPlanner
from selfconfig.testing import planner_inputs

_info_fp = planner_inputs


def test_small_budget_plans_and_recommends_3d_lowres():
    info, fp = _info_fp()
    plans = DefaultPlanner(info, fp, cpu_gflops=20.0, cpu_target_seconds=0.3).plan()
    full, low = plans.configurations["3d"], plans.configurations.get("3d_lowres")
    assert DefaultPlanner.coverage(full) < 0.25
    assert low is not None and plans.recommended_configuration == "3d_lowres"
    assert DefaultPlanner.coverage(low) >= 0.5
    # coarser everywhere, finer axes first: the low-resolution voxels are (nearly) isotropic
    assert all(lo >= fu - 1e-9 for lo, fu in zip(low.spacing, full.spacing))
    assert max(low.spacing) / min(low.spacing) < 1.05
    assert low.data_name == "3d_lowres" and "3d_lowres_imagenet" in plans.configurations
    assert low.estimated_iteration_seconds <= 0.3 * 1.05


def test_large_budget_or_gpu_keeps_3d():
    info, fp = _info_fp(shape=(20, 48, 48))
    plans = DefaultPlanner(info, fp, cpu_gflops=400.0).plan()
    assert "3d_lowres" not in plans.configurations and plans.recommended_configuration == "3d"
    info, fp = _info_fp(shape=(200, 600, 600))
    gpu = DefaultPlanner(info, fp, gpu_memory_gb=8).plan()
    assert "3d_lowres" in gpu.configurations and gpu.recommended_configuration == "3d"  # GPU: full resolution


def test_classification_plans_no_lowres():
    from selfconfig.dataset.schema import parse_dataset_json

    info, fp = _info_fp()
    info = parse_dataset_json({"task": "classification", "channel_names": {"0": "CT"}, "labels": {"a": 0, "b": 1},
                               "file_ending": ".nii.gz"})
    fp["class_counts"] = {"0": 5, "1": 5}
    plans = DefaultPlanner(info, fp, cpu_gflops=20.0, cpu_target_seconds=0.3).plan()
    assert "3d_lowres" not in plans.configurations
    # a case is one patch: the head sees its centre as well as its whole (DefaultPlanner.head_pooling);
    # ImageNet encoders keep the global average their weights were trained with
    assert plans.configurations["3d"].network.head.pooling == "avg_centre"
    assert plans.configurations["3d_imagenet"].network.head.pooling == "avg"
    seg = DefaultPlanner(*_info_fp(), cpu_gflops=20.0, cpu_target_seconds=0.3).plan()
    assert seg.configurations["3d"].network.head.pooling == "avg"


@pytest.mark.slow
def test_lowres_trains_and_predicts_in_the_scans_geometry(roots, make_dataset, fast_hp, tmp_path):
    """A tiny dataset whose 3d patch is made small by a tiny budget: 3d_lowres is recommended, trains,
    and its predictions have each test scan's own shape and spacing."""
    import SimpleITK as sitk

    from selfconfig.inference.api import predict
    from selfconfig.planning import plan_and_preprocess
    from selfconfig.training.api import train

    make_dataset("LR", task="segmentation", dim=3, shape=(16, 48, 48), n_train=4, n_test=2, n_un=0)
    res = plan_and_preprocess("LR", num_processes=1, cpu_gflops=2.0, cpu_target_seconds=0.05, roots=roots,
                              progress=False)
    assert res.plans.recommended_configuration == "3d_lowres", res.plans.configurations["3d"].patch_size
    run = train("Scratch", "LR", fold=0, fraction=1.0, hyperparameters=fast_hp, roots=roots, progress=False)
    assert "3d_lowres" in str(run.run_dir)
    out = tmp_path / "pred"
    predict(roots.raw / "LR" / "imagesTs", out, trainer="Scratch", dataset="LR", folds=["0"], roots=roots, progress=False)
    for img in sorted((roots.raw / "LR" / "imagesTs").glob("*_0000.nii.gz")):
        ref = sitk.ReadImage(str(img))
        pred = sitk.ReadImage(str(out / img.name.replace("_0000", "")))
        assert pred.GetSize() == ref.GetSize() and np.allclose(pred.GetSpacing(), ref.GetSpacing())
