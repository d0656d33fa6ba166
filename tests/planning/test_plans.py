from __future__ import annotations

import json

import time

import numpy as np
import pytest

from planners import DefaultPlanner
from planners.topology import plan_topology
from selfconfig.errors import ConfigurationError, PlansError
from selfconfig.planning import get_planner, load_plans, plans_file
from selfconfig.plans import Plans


def test_plans_json_round_trip(planned, roots):
    res = planned("RT", task="segmentation", dim=3)
    path = plans_file(roots.preprocessed / "RT")
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1
    again = Plans.from_dict(data)
    assert again == res.plans
    assert again.to_dict() == data
    assert load_plans(roots.preprocessed / "RT") == res.plans


def test_schema_version_mismatch_is_a_clear_error(planned, roots):
    planned("SV", task="segmentation", dim=3)
    path = plans_file(roots.preprocessed / "SV")
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(PlansError, match="rerun selfconfig_plan_and_preprocess"):
        load_plans(roots.preprocessed / "SV")


@pytest.mark.parametrize("kw", [dict(task="segmentation", dim=3), dict(task="segmentation", dim=2, shape=(64, 64)),
                                dict(task="classification", dim=3, shape=(16, 16, 16)),
                                dict(task="classification", dim=2, rgb=True, shape=(32, 32))])
