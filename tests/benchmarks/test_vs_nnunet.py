"""The pieces of benchmarks/bench_vs_nnunet.py that do not need nnU-Net: the plans conversion, the
dataset layout, the shared folds, the run lengths, the snapshots, the scoring and the report."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


plans_mod = _load("nnunet_plans")
vs = _load("bench_vs_nnunet")
nnbench = _load("nnunet_bench")


def sc_plans(kind="plain", normalization=("ct",), oversampling=0.33):
    enc = {"kind": kind, "features_per_stage": [16, 32, 64], "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
           "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]], "n_conv_per_stage": [2, 2, 2], "norm": "instance",
           "nonlin": "leaky_relu"}
    cfg = {"spacing": [5.0, 1.0, 0.8], "patch_size": [20, 48, 64], "batch_size": 3, "median_shape": [40, 90, 120],
           "normalization": list(normalization), "resample_order_image": 3, "resample_order_label": 1,
           "separate_z_resampling": True, "foreground_oversampling": oversampling, "estimated_iteration_seconds": 0.5,
           "network": {"dim": 3, "encoder": enc, "decoder": {"n_conv_per_stage": [1, 2], "deep_supervision": True}}}
    return {"recommended_configuration": "3d", "configurations": {"3d": cfg}}


def nn_plans(transpose=(0, 1, 2)):
    base = {"data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": [40, 160, 192], "median_image_size_in_voxels": [40, 180, 240],
            "spacing": [5.0, 0.5, 0.4], "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [True],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
            "architecture": {"network_class_name": "x", "arch_kwargs": {}}, "batch_dice": False}
    return {"dataset_name": "Dataset601_X", "plans_name": "nnUNetPlans", "transpose_forward": list(transpose),
            "transpose_backward": [int(v) for v in np.argsort(transpose)], "configurations": {"3d_fullres": base}}


def test_conversion_copies_selfconfig_network_and_input():
    cfg, unmatched = plans_mod.convert_configuration(nn_plans(), sc_plans(), "3d")
    kw = cfg["architecture"]["arch_kwargs"]
    assert cfg["patch_size"] == [20, 48, 64] and cfg["spacing"] == [5.0, 1.0, 0.8] and cfg["batch_size"] == 3
    assert cfg["median_image_size_in_voxels"] == [40.0, 90.0, 120.0]
    assert cfg["normalization_schemes"] == ["CTNormalization"]
    assert cfg["use_mask_for_norm"] == [True]  # nnU-Net's own decision stays
    assert cfg["data_identifier"] != "nnUNetPlans_3d_fullres"  # its own preprocessed folder
    assert cfg["resampling_fn_data_kwargs"] == {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": True}
    assert cfg["resampling_fn_seg_kwargs"]["order"] == 1 and cfg["resampling_fn_seg_kwargs"]["is_seg"] is True
    assert cfg["architecture"]["network_class_name"].endswith("unet.PlainConvUNet")
    assert kw["n_stages"] == 3 and kw["features_per_stage"] == [16, 32, 64]
    assert kw["kernel_sizes"] == [[1, 3, 3], [3, 3, 3], [3, 3, 3]] and kw["strides"] == [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
    assert kw["n_conv_per_stage"] == [2, 2, 2] and kw["n_conv_per_stage_decoder"] == [1, 2]
    assert kw["norm_op"].endswith("InstanceNorm3d") and kw["nonlin"] == "torch.nn.LeakyReLU"
    assert kw["conv_op"] == "torch.nn.modules.conv.Conv3d"
    assert any("CT intensity" in u for u in unmatched)
    assert not any("oversampling" in u for u in unmatched)


def test_conversion_permutes_axes_and_records_what_differs():
    cfg, unmatched = plans_mod.convert_configuration(nn_plans((2, 0, 1)), sc_plans(normalization=("zscore",),
                                                                                   oversampling=0.5), "3d")
    assert cfg["spacing"] == [0.8, 5.0, 1.0] and cfg["patch_size"] == [64, 20, 48]
    assert cfg["architecture"]["arch_kwargs"]["strides"][1] == [2, 1, 2]
    assert cfg["normalization_schemes"] == ["ZScoreNormalization"]
    assert any("oversampling: selfconfig 0.5" in u for u in unmatched)
    assert any("transposes" in u for u in unmatched)
    assert any("use_mask_for_norm" in u for u in unmatched)


@pytest.mark.parametrize("change, message", [
    (lambda p: p["configurations"]["3d"]["network"]["encoder"].update(kind="resnet"), "PlainConvUNet"),
    (lambda p: p["configurations"]["3d"].update(normalization=["ct", "ct"]), "channel"),
    (lambda p: p["configurations"]["3d"].update(previous_stage="3d_lowres"), "cascade"),
])
def test_conversion_refuses_what_nnunet_cannot_build(change, message):
    p = sc_plans()
    change(p)
    with pytest.raises(plans_mod.ConversionError, match=message):
        plans_mod.convert_configuration(nn_plans(), p, "3d")


def test_add_configuration_keeps_nnunet_own_and_writes_report(tmp_path):
    (tmp_path / "nnUNetPlans.json").write_text(json.dumps(nn_plans()))
    (tmp_path / "plans.json").write_text(json.dumps(sc_plans()))
    report = plans_mod.add_configuration(tmp_path / "nnUNetPlans.json", tmp_path / "plans.json")
    written = json.loads((tmp_path / "nnUNetPlans.json").read_text())
    assert set(written["configurations"]) == {"3d_fullres", "3d_selfconfig"}
    assert written["configurations"]["3d_fullres"] == nn_plans()["configurations"]["3d_fullres"]
    assert written["configurations"]["3d_selfconfig"]["patch_size"] == [20, 48, 64]
    assert report["selfconfig_configuration"] == "3d" and report["batch_size"] == 3
    assert json.loads((tmp_path / "3d_selfconfig_conversion.json").read_text()) == report


def _raw_dataset(root: Path, n_train=3, n_test=2) -> Path:
    raw = root / "TINY"
    for split, n, off in (("Tr", n_train, 0), ("Ts", n_test, n_train)):
        (raw / f"images{split}").mkdir(parents=True)
        (raw / f"labels{split}").mkdir(parents=True)
        for i in range(off, off + n):
            (raw / f"images{split}" / f"C_{i:03d}_0000.nii.gz").write_bytes(b"img%d" % i)
            (raw / f"labels{split}" / f"C_{i:03d}.nii.gz").write_bytes(b"lab%d" % i)
    (raw / "dataset.json").write_text(json.dumps({
        "name": "TINY", "task": "segmentation", "channel_names": {"0": "T1"}, "labels": {"background": 0, "a": 1, "b": 2},
        "file_ending": ".nii.gz", "numTraining": n_train, "numTest": n_test}))
    return raw


def test_nnunet_raw_layout_links_every_split(tmp_path):
    raw = _raw_dataset(tmp_path)
    out = vs.nnunet_raw_dataset(raw, tmp_path / "nnraw", 7)
    assert out.name == "Dataset007_TINY"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["numTraining"] == 3 and meta["labels"] == {"background": 0, "a": 1, "b": 2}
    assert meta["channel_names"] == {"0": "T1"} and meta["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == ["C_003_0000.nii.gz", "C_004_0000.nii.gz"]
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == ["C_000.nii.gz", "C_001.nii.gz", "C_002.nii.gz"]
    src, dst = raw / "labelsTs" / "C_004.nii.gz", out / "labelsTs" / "C_004.nii.gz"
    assert dst.read_bytes() == b"lab4" and os.stat(src).st_ino == os.stat(dst).st_ino
    vs.nnunet_raw_dataset(raw, tmp_path / "nnraw", 7)  # a rerun recreates it
    assert len(list((out / "imagesTr").iterdir())) == 3


def test_nnunet_splits_are_selfconfig_folds(tmp_path):
    from selfconfig.data.splits import make_folds

    folds = make_folds([f"C_{i:03d}" for i in range(7)])
    path = vs.write_nnunet_splits(folds, tmp_path / "Dataset007_TINY")
    written = json.loads(path.read_text())
    assert path.name == "splits_final.json" and len(written) == 5
    assert [set(f["val"]) for f in written] == [set(f["val"]) for f in folds]
    assert set().union(*[f["val"] for f in written]) == {f"C_{i:03d}" for i in range(7)}
    with pytest.raises(SystemExit, match="train and val"):
        vs.write_nnunet_splits([{"train": ["a", "b"], "val": ["b"]}], tmp_path / "bad")


def test_run_lengths():
    assert vs.sc_iters_per_epoch(1000) == 50 and vs.sc_iters_per_epoch(20) == 20 and vs.sc_iters_per_epoch(70) == 35
    assert nnbench.iters_per_epoch_for(10000) == 250  # 40 epochs of nnU-Net's 250
    assert nnbench.iters_per_epoch_for(1000) == 50  # 20 epochs: the poly schedule keeps 20 steps
    assert nnbench.iters_per_epoch_for(20) == 1
    assert nnbench.iters_per_epoch_for(250) == 10


def test_snapshots_at_the_requested_iterations(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("SELFCONFIG_BENCH_SNAPSHOTS", "2,5")
    snaps_mod = _load("selfconfig_snapshots")
    cb = snaps_mod._Snapshots(tmp_path)

    class M:
        network = torch.nn.Linear(2, 1)

    class S:
        global_step = 0
        elapsed_seconds = 0.0

    state = S()
    for step in range(1, 7):
        state.global_step, state.elapsed_seconds = step, step * 1.5
        M.network.weight.data.fill_(step)
        (cb.on_epoch_end(M, state, {}) if step % 3 == 0 else cb.on_step_end(M, state))
    cb.on_fit_end(M, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot_2.pt", "snapshot_5.pt", "snapshot_6.pt"]
    s2 = torch.load(tmp_path / "snapshot_2.pt", weights_only=True)
    assert s2["iterations"] == 2 and s2["loop_seconds"] == 3.0 and float(s2["network"]["weight"][0, 0]) == 2.0
    assert float(torch.load(tmp_path / "snapshot_6.pt", weights_only=True)["network"]["weight"][0, 0]) == 6.0


def _write_labels(path: Path, arr: np.ndarray) -> None:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(img, str(path))


def test_score_folder_and_report(tmp_path):
    ref = np.zeros((8, 8, 8), np.uint8)
    ref[:4] = 1
    ref[4:] = 2
    pred = ref.copy()
    pred[:2] = 2  # class 1: 256 reference voxels, 128 predicted (all right) -> Dice 2*128/(256+128) = 2/3
    _write_labels(tmp_path / "ref" / "C_000.nii.gz", ref)
    _write_labels(tmp_path / "pred" / "C_000.nii.gz", pred)
    labels = {"background": 0, "a": 1, "b": 2}
    s = vs.score_folder(tmp_path / "pred", tmp_path / "ref", labels, ".nii.gz", tmp_path / "eval")
    # class 2: 256 reference voxels, 384 predicted, 256 overlap -> 512/640
    assert s["dice_per_class"] == {"a": round(2 / 3, 4), "b": round(512 / 640, 4)}
    assert s["mean_dice"] == round((2 / 3 + 512 / 640) / 2, 4)
    assert s["per_case_mean_dice"] == {"C_000": s["mean_dice"]}

    def point(tool, seed, it, dice):
        return {"tool": tool, "seed": seed, "iterations": it, "minutes": it / 10, "test_mean_dice": dice,
                "dice_per_class": {"a": dice, "b": dice}}

    res = {"kind": "iterations", "dataset": "TINY", "iterations": 20, "runs": {
        "selfconfig/seed0": {"tool": "selfconfig", "seed": 0, "training": {"seconds_per_iteration": 1.0},
                             "points": [point("selfconfig", 0, 10, 0.5), point("selfconfig", 0, 20, 0.7)]},
        "selfconfig/seed1": {"tool": "selfconfig", "seed": 1, "training": {"seconds_per_iteration": 1.0},
                             "points": [point("selfconfig", 1, 10, 0.3), point("selfconfig", 1, 20, 0.9)]},
        "nnunet/seed0": {"tool": "nnunet", "seed": 0, "training": {"seconds_per_iteration": 2.0},
                         "points": [point("nnunet", 0, 10, 0.1), point("nnunet", 0, 20, 0.2)]}},
        "cross_check": {"selfconfig_evaluation": 0.2, "nnunet_evaluation": 0.2, "difference": 0.0}}
    means = vs.mean_over_seeds(res)
    assert means[("selfconfig", 20)]["mean"] == pytest.approx(0.8) and means[("selfconfig", 10)]["seeds"] == [0, 1]
    assert means[("nnU-Net v2", 10)]["mean"] == pytest.approx(0.1) and means[("nnU-Net v2", 10)]["tool"] == "nnunet"
    f = tmp_path / "iterations_20.json"
    f.write_text(json.dumps(res))
    md, png = vs.write_report([f], tmp_path / "report")
    text = md.read_text()
    assert "| nnU-Net v2 | 0 | 20 | 2.0 | 2.00 | 0.200 | 0.200 | 0.200 |" in text
    assert "| selfconfig | 20 | 0.800 | 2 |" in text  # mean over the two seeds
    assert "difference 0.0" in text
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10000


def test_predict_and_minutes_tables():
    pred = {"kind": "predict", "dataset": "TINY", "iterations": 20, "repeats": 2, "n_test_cases": 4, "runs": {
        "selfconfig": {"median_seconds_per_case": 1.234, "median_peak_tree_pss_mb": 500.4,
                       "median_peak_tree_rss_mb": 600, "repeats": [{"use_mirroring": True}]},
        "nnunet": {"median_seconds_per_case": 3.5, "median_peak_tree_pss_mb": 1500,
                   "median_peak_tree_rss_mb": 2000, "repeats": [{"use_mirroring": True}]}}}
    mins = {"kind": "minutes", "dataset": "TINY", "minutes": 10, "runs": {
        "nnunet/seed0": {"tool": "nnunet", "seed": 0, "plan": {"configuration": "3d_fullres", "patch_size": [80, 96, 80],
                                                               "batch_size": 2},
                         "training": {"iterations": 17, "seconds_per_iteration": 35.0, "peak_tree_pss_mb": 3000,
                                      "peak_tree_rss_mb": 4000},
                         "points": [{"iterations": 17, "minutes": 9.9, "test_mean_dice": 0.004,
                                     "dice_per_class": {"a": 0.004}}]}}}
    text = vs.tables([pred, mins])
    assert "| selfconfig | 1.23 | 500 | 600 | True |" in text
    assert "| nnU-Net v2 | 3.50 | 1500 | 2000 | True |" in text
    assert "| nnU-Net v2 | 3d_fullres | [80, 96, 80] | 2 | 17 | 3000 | 4000 |" in text
    assert "| nnU-Net v2 | 0 | 17 | 9.9 | 35.00 | 0.004 | 0.004 |" in text


def test_report_leaves_out_train_only_results(tmp_path, capsys):
    def run(tool, points):
        return {"tool": tool, "seed": 0, "training": {"seconds_per_iteration": 1.0}, "points": points}

    scored = [{"iterations": 20, "minutes": 2.0, "test_mean_dice": 0.75, "dice_per_class": {"a": 0.75}}]
    files = {
        "iterations_20.json": {"kind": "iterations", "dataset": "TINY", "iterations": 20,
                               "runs": {"selfconfig/seed0": run("selfconfig", scored)}},
        # `iterations --train-only`: trained, nothing scored (no points, or none yet)
        "iterations_500.json": {"kind": "iterations", "dataset": "TINY", "iterations": 500,
                                "runs": {"selfconfig/seed0": {"tool": "selfconfig", "seed": 0, "training": {}},
                                         "nnunet/seed0": run("nnunet", [])}},
        "minutes_10.json": {"kind": "minutes", "dataset": "TINY", "minutes": 10, "runs": {}},
        "predict_20.json": {"kind": "predict", "dataset": "TINY", "iterations": 20, "repeats": 1, "n_test_cases": 2,
                            "runs": {"nnunet": {"median_seconds_per_case": 3.5, "median_peak_tree_pss_mb": 1500,
                                                "median_peak_tree_rss_mb": 2000,
                                                "repeats": [{"use_mirroring": True}]}}},
    }
    for name, res in files.items():
        (tmp_path / name).write_text(json.dumps(res))
    assert [f.name for f in vs.default_report_files(tmp_path)] == ["iterations_20.json", "predict_20.json"]
    capsys.readouterr()
    assert vs.main(["report", "--workdir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    skip_lines = [line for line in err.splitlines() if "skipped" in line]
    assert len(skip_lines) == 1 and "2 of 4" in skip_lines[0] and "--train-only" in skip_lines[0]
    assert "iterations_500.json" in skip_lines[0] and "minutes_10.json" in skip_lines[0]
    assert "iterations_20.json" not in skip_lines[0]
    text = (tmp_path / "report.md").read_text()
    assert "TINY: 20 iterations" in text and "| selfconfig | 0 | 20 | 2.0 | 1.00 | 0.750 | 0.750 |" in text
    assert "| nnU-Net v2 | 3.50 | 1500 | 2000 | True |" in text
    assert "500 iterations" not in text and "10 minutes" not in text
    png = tmp_path / "report.png"
    assert png.is_file() and png.stat().st_size > 10000
    # named with --json, a train-only file is still reported; with nothing scored at all, a clear refusal
    assert vs.main(["report", "--workdir", str(tmp_path), "--json", str(tmp_path / "iterations_500.json"),
                    "--out", str(tmp_path / "only")]) == 0
    assert "TINY: 500 iterations" in (tmp_path / "only.md").read_text()
    assert not (tmp_path / "only.png").exists()  # nothing scored: a table, no empty figure
    for name in ("iterations_20.json", "predict_20.json"):
        (tmp_path / name).unlink()
    with pytest.raises(SystemExit, match="no result JSON with scored points"):
        vs.main(["report", "--workdir", str(tmp_path)])


def test_mirror_axes_reach_nnunet_and_name_the_run():
    p = sc_plans()
    p["configurations"]["3d"].update(mirror_axes=[0, 1], mirror_axes_reason="left/right classes along x")
    _, unmatched = plans_mod.convert_configuration(nn_plans(), p, "3d")
    assert any("mirrors only axes [0, 1] (left/right classes along x)" in u and "--mirror-axes 0 1" in u
               for u in unmatched)
    assert plans_mod.nnunet_mirror_axes([0, 1], [2, 0, 1]) == [1, 2]  # z, y sit at nnU-Net's axes 1, 2
    setup = {"conversion": {"selfconfig_mirror_axes_as_nnunet": [0, 1]}}
    assert vs.resolve_mirror_axes(None, setup) is None
    assert vs.resolve_mirror_axes(["selfconfig"], setup) == [0, 1]
    assert vs.resolve_mirror_axes(["2"], setup) == [2]
    with pytest.raises(SystemExit):
        vs.resolve_mirror_axes(["x"], setup)
    assert vs.variant("nnunet", "fp32", None) == ("", "nnU-Net v2")
    assert vs.variant("nnunet", "fp32", [0, 1]) == ("_mirror01", "nnU-Net v2 (mirror axes 0, 1)")
    assert vs.variant("selfconfig", "bf16", [0, 1]) == ("_bf16", "selfconfig (bf16)")
    assert vs.pred_name("nnunet", 250, False) == "nnunet_pred_nomirror_250"


def test_aal_regions_group_into_lobes_per_side():
    aal = _load("make_mni152_aal")
    regions = [(2001, "Precentral_L"), (2002, "Precentral_R"), (4101, "Hippocampus_L"), (5001, "Calcarine_L"),
               (8111, "Temporal_Pole_Sup_R"), (7101, "Caudate_R"), (9001, "Cerebelum_Crus1_L"), (9100, "Vermis_1_2"),
               (6201, "Parietal_Sup_L"), (5401, "Fusiform_R")]
    mapping, labels = aal.label_map(regions, "lobes")
    assert len(labels) == 16 and labels["background"] == 0 and labels["vermis"] == 15
    named = {v: next(n for n, i in labels.items() if i == mapping[v]) for v, _ in regions}
    assert named == {2001: "frontal_left", 2002: "frontal_right", 4101: "limbic_left", 5001: "occipital_left",
                     8111: "temporal_right", 7101: "deep_grey_right", 9001: "cerebellum_left", 9100: "vermis",
                     6201: "parietal_left", 5401: "temporal_right"}
    mapping, labels = aal.label_map(regions, "all")
    assert mapping[2001] == 1 and mapping[5401] == 10 and labels["Fusiform_R"] == 10 and len(labels) == 11
    with pytest.raises(ValueError, match="Brainstem_L"):
        aal.label_map([(1, "Brainstem_L")], "lobes")


def test_results_of_two_processes_merge(tmp_path):
    out = tmp_path / "iterations_20.json"
    # both start from an empty file (one runs --tool selfconfig, the other --tool nnunet)
    mine = {"kind": "iterations", "runs": {"selfconfig/seed0": {"tool": "selfconfig", "n": 1}}}
    theirs = {"kind": "iterations", "runs": {"nnunet/seed0": {"tool": "nnunet", "n": 1}}}
    vs.merge_result(out, mine, ["selfconfig/seed0"])
    merged = vs.merge_result(out, theirs, ["nnunet/seed0"])
    assert set(merged["runs"]) == {"selfconfig/seed0", "nnunet/seed0"}
    theirs["runs"]["nnunet/seed0"]["n"] = 2  # their newer copy
    vs.merge_result(out, theirs, ["nnunet/seed0"])
    mine["cross_check"] = {"difference": 0.0}
    final = vs.merge_result(out, mine, [])  # only our top-level fields; our stale copy of theirs stays out
    assert final["runs"]["nnunet/seed0"]["n"] == 2 and final["cross_check"] == {"difference": 0.0}
    assert json.loads(out.read_text()) == final and not out.with_suffix(".tmp").exists()
