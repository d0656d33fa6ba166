"""nnU-Net v2's side of bench_vs_nnunet.py: train for N iterations (or M minutes) with snapshots, and predict.

Runs with the nnU-Net virtualenv's python (``/work/nnunet_venv/bin/python``), never with selfconfig's.
nnU-Net's code runs unchanged; what the benchmark needs is done as nnU-Net users do it, with a
trainer subclass kept here (``nnUNetTrainerBench``): nnU-Net's lookup of trainers by name
(``nnUNetv2_train -tr NAME``) imports every module of its trainer folder, some of which import
torchvision, which fails against the pinned CPU torch of that virtualenv, so this script builds the
trainer itself (as ``nnunetv2.run.run_training`` does after the lookup) and drives ``run_training()``.

The subclass changes only the length of the run:

* ``num_epochs`` x ``num_iterations_per_epoch`` = ``--iterations`` (``--iters-per-epoch``, default:
  250 when that leaves at least 20 epochs, else the largest of 50, 25, 10, 5, 2, 1 dividing N that
  does); validation batches per epoch: a fifth of the training batches (nnU-Net's 50 per 250);
  nnU-Net's PolyLRScheduler is built by its own ``configure_optimizers`` over ``num_epochs``, so the
  schedule is fitted to the shorter run;
* ``--max-minutes``: a wall-clock budget instead. After the first epoch the number of epochs is set
  to what fits in the budget at the measured time per epoch (the poly schedule's ``max_steps`` with
  it) and re-fitted after every epoch; the run stops after the last epoch that ends within the
  budget (at least one epoch, so that there is always a network to predict with);
* snapshots: the network's weights in nnU-Net's checkpoint format after the iterations in
  ``--snapshots`` (``snapshot_<it>.pth``, with the loop's seconds so far);
* no final validation (``perform_actual_validation`` is not called), nothing else changed;
* ``--mirror-axes A ...``: training mirrors only along these axes and the checkpoints allow only them
  at inference (nnU-Net mirrors along every axis of a 3D patch; mirroring left-right is wrong for
  labels that name a side);
* device cpu; torch threads as the environment sets them (OMP_NUM_THREADS); data augmentation
  processes: ``nnUNet_n_proc_DA`` (nnU-Net's own variable; its default is min(12, CPUs));
* ``--seed`` seeds python, numpy and torch in the main process; nnU-Net's augmentation workers
  draw their own random numbers, so two runs with one seed are not identical.

``summary.json`` in the fold folder: iterations, epochs, seconds per iteration, mirror axes,
snapshot paths. ``predict`` runs nnUNetPredictor (tile step 0.5, Gaussian weighting, fp32 on the
CPU, ``--no-mirroring`` or not) from one snapshot on a folder of test images, one case at a time,
writing NIfTI label maps, and records each case's wall time and the peak RSS of the process.

    nnunet_bench.py train --dataset Dataset601_MNI152_TISSUE -c 3d_selfconfig --iterations 1000 \\
        --snapshots 100 250 500 750 1000 --seed 0 --results RESULTS_DIR [--mirror-axes 0 1]
    nnunet_bench.py predict --model RESULTS_DIR/.../fold_0 --checkpoint snapshot_1000.pth \\
        -i imagesTs -o OUT [--no-mirroring] [--out timing.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

TRAINER_NAME = "nnUNetTrainerBench"


def iters_per_epoch_for(iterations: int) -> int:
    """nnU-Net's 250 iterations per epoch when that leaves at least 20 epochs (the poly schedule
    steps once per epoch), else the largest of 50, 25, 10, 5, 2, 1 that divides ``iterations`` and
    leaves at least min(20, iterations) epochs."""
    for ipe in (250, 50, 25, 10, 5, 2, 1):
        if iterations % ipe == 0 and iterations // ipe >= min(20, iterations):
            return ipe
    return 1


def make_trainer_class(iterations: int | None, iters_per_epoch: int, snapshots: list[int], mirror_axes,
                       max_minutes: float | None):
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    class nnUNetTrainerBench(nnUNetTrainer):
        """nnUNetTrainer with a run length, snapshots, chosen mirror axes and no final validation."""

        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = torch.device("cpu")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_iterations_per_epoch = iters_per_epoch
            self.num_val_iterations_per_epoch = max(1, iters_per_epoch // 5)
            if iterations is not None:
                self.num_epochs = iterations // iters_per_epoch
            else:
                self.num_epochs = 10 ** 6  # fitted to --max-minutes after the first epoch
            self.bench_iterations = 0
            self.bench_loop_start = None
            self.bench_snapshots: dict[int, dict] = {}
            self.bench_time_limited = False

        def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
            rot, dummy_2d, initial, mirror = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
            if mirror_axes is not None:
                mirror = tuple(int(a) for a in mirror_axes)
                self.inference_allowed_mirroring_axes = mirror
                self.print_to_log_file(f"mirror axes (benchmark): {mirror}")
            return rot, dummy_2d, initial, mirror

        def on_train_start(self):
            super().on_train_start()
            self.bench_loop_start = time.perf_counter()

        def loop_seconds(self) -> float:
            return time.perf_counter() - self.bench_loop_start

        def train_step(self, batch: dict) -> dict:
            out = super().train_step(batch)
            self.bench_iterations += 1
            if self.bench_iterations in snapshots:
                self.save_snapshot(self.bench_iterations)
            return out

        def save_snapshot(self, it: int) -> None:
            path = Path(self.output_folder) / f"snapshot_{it}.pth"
            seconds = self.loop_seconds()
            self.save_checkpoint(str(path))
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            ckpt["bench"] = {"iterations": it, "loop_seconds": seconds}
            ckpt["optimizer_state"] = None  # weights only: snapshots are for prediction
            torch.save(ckpt, path)
            self.bench_snapshots[it] = {"iterations": it, "loop_seconds": round(seconds, 2), "path": str(path)}

        def on_epoch_end(self):
            super().on_epoch_end()  # increments current_epoch
            if max_minutes is None:
                return
            budget = max_minutes * 60
            spent = self.loop_seconds()
            per_epoch = spent / self.current_epoch
            if spent + per_epoch > budget:  # the next epoch would end past the budget: stop here
                self.num_epochs = self.current_epoch
                self.bench_time_limited = True
            else:
                self.num_epochs = max(self.current_epoch + 1, int(budget / per_epoch))
            self.lr_scheduler.max_steps = self.num_epochs

        def run_training(self):
            # nnU-Net's loop, with the number of epochs read at every epoch (it may be re-fitted)
            self.on_train_start()
            while self.current_epoch < self.num_epochs:
                self.on_epoch_start()
                self.on_train_epoch_start()
                outputs = [self.train_step(next(self.dataloader_train)) for _ in range(self.num_iterations_per_epoch)]
                self.on_train_epoch_end(outputs)
                with torch.no_grad():
                    self.on_validation_epoch_start()
                    val = [self.validation_step(next(self.dataloader_val))
                           for _ in range(self.num_val_iterations_per_epoch)]
                    self.on_validation_epoch_end(val)
                self.on_epoch_end()
            if self.bench_iterations not in self.bench_snapshots:
                self.save_snapshot(self.bench_iterations)  # the final weights are always a snapshot
            self.on_train_end()

    return nnUNetTrainerBench


def cmd_train(args) -> int:
    os.environ["nnUNet_results"] = str(Path(args.results).resolve())
    Path(args.results).mkdir(parents=True, exist_ok=True)
    import random

    import numpy as np
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.paths import nnUNet_preprocessed

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if (args.iterations is None) == (args.max_minutes is None):
        sys.exit("give exactly one of --iterations and --max-minutes")
    ipe = args.iters_per_epoch or (iters_per_epoch_for(args.iterations) if args.iterations else 5)
    if args.iterations is not None and args.iterations % ipe:
        sys.exit(f"--iterations {args.iterations} is not a multiple of --iters-per-epoch {ipe}")
    cls = make_trainer_class(args.iterations, ipe, sorted(set(args.snapshots or [])), args.mirror_axes,
                             args.max_minutes)
    base = Path(nnUNet_preprocessed) / args.dataset
    plans = load_json(str(base / f"{args.plans}.json"))
    plans["continue_training"] = False
    dataset_json = load_json(str(base / "dataset.json"))
    trainer = cls(plans=plans, configuration=args.configuration, fold=args.fold, dataset_json=dataset_json,
                  device=torch.device("cpu"))
    t0 = time.perf_counter()
    trainer.run_training()
    wall = time.perf_counter() - t0
    loop = trainer.loop_seconds()
    n = trainer.bench_iterations
    summary = {
        "tool": "nnU-Net v2", "trainer": TRAINER_NAME, "dataset": args.dataset, "configuration": args.configuration,
        "plans": args.plans, "fold": args.fold, "seed": args.seed, "iterations": n,
        "iterations_requested": args.iterations, "max_minutes": args.max_minutes,
        "time_limited": trainer.bench_time_limited,
        "epochs": trainer.current_epoch, "iterations_per_epoch": ipe,
        "val_iterations_per_epoch": trainer.num_val_iterations_per_epoch,
        "batch_size": trainer.batch_size, "patch_size": list(trainer.configuration_manager.patch_size),
        "initial_lr": trainer.initial_lr, "loop_seconds": round(loop, 2), "wall_seconds": round(wall, 2),
        "seconds_per_iteration": round(loop / max(n, 1), 4),
        "mirror_axes": list(trainer.inference_allowed_mirroring_axes or []),
        "torch_threads": torch.get_num_threads(), "n_proc_DA": os.environ.get("nnUNet_n_proc_DA"),
        "snapshots": [trainer.bench_snapshots[k] for k in sorted(trainer.bench_snapshots)],
        "output_folder": trainer.output_folder,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    out = Path(args.out) if args.out else Path(trainer.output_folder) / "summary.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("iterations", "epochs", "seconds_per_iteration", "mirror_axes")}))
    return 0


def cmd_predict(args) -> int:
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    t_start = time.perf_counter()
    model = Path(args.model)  # the fold folder
    ckpt = torch.load(model / args.checkpoint, map_location="cpu", weights_only=False)
    base = model.parent
    plans = load_json(str(base / "plans.json"))
    dataset_json = load_json(str(base / "dataset.json"))
    configuration = ckpt["init_args"]["configuration"]
    pm = PlansManager(plans)
    cm = pm.get_configuration(configuration)
    n_in = determine_num_input_channels(pm, cm, dataset_json)
    n_out = pm.get_label_manager(dataset_json).num_segmentation_heads
    # the trainer's own builder (the predictor calls it through the trainer class it looks up by name)
    network = nnUNetTrainer.build_network_architecture(pm, cm, n_in, n_out, enable_deep_supervision=False)
    axes = ckpt.get("inference_allowed_mirroring_axes")
    mirroring = not args.no_mirroring and bool(axes)
    predictor = nnUNetPredictor(tile_step_size=args.step_size, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                allow_tqdm=False)
    predictor.manual_initialization(network, pm, cm, [ckpt["network_weights"]], dataset_json, TRAINER_NAME,
                                    tuple(axes) if axes else None)
    ending = dataset_json["file_ending"]
    images = sorted(Path(args.input).glob(f"*_0000{ending}"))
    cases = [p.name[: -len(f"_0000{ending}")] for p in images]
    n_ch = len(dataset_json.get("channel_names", dataset_json.get("modality", {"0": ""})))
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    setup = time.perf_counter() - t_start
    per_case = []
    for case in cases:
        files = [str(Path(args.input) / f"{case}_{c:04d}{ending}") for c in range(n_ch)]
        t0 = time.perf_counter()
        predictor.predict_from_files([files], [str(out_dir / case)], save_probabilities=False, overwrite=True,
                                     num_processes_preprocessing=1, num_processes_segmentation_export=1)
        per_case.append({"case": case, "seconds": round(time.perf_counter() - t0, 3)})
    res = {"tool": "nnU-Net v2", "checkpoint": str(model / args.checkpoint), "configuration": configuration,
           "use_mirroring": mirroring, "mirror_axes": list(axes or []) if mirroring else [],
           "tile_step_size": args.step_size, "precision": "fp32", "torch_threads": torch.get_num_threads(),
           "setup_seconds": round(setup, 3), "per_case": per_case,
           "peak_rss_mb_self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "peak_rss_mb_children": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({"cases": len(per_case), "mirroring": mirroring}))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--dataset", required=True, help="DatasetNNN_NAME under nnUNet_preprocessed")
    t.add_argument("-c", "--configuration", default="3d_selfconfig")
    t.add_argument("-p", "--plans", default="nnUNetPlans")
    t.add_argument("-f", "--fold", type=int, default=0)
    t.add_argument("--iterations", type=int)
    t.add_argument("--max-minutes", type=float)
    t.add_argument("--iters-per-epoch", type=int)
    t.add_argument("--snapshots", type=int, nargs="*", default=[])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--mirror-axes", type=int, nargs="*", help="training and inference mirroring only along these")
    t.add_argument("--results", required=True, help="nnUNet_results of this run")
    t.add_argument("--out", help="summary JSON (default: FOLD_FOLDER/summary.json)")
    q = sub.add_parser("predict")
    q.add_argument("--model", required=True, help="the fold folder (its parent holds plans.json, dataset.json)")
    q.add_argument("--checkpoint", default="checkpoint_final.pth")
    q.add_argument("-i", "--input", required=True)
    q.add_argument("-o", "--output", required=True)
    q.add_argument("--no-mirroring", action="store_true")
    q.add_argument("--step-size", type=float, default=0.5)
    q.add_argument("--out", help="timing JSON")
    args = p.parse_args(argv)
    return cmd_train(args) if args.cmd == "train" else cmd_predict(args)


if __name__ == "__main__":
    sys.exit(main())
