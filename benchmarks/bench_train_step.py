"""Trainer wall time per iteration against the bare forward + backward + step of the same network.

On the CPU plan of the LUNG_LOBES example (3d configuration), two numbers, measured the same way:

* bare: the plans' network, loss (Dice + CE with deep supervision) and optimizer on one fixed
  batch already in memory, in the precision training uses: forward, backward, clip, step. No data
  loading, no augmentation.
* trainer: ``selfconfig_train`` itself (background loader worker, batched augmentation on the
  training device, logging, progress bar off), from the epochs' own timing (``epoch_seconds`` /
  iterations; validation and start-up excluded).

Both run ``--epochs`` x ``--iters`` steps of a fresh network; each epoch's mean seconds per
iteration is taken and the first epoch dropped (warm-up: the allocator and oneDNN's kernel cache
settle over the first few dozen steps here), and the median over the remaining epochs is reported.
The bare loop runs before and after the trainer and both runs are pooled, so that a drift of the
machine's speed does not land on one side only. The target is trainer / bare <= 1.05: the data
pipeline must hide behind the network. Run it on an otherwise idle machine.

    .venv/bin/python benchmarks/bench_train_step.py [--epochs 5] [--iters 25] [--workdir /tmp/sc_bench_train]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def bare_epoch_seconds(data, hp, epochs: int, iters: int) -> list[float]:
    """Mean seconds per iteration of each epoch after the first, like the trainer's epoch_seconds."""
    import torch

    from selfconfig.data.sampler import PatchSampler
    from selfconfig.precision import autocast, resolve_precision
    from selfconfig.training.losses import SegmentationLoss
    from selfconfig.training.trainer import make_optimizer
    from trainers import Scratch

    cfg = data.config
    torch.manual_seed(0)
    net = Scratch(hp).build_network(data)
    opt = make_optimizer(net.parameters(), hp, hp.lr)
    loss_fn = SegmentationLoss()
    precision = resolve_precision(hp.precision, "cpu")
    refs = data.case_refs("train")
    batch = PatchSampler(refs, cfg.patch_size, cfg.batch_size, "segmentation", seed=0).sample(0)
    x, y = torch.from_numpy(batch["data"]), torch.from_numpy(batch["seg"])
    per_epoch = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        for _ in range(iters):
            with autocast(precision, "cpu"):
                out = net(x)
                loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), hp.grad_clip)
            opt.step()
            float(loss.detach())
        if epoch > 0:
            per_epoch.append((time.perf_counter() - t0) / iters)
    return per_epoch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--iters", type=int, default=25)
    p.add_argument("--workdir", default="/tmp/sc_bench_train")
    p.add_argument("--out", help="write the numbers as JSON here")
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.update({"SELFCONFIG_RAW": str(work / "raw"), "SELFCONFIG_PREPROCESSED": str(work / "pre"),
                       "SELFCONFIG_RESULTS": str(work / "res")})
    from selfconfig.examples import make_example
    from selfconfig.paths import Roots
    from selfconfig.planning import plan_and_preprocess
    from selfconfig.precision import resolve_precision
    from selfconfig.training.config import TrainingConfig
    from selfconfig.training.context import open_dataset
    from selfconfig.training.run import train_run
    from trainers import Scratch

    roots = Roots.resolve()
    if not (roots.raw / "LUNG_LOBES").is_dir():
        make_example("LUNG_LOBES", roots.raw)
    if not (roots.preprocessed / "LUNG_LOBES" / "plans.json").is_file():
        plan_and_preprocess("LUNG_LOBES", configurations=["3d"], roots=roots, progress=False)
    data = open_dataset("LUNG_LOBES", "3d", roots=roots)
    hp = TrainingConfig.for_device("cpu")
    bare = bare_epoch_seconds(data, hp, args.epochs, args.iters)
    res = train_run(Scratch, data, 0, 1.0, {"epochs": args.epochs, "iters_per_epoch": args.iters, "val_iters": 1,
                                            "final_validation": False}, overwrite=True, progress=False)
    per_iter = [s / args.iters for s in res.history["epoch_seconds"][1:]]
    bare_after = bare_epoch_seconds(data, hp, args.epochs, args.iters)
    cfg = data.config
    out = {
        "plan": {"patch": cfg.patch_size, "batch": cfg.batch_size, "features": cfg.network.encoder.features_per_stage,
                 "estimated_iteration_seconds": cfg.estimated_iteration_seconds},
        "precision": resolve_precision(hp.precision, "cpu"),
        "trainer_seconds_per_iteration_median": statistics.median(per_iter),
        "trainer_epochs": per_iter,
        "bare_seconds_median": statistics.median(bare + bare_after),
        "bare_epochs_before": bare,
        "bare_epochs_after": bare_after,
    }
    out["ratio"] = out["trainer_seconds_per_iteration_median"] / out["bare_seconds_median"]
    print(f"plan: patch {cfg.patch_size}, batch {cfg.batch_size}, {out['precision']}")
    print("| measurement | seconds per iteration |\n|---|---|")
    print(f"| bare forward+backward+step (median of {len(bare) + len(bare_after)} epochs x {args.iters}, "
          f"before and after) | {out['bare_seconds_median']:.3f} |")
    print(f"| selfconfig trainer (median of {len(per_iter)} epochs x {args.iters}) | "
          f"{out['trainer_seconds_per_iteration_median']:.3f} |")
    print(f"| ratio trainer / bare | {out['ratio']:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.exit(main())
