"""selfconfig and nnU-Net v2 on the same scans: the same iterations, the same minutes, the same prediction.

Runs with selfconfig's python; nnU-Net runs in its own virtualenv (``benchmarks/nnunet_env.sh``,
``NNUNET_VENV``), through its command-line tools and ``nnunet_bench.py`` (a trainer subclass that
sets the run's length, snapshots and mirror axes). selfconfig's package never imports nnU-Net.
Everything lives under ``--workdir``: ``raw/`` (selfconfig), ``nnunet_raw/``, ``preprocessed/``,
``nnunet_preprocessed/``, ``results/``, ``nnunet_results/``, ``runs/`` and the JSON of each command.

Subcommands (run them in this order; each reuses what an earlier one finished):

``setup --dataset MNI152_TISSUE --id 601 [--cpu-gflops G]``
    makes the raw dataset if missing (``make_mni152_tissue.py`` needs ``pip install nilearn``;
    ``--raw-source DIR`` takes any dataset in nnU-Net v2 raw format instead), lays it out for
    nnU-Net (``DatasetNNN_NAME``, hard links), plans and preprocesses it with selfconfig
    (``--cpu-gflops`` fixes the CPU plan) and with nnU-Net (its default ``3d_fullres`` plus
    ``3d_selfconfig``: selfconfig's recommended configuration as an nnU-Net plans configuration,
    ``nnunet_plans.py``), and gives nnU-Net selfconfig's five folds as ``splits_final.json``.
``iterations --iterations 1000 --snapshots 100 250 500 750 1000 --seeds 0 1``
    both train selfconfig's network (fold 0) for N iterations, each with its own recipe (sampling,
    augmentation, loss, optimiser, schedule fitted to N); every snapshot of both predicts the test
    scans with its own inference (sliding window, step 0.5, mirroring unless ``--no-mirroring``)
    and is scored by the same code (``selfconfig.evaluation``); one prediction is also scored by
    nnU-Net's ``nnUNetv2_evaluate_folder`` and the difference recorded. ``--train-only`` stops
    after training. A finished training is reused. ``--nnunet-mirror-axes 0 1``: nnU-Net mirrors
    only along these axes (training and inference).
``minutes --minutes 10``
    each tool with its own defaults (selfconfig: its recommended configuration, ``--max-minutes``;
    nnU-Net: ``3d_fullres``, epochs fitted to the minutes by ``nnunet_bench.py``), then both scored;
    iterations done and the peak memory (PSS/RSS) of the process tree.
``predict --iterations 1000 --repeats 2``
    the networks that ``iterations`` trained (seed 0, snapshot N), test scans, wall time per case and
    peak memory, both in fp32, with the same mirroring (``--mirroring on|off``).
``report``
    every JSON of the workdir with scored points or timed runs (not those of ``iterations
    --train-only``; ``--json`` picks files) as markdown tables and one figure (test mean Dice
    against iterations and against minutes, one line per framework, seeds as points and their mean).

Training and timing runs take their torch threads from the environment (OMP_NUM_THREADS);
run them on an idle machine. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import nnunet_plans  # noqa: E402

BENCH = Path(__file__).resolve().parent
SC_TRAINER = "selfconfig_snapshots:ScratchSnapshots"
SC_TRAINER_NAME = "ScratchSnapshots"
MAKERS = {"MNI152_TISSUE": "make_mni152_tissue.py", "MNI152_AAL": "make_mni152_aal.py"}
TOOLS = ("selfconfig", "nnunet")
LABEL = {"selfconfig": "selfconfig", "nnunet": "nnU-Net v2"}


# ------------------------------------------------------------------------------------------ layout
class Work:
    """The folders of one workdir."""

    def __init__(self, workdir: str | Path):
        self.root = Path(workdir).resolve()
        self.raw = self.root / "raw"
        self.pre = self.root / "preprocessed"
        self.results = self.root / "results"
        self.nn_raw = self.root / "nnunet_raw"
        self.nn_pre = self.root / "nnunet_preprocessed"
        self.nn_results = self.root / "nnunet_results"
        self.runs = self.root / "runs"
        self.logs = self.root / "logs"

    @property
    def setup_file(self) -> Path:
        return self.root / "setup.json"

    def setup(self) -> dict:
        if not self.setup_file.is_file():
            sys.exit(f"{self.setup_file} not found: run `bench_vs_nnunet.py setup --workdir {self.root}` first")
        return json.loads(self.setup_file.read_text())

    def sc_env(self) -> dict[str, str]:
        env = common.selfconfig_env(self.raw, self.pre, self.results)
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return env

    def nn_env(self) -> dict[str, str]:
        return common.nnunet_env(self.nn_raw, self.nn_pre, self.nn_results)


def nnunet_dataset_name(dataset_id: int, name: str) -> str:
    return f"Dataset{int(dataset_id):03d}_{name}"


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def nnunet_raw_dataset(sc_raw: Path, nn_raw_root: Path, dataset_id: int) -> Path:
    """``nn_raw_root/DatasetNNN_NAME``: selfconfig's raw dataset (nnU-Net v2's layout already) with
    the keys nnU-Net reads in dataset.json; images and labels as hard links (copies across file
    systems); test cases in imagesTs/labelsTs. Recreated on every call."""
    meta = json.loads((sc_raw / "dataset.json").read_text())
    ending = meta.get("file_ending", ".nii.gz")
    out = nn_raw_root / nnunet_dataset_name(dataset_id, sc_raw.name)
    if out.exists():
        shutil.rmtree(out)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        for f in sorted((sc_raw / sub).glob(f"*{ending}")) if (sc_raw / sub).is_dir() else []:
            link_or_copy(f, out / sub / f.name)
    n_train = len(list((out / "labelsTr").glob(f"*{ending}")))
    if n_train == 0:
        sys.exit(f"{sc_raw} has no labelsTr/*{ending}: nothing to train nnU-Net on")
    nn_meta = {"channel_names": meta["channel_names"], "labels": meta["labels"], "numTraining": n_train,
               "file_ending": ending, "name": out.name,
               "description": f"selfconfig raw dataset {sc_raw.name}, laid out for nnU-Net v2 by bench_vs_nnunet.py"}
    (out / "dataset.json").write_text(json.dumps(nn_meta, indent=2) + "\n")
    return out


def write_nnunet_splits(sc_splits: list[dict], nn_preprocessed_dataset: Path) -> Path:
    """nnU-Net's splits_final.json from selfconfig's splits.json (the same list of {train, val})."""
    folds = [{"train": sorted(f["train"]), "val": sorted(f["val"])} for f in sc_splits]
    for k, f in enumerate(folds):
        if set(f["train"]) & set(f["val"]):
            sys.exit(f"fold {k} of selfconfig's splits has cases in train and val")
    path = nn_preprocessed_dataset / "splits_final.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(folds, indent=2) + "\n")
    return path


def run_step(cmd: list[str], env: dict, log: Path, what: str, interval: float = 0.5) -> common.Measurement:
    print(f"[{time.strftime('%H:%M:%S')}] {what}: {' '.join(cmd)}", flush=True)
    m = common.run_measured(what, cmd, env=env, log=log, interval=interval)
    if not m.ok:
        common.fail(what, m)
    return m


# ------------------------------------------------------------------------------------------ setup
def cmd_setup(args) -> int:
    w = Work(args.workdir)
    reason = common.nnunet_missing_reason()
    if reason:
        sys.exit(reason)
    name = args.dataset
    sc_raw = w.raw / name
    if not (sc_raw / "dataset.json").is_file():
        if args.raw_source:
            src = Path(args.raw_source)
            for f in src.rglob("*"):
                if f.is_file():
                    link_or_copy(f, sc_raw / f.relative_to(src))
        elif name in MAKERS:
            run_step([sys.executable, str(BENCH / MAKERS[name]), "--raw", str(w.raw), "--train", str(args.train),
                      "--test", str(args.test)], dict(os.environ), w.logs / "make_dataset.log", f"make {name}")
        elif name == common.SELFCONFIG_DATASET_NAME:
            common.make_lung_lobes(w.raw, args.train, args.test)
        else:
            sys.exit(f"{sc_raw} does not exist; give --raw-source DIR or one of {sorted(MAKERS)} / LUNG_LOBES")
    nn_raw = nnunet_raw_dataset(sc_raw, w.nn_raw, args.id)
    nn_name = nn_raw.name
    env = w.sc_env()

    # selfconfig: plan (every configuration), preprocess
    cmd = [common.selfconfig_exe("selfconfig_plan_and_preprocess"), "-d", name, "-np", str(args.np), "--no-progress"]
    if args.cpu_gflops:
        cmd += ["--cpu-gflops", str(args.cpu_gflops)]
    sc_plan = run_step(cmd, env, w.logs / "selfconfig_plan_and_preprocess.log", "selfconfig plan+preprocess")
    sc_plans_file = w.pre / name / "plans.json"
    sc_plans = json.loads(sc_plans_file.read_text())
    sc_config = args.configuration or sc_plans["recommended_configuration"]
    # the five folds, written by selfconfig (as its first training would)
    from selfconfig.paths import Roots
    from selfconfig.training.context import open_dataset

    splits = open_dataset(name, sc_config, roots=Roots(w.raw, w.pre, w.results)).splits()

    # nnU-Net: its own plan and 3d_fullres, then selfconfig's configuration
    nenv = w.nn_env()
    nn_plan = run_step([common.nnunet_exe("nnUNetv2_plan_and_preprocess"), "-d", str(args.id), "-c", "3d_fullres",
                        "-np", str(args.np), "-npfp", str(args.np)], nenv,
                       w.logs / "nnunet_plan_and_preprocess.log", "nnU-Net plan+preprocess 3d_fullres")
    nn_pre = w.nn_pre / nn_name
    conversion = nnunet_plans.add_configuration(nn_pre / "nnUNetPlans.json", sc_plans_file, sc_config)
    nn_prep2 = run_step([common.nnunet_exe("nnUNetv2_preprocess"), "-d", str(args.id), "-c", "3d_selfconfig",
                         "-np", str(args.np)], nenv, w.logs / "nnunet_preprocess_3d_selfconfig.log",
                        "nnU-Net preprocess 3d_selfconfig")
    write_nnunet_splits(splits, nn_pre)
    meta = json.loads((sc_raw / "dataset.json").read_text())
    ending = meta.get("file_ending", ".nii.gz")
    test_ids = sorted(p.name[: -len(ending)] for p in (sc_raw / "labelsTs").glob(f"*{ending}"))
    sc_cfg = sc_plans["configurations"][sc_config]
    info = {"dataset": name, "id": args.id, "nnunet_dataset": nn_name, "selfconfig_configuration": sc_config,
            "selfconfig_plan": {k: sc_cfg.get(k) for k in ("spacing", "patch_size", "batch_size", "median_shape",
                                                         "normalization", "estimated_iteration_seconds")},
            "features_per_stage": sc_cfg["network"]["encoder"]["features_per_stage"],
            "cpu_gflops_given": args.cpu_gflops, "conversion": conversion,
            "nnunet_3d_fullres": _nn_config_summary(nn_pre / "nnUNetPlans.json", "3d_fullres"),
            "fold0": splits[0], "test_ids": test_ids, "labels": meta["labels"], "file_ending": ending,
            "seconds": {"selfconfig_plan_and_preprocess": round(sc_plan.wall_s, 1),
                        "nnunet_plan_and_preprocess_3d_fullres": round(nn_plan.wall_s, 1),
                        "nnunet_preprocess_3d_selfconfig": round(nn_prep2.wall_s, 1)},
            "machine": common.machine_info()}
    common.write_json(w.setup_file, info)
    print(f"selfconfig {sc_config}: patch {sc_cfg['patch_size']} at {sc_cfg['spacing']}, batch {sc_cfg['batch_size']}, "
          f"features {info['features_per_stage']}; nnU-Net 3d_selfconfig unmatched: {conversion['unmatched'] or 'none'}")
    print(f"wrote {w.setup_file}")
    return 0


def _nn_config_summary(plans_file: Path, config: str) -> dict:
    c = json.loads(plans_file.read_text())["configurations"][config]
    return {"spacing": c.get("spacing"), "patch_size": c.get("patch_size"), "batch_size": c.get("batch_size"),
            "features_per_stage": c.get("architecture", {}).get("arch_kwargs", {}).get("features_per_stage")}


# ------------------------------------------------------------------------------------------ training
def sc_iters_per_epoch(iterations: int) -> int:
    """selfconfig's CPU default is 50 iterations per epoch; the largest divisor of N up to 50 otherwise."""
    return max(d for d in range(1, min(50, iterations) + 1) if iterations % d == 0)


