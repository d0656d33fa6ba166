"""Fast checks of the benchmark helpers (not part of the default suite, whose testpaths is tests/).

Run: .venv/bin/python -m pytest benchmarks/test_benchmarks.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_predict  # noqa: E402
import common  # noqa: E402
import nnunet_make_model  # noqa: E402

CHILD = textwrap.dedent("""
    import multiprocessing as mp, sys, time
    def init(barrier):
        global BARRIER
        BARRIER = barrier
    def hold(mb):
        block = bytearray(mb * 1024 * 1024)   # zero-filled, so every page is touched
        BARRIER.wait(timeout=50)              # both workers hold their block at the same time ...
        time.sleep(1.0)                       # ... for a second, however slowly a loaded machine spawns them
        return len(block)
    if __name__ == "__main__":
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(2)
        with ctx.Pool(2, initializer=init, initargs=(barrier,)) as pool:
            print(pool.map(hold, [80, 80], chunksize=1))
""")


def test_tree_sampler_sums_the_worker_processes(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    # measured from a small launcher process, as the benchmark scripts are: a process keeps the high-water
    # RSS of the process it was started from (exec keeps ru_maxrss), and pytest's, after importing torch
    # for other tests, exceeds the tree this test measures
    launcher = (f"import json, sys; sys.path.insert(0, {str(Path(common.__file__).parent)!r}); import common; "
                f"m = common.run_measured('child', [sys.executable, {str(script)!r}], "
                f"log=__import__('pathlib').Path({str(tmp_path / 'child.log')!r}), timeout=60); "
                "print(json.dumps(m.__dict__))")
    out = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    m = common.Measurement(**json.loads(out.stdout.splitlines()[-1]))
    assert m.ok, Path(m.log).read_text()
    # two workers hold 80 MB each at the same time: the tree holds more than either one
    assert m.peak_tree_pss_mb > 160
    assert m.peak_tree_rss_mb >= m.peak_tree_pss_mb
    assert m.max_single_rss_mb < m.peak_tree_rss_mb
    assert m.max_processes >= 3


def test_run_measured_reports_failure_and_timeout(tmp_path):
    bad = common.run_measured("bad", [sys.executable, "-c", "raise SystemExit(3)"], log=tmp_path / "bad.log")
    assert bad.returncode == 3 and not bad.ok
    slow = common.run_measured("slow", [sys.executable, "-c", "import time; time.sleep(30)"],
                               log=tmp_path / "slow.log", timeout=0.5)
    assert slow.returncode == -9 and slow.wall_s < 10


def test_nnunet_dataset_has_the_keys_nnunet_reads(tmp_path):
    src = tmp_path / "LUNG_LOBES"
    for sub in ("imagesTr", "labelsTr"):
        (src / sub).mkdir(parents=True)
    for i in range(2):
        (src / "imagesTr" / f"LOBES_{i:03d}_0000.nii.gz").write_bytes(b"x")
        (src / "labelsTr" / f"LOBES_{i:03d}.nii.gz").write_bytes(b"y")
    (src / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1},
                                                  "file_ending": ".nii.gz", "numTraining": 2}))
    out = common.make_nnunet_dataset(src, tmp_path / "nnraw")
    meta = json.loads((out / "dataset.json").read_text())
    assert out.name == "Dataset501_LungLobes"
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz" and meta["labels"]["a"] == 1
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == ["LOBES_000_0000.nii.gz", "LOBES_001_0000.nii.gz"]


def test_nnunet_configuration_copies_selfconfig_topology():
    sc_config = {
        "patch_size": [20, 40, 40], "spacing": [5.0, 3.5, 3.5], "batch_size": 2, "median_shape": [44, 101, 101],
        "normalization": ["ct"], "resample_order_image": 3, "resample_order_label": 1,
        "separate_z_resampling": False,
        "network": {"dim": 3, "encoder": {"kind": "plain", "features_per_stage": [16, 32, 64],
                                          "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [1, 2, 2]],
                                          "n_conv_per_stage": [2, 2, 2], "norm": "instance", "nonlin": "leaky_relu"},
                    "decoder": {"n_conv_per_stage": [2, 2]}},
    }
    base = {"patch_size": [48, 112, 112], "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0}}
    cfg = nnunet_make_model.nnunet_configuration({"configurations": {"3d_fullres": base}}, sc_config)
    kw = cfg["architecture"]["arch_kwargs"]
    assert cfg["patch_size"] == [20, 40, 40] and cfg["normalization_schemes"] == ["CTNormalization"]
    assert kw["n_stages"] == 3 and kw["features_per_stage"] == [16, 32, 64]
    assert kw["strides"] == [[1, 1, 1], [2, 2, 2], [1, 2, 2]] and kw["n_conv_per_stage_decoder"] == [2, 2]
    assert kw["norm_op"].endswith("InstanceNorm3d") and kw["nonlin"] == "torch.nn.LeakyReLU"
    assert cfg["resampling_fn_data_kwargs"]["is_seg"] is False and cfg["resampling_fn_data_kwargs"]["order"] == 3


def test_nnunet_model_mirrors_selfconfig_axes():
    """nnU-Net's checkpoint allows the axes selfconfig's plan mirrors, in nnU-Net's axis order."""
    sc_config = {"patch_size": [20, 40, 40], "mirror_axes": [0, 1]}  # x (axis 2) left out by the mirror rule
    assert nnunet_make_model.mirror_axes({"transpose_forward": [0, 1, 2]}, sc_config) == [0, 1]
    assert nnunet_make_model.mirror_axes({"transpose_forward": [2, 0, 1]}, sc_config) == [1, 2]
    # a plan from before mirror_axes: every axis
    assert nnunet_make_model.mirror_axes({"transpose_forward": [0, 1, 2]}, {"patch_size": [20, 40, 40]}) == [0, 1, 2]