def test_plan_invariants(planned, kw):
    plans = planned("INV", **kw).plans
    assert plans.recommended_configuration in plans.configurations
    assert ("3d" in plans.configurations) == (kw["dim"] == 3)
    assert "2d" in plans.configurations
    for name, cfg in plans.configurations.items():
        enc = cfg.network.encoder
        total = enc.total_stride()
        assert len(cfg.patch_size) == cfg.dim == len(total)
        assert all(p % t == 0 for p, t in zip(cfg.patch_size, total)), (name, cfg.patch_size, total)
        assert cfg.batch_size >= 2
        # the budget: estimated CPU seconds per iteration within the target
        assert cfg.estimated_iteration_seconds <= plans.budget.target_iteration_seconds * 1.01 or \
            cfg.patch_size == [max(8, t) for t in total]
        if enc.kind == "plain":
            assert enc.strides[0] == [1] * cfg.dim
            assert len(enc.features_per_stage) == len(enc.kernel_sizes) == len(enc.strides) == len(enc.n_conv_per_stage)
            assert len(cfg.network.decoder.n_conv_per_stage) == enc.n_stages - 1
            # feature maps at the bottleneck are at least 4 voxels along pooled axes
            assert all(p // t >= 4 or t == 1 for p, t in zip(cfg.patch_size, total))
    assert plans.configurations["2d_imagenet"].network.encoder.kind == "efficientnet_lite0"
    assert plans.configurations["2d_imagenet"].data_name == "2d"


def test_budget_is_recorded_and_gpu_planning(make_dataset, roots):
    from selfconfig.planning import plan_and_preprocess

    make_dataset("GPU", task="segmentation", dim=3)
    res = plan_and_preprocess("GPU", roots=roots, gpu_memory_gb=8, num_processes=1, progress=False,
                              configurations=["3d"])
    b = res.plans.budget
    assert b.device == "cuda" and b.gpu_memory_gb == 8
    for cfg in res.plans.configurations.values():
        assert 0 < cfg.estimated_gpu_memory_gb <= 8


def test_topology_handles_anisotropy():
    topo = plan_topology([5.0, 1.0, 1.0], [20, 128, 128])
    # the coarse z axis is not pooled (and has kernel 1) until in-plane has caught up
    assert topo.strides[1] == [1, 2, 2]
    assert topo.kernel_sizes[0] == [1, 3, 3]
    assert all(p % d == 0 for p, d in zip(topo.patch_size, topo.divisible_by))
    iso = plan_topology([1.0, 1.0, 1.0], [64, 64, 64])
    assert all(s == [2, 2, 2] for s in iso.strides[1:]) and len(iso.strides) == 5  # 64 -> 4


def test_target_spacing_of_anisotropic_data():
    from selfconfig.dataset.schema import parse_dataset_json

    info = parse_dataset_json({"task": "segmentation", "channel_names": {"0": "CT"}, "labels": {"bg": 0, "a": 1},
                               "file_ending": ".nii.gz"})
    spacings = [[6.0, 1.0, 1.0]] * 5 + [[3.0, 1.0, 1.0]] * 5
    fp = {"dim": 3, "spacings": spacings, "shapes_after_crop": [[20, 200, 200]] * 10,
          "median_spacing": [4.5, 1, 1], "median_shape_after_crop": [20, 200, 200], "num_training_cases": 10,
          "foreground_intensity_properties_per_channel": {}}
    p = DefaultPlanner(info, fp, cpu_gflops=50.0)
    target = p.fullres_target_spacing()
    assert target[0] == pytest.approx(3.0)  # 10th percentile of the coarse axis (as nnU-Net)
    assert target[1:] == [1.0, 1.0]


def test_custom_planner_by_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_planners.py").write_text(
        "from planners import DefaultPlanner\nclass Tiny(DefaultPlanner):\n    plans_name = 'tinyPlans'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert get_planner("my_planners:Tiny").plans_name == "tinyPlans"
    with pytest.raises(ConfigurationError):
        get_planner("NoSuchPlanner")


def test_cpu_throughput_is_measured_once_per_machine(tmp_path, monkeypatch):
    import planners.budget as budget

    calls = []
    monkeypatch.setattr(budget, "measure_effective_gflops",
                        lambda dim, precision, kind="plain": calls.append((dim, kind)) or (42.0 if kind == "plain" else 7.0))
    monkeypatch.setattr(budget.MachineActivity, "busy_threshold", 1.01)  # an idle machine
    cache = tmp_path / "cpu_throughput.json"
    m = budget.CpuBudgetModel(cache_file=cache)
    assert m.gflops(3) == 42.0 and m.gflops(3) == 42.0 and calls == [(3, "plain")]
    again = budget.CpuBudgetModel(cache_file=cache)
    assert again.gflops(3) == 42.0 and calls == [(3, "plain")]  # from the cache: same plans, no measuring
    # an ImageNet encoder kind is measured on its own, once, and cached next to the plain figure
    assert again.gflops(2, "efficientnet_lite0") == 7.0 and calls == [(3, "plain"), (2, "efficientnet_lite0")]
    assert budget.CpuBudgetModel(cache_file=cache).gflops(2, "efficientnet_lite0") == 7.0 and len(calls) == 2
    fresh = budget.CpuBudgetModel(cache_file=cache, remeasure=True)
    assert fresh.gflops(3) == 42.0 and calls[-1] == (3, "plain") and len(calls) == 3


def test_a_disturbed_cpu_measurement_is_flagged_and_repeated(tmp_path, monkeypatch, planned):
    """A throughput measured while other work ran is a lower bound: the plan says so, and the next
    plan measures again and keeps the better figure until an undisturbed measurement replaces it."""
    import planners.budget as budget
    from selfconfig.planning import format_plans_summary

    rates = iter([10.0, 30.0, 20.0, 41.0])
    monkeypatch.setattr(budget, "measure_effective_gflops", lambda dim, precision, kind="plain": next(rates))
    monkeypatch.setattr(budget.MachineActivity, "busy_threshold", -1.0)  # every measurement disturbed
    cache = tmp_path / "cpu_throughput.json"
    first = budget.CpuBudgetModel(cache_file=cache)
    assert first.gflops(3) == 10.0
    note = first.describe().cpu_measurement_note
    assert note and "busy" in note and "plan again" in note
    assert budget.CpuBudgetModel(cache_file=cache).gflops(3) == 30.0  # measured again, better
    assert budget.CpuBudgetModel(cache_file=cache).gflops(3) == 30.0  # measured again (20), kept 30
    monkeypatch.setattr(budget.MachineActivity, "busy_threshold", 1.01)  # now idle
    idle = budget.CpuBudgetModel(cache_file=cache)
    assert idle.gflops(3) == 41.0 and idle.describe().cpu_measurement_note is None
    assert budget.CpuBudgetModel(cache_file=cache).gflops(3) == 41.0  # final: from the cache, no measuring
    with pytest.raises(StopIteration):
        next(rates)
    # the plan summary shows the warning
    plans = planned("DM", task="segmentation", dim=3).plans
    assert "WARNING" not in format_plans_summary(plans)
    plans.budget.cpu_measurement_note = note
    assert f"WARNING: {note}" in format_plans_summary(plans)


def test_machine_activity_sees_other_processes():
    """A busy loop in another process shows as the machine being busy; this process's own work does not."""
    import multiprocessing as mp
    import os

    import planners.budget as budget

    if not os.path.exists("/proc/stat"):
        pytest.skip("needs /proc/stat")
    act = budget.MachineActivity().start()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.5:  # our own work is not "others"
        sum(range(1000))
    own = act.stop().others_busy
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_spin, args=(1.5,))
    p.start()
    time.sleep(0.5)
    act = budget.MachineActivity().start()
    time.sleep(0.8)
    busy = act.stop().others_busy
    p.join()
    assert busy is not None and own is not None
    assert busy > own  # the spinning process counts as someone else's work
    assert busy >= 0.3 / act.cpus


def _spin(seconds: float) -> None:
    import time as _t

    t0 = _t.perf_counter()
    while _t.perf_counter() - t0 < seconds:
        pass