def train_selfconfig(w: Work, setup: dict, tag: str, seed: int, snapshots: list[int], *, iterations: int | None = None,
                     minutes: float | None = None, configuration: str | None = None, precision: str = "fp32",
                     force: bool = False) -> dict:
    """One selfconfig_train run (fold 0, trainer ScratchSnapshots); its summary (reused when finished)."""
    config = configuration or setup["selfconfig_configuration"]
    summary_file = w.runs / tag / "selfconfig_summary.json"
    if summary_file.is_file() and not force:
        summary = json.loads(summary_file.read_text())
        if (Path(summary["run_dir"]) / "checkpoint_final.pt").is_file():
            print(f"reusing selfconfig run {summary['run_dir']}")
            return summary
    cmd = [common.selfconfig_exe("selfconfig_train"), "-d", setup["dataset"], "-c", config, "-f", "0",
           "-tr", SC_TRAINER, "--tag", tag, "--seed", str(seed), "--device", "cpu", "--no-final-validation",
           "--no-progress", "--overwrite"]
    if precision != "auto":
        cmd += ["--precision", precision]
    if iterations is not None:
        ipe = sc_iters_per_epoch(iterations)
        cmd += ["--epochs", str(iterations // ipe), "--iters-per-epoch", str(ipe)]
    if minutes is not None:
        cmd += ["--max-minutes", str(minutes)]
    env = w.sc_env()
    env["SELFCONFIG_BENCH_SNAPSHOTS"] = ",".join(str(s) for s in snapshots)
    m = run_step(cmd, env, w.logs / f"{tag}_selfconfig_train.log", f"selfconfig train {tag}", interval=1.0)
    run_dir = _find_run_dir(w, setup["dataset"], config, tag)
    timing = json.loads((run_dir / "training_time.json").read_text()) if (run_dir / "training_time.json").is_file() else {}
    hp = json.loads((run_dir / "hyperparameters.json").read_text()) if (run_dir / "hyperparameters.json").is_file() else {}
    snaps = []
    import torch

    for p in sorted(run_dir.glob("snapshot_*.pt"), key=lambda p: int(p.stem.split("_")[1])):
        s = torch.load(p, map_location="cpu", weights_only=True)
        snaps.append({"iterations": int(s["iterations"]), "loop_seconds": round(float(s["loop_seconds"]), 2),
                      "path": str(p)})
    n = snaps[-1]["iterations"] if snaps else 0
    loop = snaps[-1]["loop_seconds"] if snaps else None
    summary = {"tool": "selfconfig", "trainer": SC_TRAINER_NAME, "configuration": config, "seed": seed,
               "iterations": n, "iterations_requested": iterations, "max_minutes": minutes,
               "precision": hp.get("precision", precision), "optimizer": hp.get("optimizer"), "lr": hp.get("lr"),
               "epochs": hp.get("epochs"), "iterations_per_epoch": hp.get("iters_per_epoch"),
               "val_iterations_per_epoch": hp.get("val_iters"), "batch_size": hp.get("batch_size"),
               "loop_seconds": loop, "wall_seconds": round(m.wall_s, 2),
               "seconds_per_iteration": round(loop / n, 4) if n and loop else None,
               "training_time": timing, "snapshots": snaps, "run_dir": str(run_dir),
               "peak_tree_pss_mb": round(m.peak_tree_pss_mb, 1), "peak_tree_rss_mb": round(m.peak_tree_rss_mb, 1),
               "max_processes": m.max_processes, "torch_threads_env": os.environ.get("OMP_NUM_THREADS")}
    common.write_json(summary_file, summary)
    return summary


def _find_run_dir(w: Work, dataset: str, config: str, tag: str) -> Path:
    found = sorted((w.results / dataset).glob(f"{SC_TRAINER_NAME}__*__{config}__{tag}/frac_*/fold_0"))
    if not found:
        sys.exit(f"no selfconfig run folder for tag {tag} under {w.results / dataset}")
    return found[0]


def train_nnunet(w: Work, setup: dict, tag: str, seed: int, snapshots: list[int], *, iterations: int | None = None,
                 minutes: float | None = None, configuration: str = "3d_selfconfig", mirror_axes=None,
                 iters_per_epoch: int | None = None, force: bool = False) -> dict:
    results = w.runs / tag / "nnunet_results"
    summary_file = w.runs / tag / "nnunet_summary.json"
    if summary_file.is_file() and not force:
        print(f"reusing nnU-Net run {results}")
        return json.loads(summary_file.read_text())
    cmd = [str(common.NNUNET_VENV / "bin" / "python"), str(BENCH / "nnunet_bench.py"), "train",
           "--dataset", setup["nnunet_dataset"], "-c", configuration, "--seed", str(seed), "--results", str(results),
           "--out", str(summary_file.with_suffix(".tmp.json"))]
    if iterations is not None:
        cmd += ["--iterations", str(iterations), "--snapshots", *[str(s) for s in snapshots]]
    if minutes is not None:
        cmd += ["--max-minutes", str(minutes)]
    if iters_per_epoch:
        cmd += ["--iters-per-epoch", str(iters_per_epoch)]
    if mirror_axes is not None:
        cmd += ["--mirror-axes", *[str(a) for a in mirror_axes]]
    if results.exists():
        shutil.rmtree(results)
    m = run_step(cmd, w.nn_env(), w.logs / f"{tag}_nnunet_train.log", f"nnU-Net train {tag}", interval=1.0)
    summary = json.loads(summary_file.with_suffix(".tmp.json").read_text())
    summary.update(peak_tree_pss_mb=round(m.peak_tree_pss_mb, 1), peak_tree_rss_mb=round(m.peak_tree_rss_mb, 1),
                   wall_seconds_process=round(m.wall_s, 2), max_processes=m.max_processes,
                   torch_threads_env=os.environ.get("OMP_NUM_THREADS"))
    common.write_json(summary_file, summary)
    summary_file.with_suffix(".tmp.json").unlink()
    return summary


# ------------------------------------------------------------------------------------------ prediction
def predict_selfconfig(w: Work, setup: dict, run_dir: Path, snapshot: Path, out_dir: Path, *, mirroring: bool,
                       precision: str = "fp32", log_name: str) -> tuple[dict, common.Measurement]:
    timing = out_dir.parent / f"{out_dir.name}_timing.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "_sc-predict", "--run-dir", str(run_dir),
           "--snapshot", str(snapshot), "-i", str(w.raw / setup["dataset"] / "imagesTs"), "-o", str(out_dir),
           "--precision", precision, "--out", str(timing)] + ([] if mirroring else ["--no-mirroring"])
    m = run_step(cmd, w.sc_env(), w.logs / f"{log_name}.log", f"selfconfig predict {snapshot.name}", interval=0.1)
    return json.loads(timing.read_text()), m


def predict_nnunet(w: Work, setup: dict, snapshot: Path, out_dir: Path, *, mirroring: bool,
                   log_name: str) -> tuple[dict, common.Measurement]:
    timing = out_dir.parent / f"{out_dir.name}_timing.json"
    cmd = [str(common.NNUNET_VENV / "bin" / "python"), str(BENCH / "nnunet_bench.py"), "predict",
           "--model", str(snapshot.parent), "--checkpoint", snapshot.name,
           "-i", str(w.nn_raw / setup["nnunet_dataset"] / "imagesTs"), "-o", str(out_dir), "--out", str(timing)]
    if not mirroring:
        cmd.append("--no-mirroring")
    m = run_step(cmd, w.nn_env(), w.logs / f"{log_name}.log", f"nnU-Net predict {snapshot.name}", interval=0.1)
    return json.loads(timing.read_text()), m


def cmd_sc_predict(args) -> int:
    """(internal) selfconfig's predictor from a snapshot's weights: one case at a time, timed."""
    import resource

    import torch

    from selfconfig.checkpoint import load_checkpoint, save_checkpoint
    from selfconfig.dataset.io import split_ending
    from selfconfig.inference.api import predict_files
    from selfconfig.inference.predictor import Predictor

    t_start = time.perf_counter()
    run_dir = Path(args.run_dir)
    final = load_checkpoint(run_dir / "checkpoint_final.pt")
    weights = torch.load(args.snapshot, map_location="cpu", weights_only=True)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out.parent / f"{out.name}_checkpoint.pt"
    save_checkpoint(ckpt_path, {**final, "module": {"network": weights["network"]}})
    predictor = Predictor.from_checkpoints([ckpt_path], torch.device("cpu"), tta=not args.no_mirroring,
                                           step_size=0.5, precision=args.precision)
    cases: dict[str, list[Path]] = {}
    for f in sorted(Path(args.input).iterdir()):
        stem, _ = split_ending(f.name)
        case, _, channel = stem.rpartition("_")
        if case and channel.isdigit():
            cases.setdefault(case, []).append(f)
    setup = time.perf_counter() - t_start
    per_case = []
    for case, files in sorted(cases.items()):
        t0 = time.perf_counter()
        predict_files(predictor, {case: sorted(files)}, out, progress=False)
        per_case.append({"case": case, "seconds": round(time.perf_counter() - t0, 3)})
    ckpt_path.unlink()
    res = {"tool": "selfconfig", "snapshot": str(args.snapshot), "use_mirroring": not args.no_mirroring,
           "tile_step_size": 0.5, "precision": args.precision, "torch_threads": torch.get_num_threads(),
           "setup_seconds": round(setup, 3), "per_case": per_case,
           "peak_rss_mb_self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


# ------------------------------------------------------------------------------------------ scoring
def score_folder(pred_dir: Path, ref_dir: Path, labels: dict, file_ending: str, out_dir: Path) -> dict:
    """Test mean Dice and Dice per class of one prediction folder: selfconfig.evaluation, the same
    code for both tools."""
    from selfconfig.evaluation.evaluate import evaluate_segmentation_folder

    s = evaluate_segmentation_folder(pred_dir, ref_dir, labels, output_dir=out_dir, file_ending=file_ending)
    return {"mean_dice": _r(s["mean"]["mean_dice"]),
            "dice_per_class": {k: _r(v) for k, v in s["mean"]["dice_per_class"].items()},
            "per_case_mean_dice": {pc["case"]: _r(pc["mean_dice"]) for pc in s["per_case"]}}


def _r(v, digits: int = 4):
    return None if v is None or v != v else round(float(v), digits)


def nnunet_cross_check(w: Work, setup: dict, pred_dir: Path, ours: float, log_name: str) -> dict:
    """nnU-Net's own evaluation (nnUNetv2_evaluate_folder) of one prediction folder, against ours."""
    nn_pre = w.nn_pre / setup["nnunet_dataset"]
    out = pred_dir.parent / f"{pred_dir.name}_nnunet_summary.json"
    cmd = [common.nnunet_exe("nnUNetv2_evaluate_folder"), str(w.raw / setup["dataset"] / "labelsTs"), str(pred_dir),
           "-djfile", str(nn_pre / "dataset.json"), "-pfile", str(nn_pre / "nnUNetPlans.json"), "-o", str(out),
           "-np", "1"]
    run_step(cmd, w.nn_env(), w.logs / f"{log_name}.log", "nnU-Net evaluate (cross-check)")
    theirs = json.loads(out.read_text())["foreground_mean"]["Dice"]
    return {"prediction": str(pred_dir), "selfconfig_evaluation": ours, "nnunet_evaluation": _r(theirs, 6),
            "difference": _r(ours - theirs, 6)}


def score_snapshots(w: Work, setup: dict, tool: str, summary: dict, tag: str, mirroring: bool,
                    precision: str) -> list[dict]:
    points = []
    ref = w.raw / setup["dataset"] / "labelsTs"
    for snap in summary["snapshots"]:
        it = snap["iterations"]
        pred = w.runs / tag / pred_name(tool, it, mirroring)
        score_file = pred.parent / f"{pred.name}_score.json"
        if score_file.is_file():
            points.append(json.loads(score_file.read_text()))
            continue
        if tool == "selfconfig":
            timing, m = predict_selfconfig(w, setup, Path(summary["run_dir"]), Path(snap["path"]), pred,
                                           mirroring=mirroring, precision=precision, log_name=f"{tag}_{tool}_predict_{it}")
        else:
            timing, m = predict_nnunet(w, setup, Path(snap["path"]), pred, mirroring=mirroring,
                                       log_name=f"{tag}_{tool}_predict_{it}")
        score = score_folder(pred, ref, setup["labels"], setup["file_ending"], pred.parent / f"{pred.name}_eval")
        point = {"tool": tool, "seed": summary.get("seed"), "iterations": it,
                 "minutes": round(snap["loop_seconds"] / 60, 3), "test_mean_dice": score["mean_dice"],
                 "dice_per_class": score["dice_per_class"], "per_case_mean_dice": score["per_case_mean_dice"],
                 "predict_mirroring": timing.get("use_mirroring"),
                 "predict_seconds_per_case": _r(statistics.mean(c["seconds"] for c in timing["per_case"]), 2)}
        common.write_json(score_file, point)
        points.append(point)
    return points


# ------------------------------------------------------------------------------------------ iterations
def cmd_iterations(args) -> int:
    w = Work(args.workdir)
    setup = w.setup()
    snapshots = sorted({s for s in (args.snapshots or []) if s <= args.iterations} | {args.iterations})
    tools = TOOLS if args.tool == "both" else (args.tool,)
    args.nnunet_mirror_axes = resolve_mirror_axes(args.nnunet_mirror_axes, setup)
    out = Path(args.out) if args.out else w.root / f"iterations_{args.iterations}.json"
    result = json.loads(out.read_text()) if out.is_file() else {}
    result.update({"kind": "iterations", "dataset": setup["dataset"], "iterations": args.iterations,
                   "snapshots": snapshots, "selfconfig_precision": args.selfconfig_precision,
                   "predict_mirroring": not args.no_mirroring, "nnunet_mirror_axes": args.nnunet_mirror_axes,
                   "network": {"configuration": setup["selfconfig_configuration"], **setup["selfconfig_plan"],
                               "features_per_stage": setup["features_per_stage"]},
                   "unmatched": setup["conversion"]["unmatched"], "machine": common.machine_info()})
    result.setdefault("runs", {})
    for seed in args.seeds:
        for tool in tools:
            suffix, label = variant(tool, args.selfconfig_precision, args.nnunet_mirror_axes)
            tag = f"it{args.iterations}_seed{seed}{suffix}"
            if tool == "selfconfig":
                summary = train_selfconfig(w, setup, tag, seed, snapshots, iterations=args.iterations,
                                           precision=args.selfconfig_precision, force=args.retrain)
            else:
                summary = train_nnunet(w, setup, tag, seed, snapshots, iterations=args.iterations,
                                       mirror_axes=args.nnunet_mirror_axes, force=args.retrain)
            key = f"{tool}{suffix}/seed{seed}"
            result["runs"][key] = {"tool": tool, "label": label, "seed": seed, "tag": tag, "training": summary}
            if not args.train_only:
                result["runs"][key]["points"] = score_snapshots(w, setup, tool, summary, tag, not args.no_mirroring,
                                                                args.selfconfig_precision)
            result = merge_result(out, result, [key])
    if not args.train_only and not result.get("cross_check"):
        key = next((k for k in result["runs"] if k.startswith("nnunet")), None)
        if key and result["runs"][key].get("points"):
            run = result["runs"][key]
            last = run["points"][-1]
            # the folder is named by the mirroring asked for; a run with no mirror axes predicted without
            pred = w.runs / run["tag"] / pred_name("nnunet", last["iterations"], not args.no_mirroring)
            result["cross_check"] = nnunet_cross_check(w, setup, pred, last["test_mean_dice"],
                                                       f"it{args.iterations}_cross_check")
    result = merge_result(out, result, [])
    if not args.train_only:
        write_report([out], w.root / f"iterations_{args.iterations}")
    print_runs(result)
    print(f"wrote {out}")
    return 0


def merge_result(out: Path, result: dict, keys: list[str] | None = None) -> dict:
    """Write ``result`` to ``out`` without losing runs that another process (e.g. ``--tool nnunet``
    in the other CPU slot) wrote there meanwhile: the file's runs are read again under a lock, ours
    (those in ``keys``; None: all) replace theirs, the other fields are ours, and the merged result
    is written atomically and returned."""
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = json.loads(out.read_text()) if out.is_file() else {}
        runs = dict(current.get("runs", {}))
        ours = result.get("runs", {})
        runs.update(ours if keys is None else {k: ours[k] for k in keys})
        merged = {**current, **{k: v for k, v in result.items() if k != "runs"}, "runs": runs}
        if current.get("cross_check") and not result.get("cross_check"):
            merged["cross_check"] = current["cross_check"]
        tmp = out.with_suffix(".tmp")
        common.write_json(tmp, merged)
        os.replace(tmp, out)
    return merged


def variant(tool: str, precision: str, nnunet_axes: list[int] | None) -> tuple[str, str]:
    """(suffix of the run's tag, label in tables) for settings that change a run: selfconfig's
    precision other than fp32, nnU-Net's mirror axes other than its own."""
    if tool == "selfconfig":
        return ("", LABEL[tool]) if precision == "fp32" else (f"_{precision}", f"{LABEL[tool]} ({precision})")
    if nnunet_axes is None:
        return "", LABEL[tool]
    axes = "".join(str(a) for a in nnunet_axes) or "none"
    return f"_mirror{axes}", f"{LABEL[tool]} (mirror axes {', '.join(map(str, nnunet_axes)) or 'none'})"


def pred_name(tool: str, iterations: int, mirroring: bool) -> str:
    return f"{tool}_pred{'' if mirroring else '_nomirror'}_{iterations}"


def resolve_mirror_axes(given: list[str] | None, setup: dict) -> list[int] | None:
    """``--nnunet-mirror-axes``: None (nnU-Net's own), integers, or ``selfconfig`` (its plan's axes)."""
    if given is None:
        return None
    if given == ["selfconfig"]:
        return list(setup["conversion"]["selfconfig_mirror_axes_as_nnunet"])
    try:
        return [int(a) for a in given]
    except ValueError:
        sys.exit(f"--nnunet-mirror-axes takes axis numbers or 'selfconfig', not {' '.join(given)}")


def print_runs(result: dict) -> None:
    for key, run in result.get("runs", {}).items():
        t = run["training"]
        print(f"{key}: {t.get('iterations')} iterations, {t.get('seconds_per_iteration')} s/iteration")
        for p in run.get("points", []):
            print(f"  {p['iterations']:6d} it  {p['minutes']:7.2f} min  test mean Dice {p['test_mean_dice']}")


# ------------------------------------------------------------------------------------------ minutes
def cmd_minutes(args) -> int:
    w = Work(args.workdir)
    setup = w.setup()
    out = Path(args.out) if args.out else w.root / f"minutes_{args.minutes:g}.json"
    tag = f"min{args.minutes:g}_seed{args.seed}"
    result = {"kind": "minutes", "dataset": setup["dataset"], "minutes": args.minutes, "seed": args.seed,
              "machine": common.machine_info(), "runs": {}}
    for tool in TOOLS if args.tool == "both" else (args.tool,):
        if tool == "selfconfig":
            summary = train_selfconfig(w, setup, tag, args.seed, [], minutes=args.minutes, precision="auto",
                                       configuration=None, force=args.retrain)
            plan = {"configuration": setup["selfconfig_configuration"], **setup["selfconfig_plan"]}
        else:
            summary = train_nnunet(w, setup, tag, args.seed, [], minutes=args.minutes, configuration="3d_fullres",
                                   iters_per_epoch=args.nnunet_iters_per_epoch, force=args.retrain)
            plan = {"configuration": "3d_fullres", **setup["nnunet_3d_fullres"]}
        points = score_snapshots(w, setup, tool, summary, tag, not args.no_mirroring, "auto")
        key = f"{tool}/seed{args.seed}"
        result["runs"][key] = {"tool": tool, "seed": args.seed, "plan": plan, "training": summary, "points": points}
        result = merge_result(out, result, [key])
    write_report([out], w.root / f"minutes_{args.minutes:g}")
    print_runs(result)
    print(f"wrote {out}")
    return 0


# ------------------------------------------------------------------------------------------ predict
def cmd_predict(args) -> int:
    w = Work(args.workdir)
    setup = w.setup()
    tag = f"it{args.iterations}_seed{args.seed}"
    out = Path(args.out) if args.out else w.root / f"predict_{args.iterations}.json"
    mirroring = args.mirroring == "on"
    result = {"kind": "predict", "dataset": setup["dataset"], "iterations": args.iterations, "seed": args.seed,
              "mirroring": mirroring, "precision": "fp32", "repeats": args.repeats, "tile_step_size": 0.5,
              "n_test_cases": len(setup["test_ids"]), "machine": common.machine_info(), "runs": {}}
    axes = resolve_mirror_axes(args.nnunet_mirror_axes, setup)
    result["mirror_axes"] = {"selfconfig": setup["conversion"].get("selfconfig_mirror_axes"),
                             "nnunet": axes if axes is not None else "all (its own)"}
    for tool in TOOLS:
        suffix, _ = variant(tool, "fp32", axes)
        summary_file = w.runs / f"{tag}{suffix}" / f"{tool}_summary.json"
        if not summary_file.is_file():
            sys.exit(f"{summary_file} not found: run `iterations --iterations {args.iterations} --seeds {args.seed}` "
                     f"(with the same --nnunet-mirror-axes) first")
        summary = json.loads(summary_file.read_text())
        snap = next((s for s in summary["snapshots"] if s["iterations"] == args.iterations), summary["snapshots"][-1])
        reps = []
        for r in range(args.repeats):
            pred = w.runs / f"{tag}{suffix}" / f"predict_{tool}_{args.mirroring}_rep{r}"
            if tool == "selfconfig":
                timing, m = predict_selfconfig(w, setup, Path(summary["run_dir"]), Path(snap["path"]), pred,
                                               mirroring=mirroring, precision="fp32", log_name=f"{tag}_predict_{tool}_{r}")
            else:
                timing, m = predict_nnunet(w, setup, Path(snap["path"]), pred, mirroring=mirroring,
                                           log_name=f"{tag}_predict_{tool}_{r}")
            reps.append({"wall_seconds": round(m.wall_s, 2), "setup_seconds": timing["setup_seconds"],
                         "per_case": timing["per_case"], "peak_tree_pss_mb": round(m.peak_tree_pss_mb, 1),
                         "peak_tree_rss_mb": round(m.peak_tree_rss_mb, 1), "use_mirroring": timing["use_mirroring"],
                         "mirror_axes": timing.get("mirror_axes")})
        per_case = [c["seconds"] for rep in reps for c in rep["per_case"]]
        result["runs"][tool] = {"tool": tool, "snapshot": snap["path"], "repeats": reps,
                                "median_seconds_per_case": _r(statistics.median(per_case), 2),
                                "median_peak_tree_pss_mb": _r(statistics.median(r["peak_tree_pss_mb"] for r in reps), 1),
                                "median_peak_tree_rss_mb": _r(statistics.median(r["peak_tree_rss_mb"] for r in reps), 1)}
        common.write_json(out, result)
    write_report([out], w.root / f"predict_{args.iterations}")
    print(f"wrote {out}")
    return 0


# ------------------------------------------------------------------------------------------ report
def tables(results: list[dict]) -> str:
    """Markdown tables of iterations / minutes / predict results."""
    parts = []
    for res in results:
        kind = res.get("kind")
        if kind in ("iterations", "minutes"):
            title = (f"{res['dataset']}: {res['iterations']} iterations, the same network"
                     if kind == "iterations" else f"{res['dataset']}: {res['minutes']:g} minutes, each tool's defaults")
            classes = []
            for run in res["runs"].values():
                for p in run.get("points", []):
                    classes += [c for c in p["dice_per_class"] if c not in classes]
            header = ["tool", "seed", "iterations", "minutes", "s/iteration", "test mean Dice"] + classes
            rows = []
            for run in res["runs"].values():
                t = run["training"]
                for p in run.get("points", []):
                    rows.append([run_label(run), str(run["seed"]), str(p["iterations"]), f"{p['minutes']:.1f}",
                                 common.fmt(t.get("seconds_per_iteration"), 2), common.fmt(p["test_mean_dice"], 3)]
                                + [common.fmt(p["dice_per_class"].get(c), 3) for c in classes])
            parts.append(f"**{title}**\n\n" + common.markdown_table(header, rows))
            means = mean_over_seeds(res)
            if len({s for (_, _), v in means.items() for s in v["seeds"]}) > 1:
                rows = [[label, str(it), f"{v['mean']:.3f}", str(len(v["seeds"]))]
                        for (label, it), v in sorted(means.items())]
                parts.append(common.markdown_table(["tool", "iterations", "test mean Dice (mean over seeds)", "seeds"], rows))
            if kind == "minutes":
                rows = [[run_label(r), r["plan"]["configuration"], str(r["plan"].get("patch_size")),
                         str(r["plan"].get("batch_size")), str(r["training"].get("iterations")),
                         common.fmt(r["training"].get("peak_tree_pss_mb"), 0),
                         common.fmt(r["training"].get("peak_tree_rss_mb"), 0)] for r in res["runs"].values()]
                parts.append(common.markdown_table(["tool", "configuration", "patch", "batch", "iterations done",
                                                    "peak tree PSS MB", "peak tree RSS MB"], rows))
            if res.get("cross_check"):
                c = res["cross_check"]
                parts.append(f"Cross-check of the scoring: selfconfig's evaluation {c['selfconfig_evaluation']}, "
                             f"nnU-Net's {c['nnunet_evaluation']} (difference {c['difference']}).")
        elif kind == "predict":
            header = ["tool", "s per case (median)", "peak tree PSS MB", "peak tree RSS MB", "mirroring"]
            rows = [[LABEL[t], common.fmt(r["median_seconds_per_case"], 2), common.fmt(r["median_peak_tree_pss_mb"], 0),
                     common.fmt(r["median_peak_tree_rss_mb"], 0), str(r["repeats"][0]["use_mirroring"])]
                    for t, r in res["runs"].items()]
            parts.append(f"**{res['dataset']}: prediction of the {res['iterations']}-iteration networks, fp32, "
                         f"{res['n_test_cases']} test cases x {res['repeats']} repeats**\n\n"
                         + common.markdown_table(header, rows))
    return "\n\n".join(parts) + "\n"


def run_label(run: dict) -> str:
    return run.get("label") or LABEL[run["tool"]]


def mean_over_seeds(res: dict) -> dict:
    acc: dict = {}
    for run in res.get("runs", {}).values():
        for p in run.get("points", []):
            if p["test_mean_dice"] is None:
                continue
            a = acc.setdefault((run_label(run), p["iterations"]),
                               {"tool": run["tool"], "values": [], "seeds": [], "minutes": []})
            a["values"].append(p["test_mean_dice"])
            a["seeds"].append(run["seed"])
            a["minutes"].append(p["minutes"])
    return {k: {**v, "mean": statistics.mean(v["values"]), "mean_minutes": statistics.mean(v["minutes"])}
            for k, v in acc.items()}


def figure(results: list[dict], path: Path) -> Path | None:
    """Test mean Dice against iterations and against minutes; one colour per framework, seeds as
    points, their mean as the line."""
    curves = [r for r in results if r.get("kind") in ("iterations", "minutes") and mean_over_seeds(r)]
    if not curves:  # nothing scored (e.g. only `--train-only` results named with --json): no empty figure
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colours = {"selfconfig": "tab:blue", "nnunet": "tab:orange"}
    styles = ["-", "--", ":", "-."]
    seen: dict[str, str] = {}
    for res in curves:
        means = mean_over_seeds(res)
        for label in dict.fromkeys(lab for lab, _ in means):
            pts = sorted((it, v) for (lab, it), v in means.items() if lab == label)
            tool = pts[0][1]["tool"]
            name = label + ("" if res["kind"] == "iterations" else f", {res['minutes']:g} min, own defaults")
            style = seen.setdefault(name, styles[sum(1 for n in seen if n.startswith(LABEL[tool])) % len(styles)])
            for ax, xkey in ((axes[0], "iterations"), (axes[1], "minutes")):
                xs = [it if xkey == "iterations" else v["mean_minutes"] for it, v in pts]
                ax.plot(xs, [v["mean"] for _, v in pts], style, marker="o" if len(pts) == 1 else None,
                        color=colours[tool], label=name if ax is axes[0] else None)
                for run in res["runs"].values():
                    if run_label(run) == label:
                        ps = run.get("points", [])
                        ax.scatter([p[xkey] for p in ps], [p["test_mean_dice"] for p in ps], s=12,
                                   color=colours[tool], alpha=0.6)
    for ax, xl in ((axes[0], "training iterations"), (axes[1], "training minutes")):
        ax.set_xlabel(xl)
        ax.set_ylabel("test mean Dice")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    ds = sorted({r["dataset"] for r in curves})
    fig.suptitle(f"selfconfig and nnU-Net v2 on the same scans ({', '.join(ds)})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(files: list[Path], stem: Path) -> tuple[Path, Path | None]:
    results = [json.loads(Path(f).read_text()) for f in files]
    md = stem.with_suffix(".md")
    md.write_text(tables(results))
    png = figure(results, stem.with_suffix(".png"))
    return md, png


def has_results(res: dict) -> bool:
    """Whether a result JSON has something to report: a scored point (iterations, minutes; not a
    JSON of ``iterations --train-only`` runs) or a timed prediction run (predict)."""
    runs = res.get("runs", {}).values()
    if res.get("kind") == "predict":
        return any(r.get("repeats") for r in runs)
    return any(p.get("test_mean_dice") is not None for r in runs for p in r.get("points", []))


def default_report_files(root: Path) -> list[Path]:
    """Every iterations / minutes / predict JSON in ``root`` that has results; one line on stderr
    names those left out and why."""
    found = sorted([*root.glob("iterations_*.json"), *root.glob("minutes_*.json"), *root.glob("predict_*.json")])
    kept, skipped = [], []
    for f in found:
        (kept if has_results(json.loads(f.read_text())) else skipped).append(f)
    if skipped:
        print(f"report: skipped {len(skipped)} of {len(found)} result JSONs without scored points or timed runs "
              f"(training only, e.g. `iterations --train-only`; pass them with --json to include them): "
              f"{', '.join(f.name for f in skipped)}", file=sys.stderr)
    return kept


def cmd_report(args) -> int:
    w = Work(args.workdir)
    files = [Path(f) for f in args.json] if args.json else default_report_files(w.root)
    if not files:
        sys.exit(f"no result JSON with scored points or timed runs in {w.root}")
    md, png = write_report(files, Path(args.out) if args.out else w.root / "report")
    print(md.read_text())
    print(f"wrote {md}" + (f" and {png}" if png else ""))
    return 0


# ------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common_args(q):
        q.add_argument("--workdir", default="/tmp/sc_vs_nnunet")

    s = sub.add_parser("setup", help="dataset, plans and preprocessing for both")
    common_args(s)
    s.add_argument("--dataset", default="MNI152_TISSUE")
    s.add_argument("--id", type=int, default=601, help="nnU-Net dataset id")
    s.add_argument("--raw-source", help="a raw dataset in nnU-Net v2 layout to use instead of a maker")
    s.add_argument("--train", type=int, default=16, help="training cases a maker writes")
    s.add_argument("--test", type=int, default=4, help="test cases a maker writes")
    s.add_argument("--cpu-gflops", type=float, help="selfconfig's CPU plan: assume this throughput (fixes the plan)")
    s.add_argument("-c", "--configuration", help="selfconfig configuration to compare (default: recommended)")
    s.add_argument("-np", type=int, default=2, help="processes for planning/preprocessing")

    i = sub.add_parser("iterations", help="equal iterations, the same network")
    common_args(i)
    i.add_argument("--id", type=int, help="(ignored: the workdir's setup names the dataset)")
    i.add_argument("--iterations", type=int, default=1000)
    i.add_argument("--snapshots", type=int, nargs="*", default=[100, 250, 500, 750, 1000])
    i.add_argument("--seeds", type=int, nargs="+", default=[0])
    i.add_argument("--tool", choices=["selfconfig", "nnunet", "both"], default="both")
    i.add_argument("--train-only", action="store_true")
    i.add_argument("--nnunet-mirror-axes", nargs="*",
                   help="nnU-Net mirrors only along these axes in training and inference (default: its own, all); "
                        "'selfconfig': the axes selfconfig's plan mirrors")
    i.add_argument("--selfconfig-precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="selfconfig's training and prediction precision (default fp32, as nnU-Net on a CPU)")
    i.add_argument("--no-mirroring", action="store_true", help="predict without test-time mirroring (both)")
    i.add_argument("--retrain", action="store_true", help="train again even when a finished run exists")
    i.add_argument("--out")

    m = sub.add_parser("minutes", help="equal minutes, each tool's defaults")
    common_args(m)
    m.add_argument("--minutes", type=float, default=10)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--tool", choices=["selfconfig", "nnunet", "both"], default="both")
    m.add_argument("--nnunet-iters-per-epoch", type=int, default=5,
                   help="nnU-Net's iterations per epoch under a time budget (the poly schedule steps per epoch)")
    m.add_argument("--no-mirroring", action="store_true")
    m.add_argument("--retrain", action="store_true")
    m.add_argument("--out")

    q = sub.add_parser("predict", help="prediction time and memory of the iterations run's networks")
    common_args(q)
    q.add_argument("--iterations", type=int, default=1000)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--repeats", type=int, default=2)
    q.add_argument("--mirroring", choices=["on", "off"], default="on")
    q.add_argument("--nnunet-mirror-axes", nargs="*",
                   help="the nnU-Net run trained with these mirror axes ('selfconfig': selfconfig's), as in iterations")
    q.add_argument("--out")

    r = sub.add_parser("report", help="tables and figure from the JSON files")
    common_args(r)
    r.add_argument("--json", nargs="*",
                   help="result files (default: every one in the workdir with scored points or timed runs)")
    r.add_argument("--out", help="output stem (STEM.md, STEM.png)")

    x = sub.add_parser("_sc-predict", help=argparse.SUPPRESS)
    x.add_argument("--run-dir", required=True)
    x.add_argument("--snapshot", required=True)
    x.add_argument("-i", "--input", required=True)
    x.add_argument("-o", "--output", required=True)
    x.add_argument("--precision", default="fp32")
    x.add_argument("--no-mirroring", action="store_true")
    x.add_argument("--out", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"setup": cmd_setup, "iterations": cmd_iterations, "minutes": cmd_minutes, "predict": cmd_predict,
            "report": cmd_report, "_sc-predict": cmd_sc_predict}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