def test_predict_report_counts_the_mirrorings_of_the_plan(capsys):
    def m(wall):
        return common.Measurement("x", [], wall, 100.0, 80.0, 50.0, 1, 0, "log")

    tools = ["selfconfig (bf16, as shipped)", "nnU-Net v2 (fp32)"]
    sc_info = {"patch_size": [16, 48, 48], "features_per_stage": [8, 16], "parameters": 10, "parameter_shapes": [[1]],
               "mirror_axes": [0, 1], "mirror_axes_reason": "axis 2 (x): classes 1/3 are mirror images"}
    nn_info = {"patch_size": [16, 48, 48], "parameters": 10, "parameter_shapes": [[1]], "mirror_axes": [0, 1]}
    runs = {f"{t}|mirroring={o}|n={n}": [m(w)] for t in tools for o in ("off", "on") for n, w in ((1, 10.0), (3, 14.0))}
    axes = bench_predict.tool_mirror_axes(tools, sc_info, nn_info)
    summary = bench_predict.summarise(runs, tools, [False, True], 3, axes)
    assert [(r["mirroring"], r["mirrorings"]) for r in summary] == [("off", 1), ("off", 1), ("on", 4), ("on", 4)]
    assert summary[0]["per_case_s"] == 2.0 and summary[2]["mirror_axes"] == [0, 1]
    args = SimpleNamespace(cases=3, repeats=1, plan="cpu", load_before=None)
    bench_predict.print_report(summary, sc_info, nn_info, args)
    out = capsys.readouterr().out
    assert "selfconfig (bf16, as shipped) mirrors axes [0, 1] (4 mirrorings)" in out
    assert "nnU-Net v2 (fp32) mirrors axes [0, 1] (4 mirrorings)" in out and "NOT the same" not in out
    assert "| nnU-Net v2 (fp32) | on | 4 |" in out and "8 mirrorings" not in out
    # a model made before nnunet_make_model.py recorded its axes mirrors every axis: said, not hidden
    old = {k: v for k, v in nn_info.items() if k != "mirror_axes"}
    summary = bench_predict.summarise(runs, tools, [True], 3, bench_predict.tool_mirror_axes(tools, sc_info, old))
    assert [r["mirrorings"] for r in summary] == [4, 8]
    bench_predict.print_report(summary, sc_info, old, args)
    assert "NOT the same number of mirrorings" in capsys.readouterr().out