def test_imagenet_encoders_are_priced_at_their_own_rate(monkeypatch):
    """EfficientNet's depthwise convolutions run far below a plain U-Net's FLOP rate on a CPU;
    pricing them at the plain rate planned 2D batches that ran 10x over the budget."""
    import planners.budget as budget
    from selfconfig.networks import decoder_stage_count, estimate_conv_flops, imagenet_encoder_layout
    from selfconfig.plans import DecoderPlan, HeadPlan, NetworkPlan

    rates = {"plain": 40.0, "efficientnet_lite0": 8.0}
    monkeypatch.setattr(budget, "measure_effective_gflops", lambda dim, precision, kind="plain": rates[kind])
    m = budget.CpuBudgetModel()
    enc = imagenet_encoder_layout("efficientnet_lite0", 2)
    cls = NetworkPlan(dim=2, in_channels=3, num_classes=5, encoder=enc, decoder=DecoderPlan([]), head=HeadPlan())
    patch = [128, 128]
    f_cls = 3 * estimate_conv_flops(cls, patch, "classification")
    assert m.cost_per_sample(cls, patch, "classification") == pytest.approx(f_cls / 8e9)
    seg = NetworkPlan(dim=2, in_channels=3, num_classes=3, encoder=enc,
                      decoder=DecoderPlan([2] * decoder_stage_count(enc)), head=HeadPlan())
    f_seg, f_enc = 3 * estimate_conv_flops(seg, patch, "segmentation"), 3 * estimate_conv_flops(seg, patch, "classification")
    assert f_seg > f_enc
    assert m.cost_per_sample(seg, patch, "segmentation") == pytest.approx(f_enc / 8e9 + (f_seg - f_enc) / 40e9)
    assert m.describe().cpu_gflops_by_encoder == {"efficientnet_lite0 2d": 8.0}


def test_a_target_spacing_of_the_users_replaces_the_planners():
    """nnU-Net's -overwrite_target_spacing: the full-resolution configuration (and the 2d one's
    in-plane spacing) is planned at the user's spacing; a wrong number of values is a clear error."""
    from selfconfig.errors import ConfigurationError
    from selfconfig.testing import planner_inputs

    info, fp = planner_inputs()
    plans = DefaultPlanner(info, fp, cpu_gflops=50.0, target_spacing=[4.0, 3.0, 3.0]).plan()
    assert plans.configurations["3d"].spacing == [4.0, 3.0, 3.0]
    assert plans.configurations["2d"].spacing == [3.0, 3.0]
    assert any("4 x 3 x 3 set by the user" in n for n in plans.notes)
    assert not DefaultPlanner(info, fp, cpu_gflops=50.0).plan().notes
    for bad in ([2.0, 2.0], [1.0, 0.0, 1.0], [1.0, float("nan"), 1.0]):
        with pytest.raises(ConfigurationError, match="give 3 positive values"):
            DefaultPlanner(info, fp, cpu_gflops=50.0, target_spacing=bad)


def test_target_spacing_plans_train_and_predict_in_the_images_geometry(roots, make_dataset, fast_hp, tmp_path):
    """2D images planned at twice their pixel size: the data is preprocessed at half the size, needs
    plans of its own (the default plans stay), and predictions come back at each image's own size."""
    from PIL import Image

    from selfconfig.cli.plan_and_preprocess import main as plan_main
    from selfconfig.errors import ConfigurationError
    from selfconfig.inference.api import predict
    from selfconfig.planning import load_plans, plan_and_preprocess
    from selfconfig.training.api import train

    make_dataset("SP", task="segmentation", dim=2, shape=(64, 64), n_train=4, n_test=2, n_un=0)
    with pytest.raises(ConfigurationError, match="--plans-name"):
        plan_and_preprocess("SP", num_processes=1, cpu_gflops=20.0, roots=roots, progress=False,
                            target_spacing=[2.0, 2.0])
    assert not (roots.preprocessed / "SP").exists()  # nothing written
    assert plan_main(["-d", "SP", "-np", "1", "--cpu-gflops", "20", "--overwrite-target-spacing", "2", "2",
                      "--plans-name", "coarsePlans", "--no-progress"]) == 0
    cfg = load_plans(roots.preprocessed / "SP", "coarsePlans").configurations["2d"]
    assert cfg.spacing == [2.0, 2.0] and cfg.median_shape == [32, 32] and cfg.patch_size == [32, 32]
    assert not (roots.preprocessed / "SP" / "plans.json").exists()
    run = train("Scratch", "SP", plans_name="coarsePlans", hyperparameters=fast_hp, roots=roots, progress=False)
    assert "coarsePlans" in str(run.run_dir)
    out = tmp_path / "pred"
    predict(roots.raw / "SP" / "imagesTs", out, trainer="Scratch", dataset="SP", folds=["0"],
            plans_name="coarsePlans", roots=roots, progress=False)
    for img in sorted((roots.raw / "SP" / "imagesTs").glob("*_0000.png")):
        pred = np.asarray(Image.open(out / img.name.replace("_0000", "")))
        assert pred.shape == (64, 64)
