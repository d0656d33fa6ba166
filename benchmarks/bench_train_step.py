"""Trainer wall time per iteration against the bare forward + backward + step of the same network.

On the CPU plan of the LUNG_LOBES example (3d configuration), two numbers, measured in one
process, interleaved:

* trainer: ``selfconfig_train``'s own training (Scratch, background loader worker, batched
  augmentation on the training device, loss, clipping, schedule, logging; progress bar off),
  from the loop's own epoch timing (``epoch_seconds`` / iterations; validation, checkpoints and
  plots are outside it).
* bare: a copy of the same network (same initial weights), same loss, optimizer and precision, on
  one fixed batch already in memory: forward, backward, clip, step. No data loading, no
  augmentation.

The machine's speed drifts by several per cent over minutes here (single blocks of 25 steps swing
by +-8 %), so the two are not run one after the other: after every trainer epoch, a callback of the
benchmark's trainer subclass runs one bare block of the same number of iterations. Epoch ``k`` of
the trainer is paired with the bare blocks right before and after it; the first epoch and the
first bare block are dropped (warm-up: the allocator and oneDNN's kernel cache settle over the
first few dozen steps). Reported: total trainer time / total bare time over the kept blocks, and
the median and spread of the per-epoch ratios.

While the bare block runs, the loader worker fills its prefetch queue (4 batches), so each trainer
epoch starts with 4 batches already cropped; with 25 iterations per epoch that hides about
4 x 12 ms of cropping per 25 s epoch (0.2 %).

The target is trainer / bare <= 1.05: the data pipeline must hide behind the network. Run it on an
otherwise idle machine.

    .venv/bin/python benchmarks/bench_train_step.py [--epochs 9] [--iters 25] [--workdir /tmp/sc_bench_train]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path


def make_bare_block(data, hp, iters: int):
    """A callback that times ``iters`` bare steps of a copy of the trainer's network after each epoch
    (seconds per iteration of each block in its ``seconds``)."""
    import torch

    from selfconfig.data.sampler import PatchSampler
    from selfconfig.precision import autocast, resolve_precision
    from selfconfig.training.loop import Callback
    from selfconfig.training.trainer import make_optimizer

    cfg = data.config
    refs = data.case_refs("train")
    batch = PatchSampler(refs, cfg.patch_size, cfg.batch_size, "segmentation",
                         oversample=cfg.foreground_oversampling, seed=0).sample(0)
    x, y = torch.from_numpy(batch["data"]), torch.from_numpy(batch["seg"])
    precision = resolve_precision(hp.precision, "cpu")

    class BareBlock(Callback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_fit_start(self, module, state) -> None:
            self.net = copy.deepcopy(module.network)
            self.loss = copy.deepcopy(module.loss)
            self.opt = make_optimizer(self.net.parameters(), hp, hp.lr)

        def on_epoch_end(self, module, state, logs) -> None:
            self.net.train()
            t0 = time.perf_counter()
            for _ in range(iters):
                with autocast(precision, "cpu"):
                    out = self.net(x)
                    loss = self.loss(out, y)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), hp.grad_clip)
                self.opt.step()
                float(loss.detach())
            self.seconds.append((time.perf_counter() - t0) / iters)

    return BareBlock()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=9, help="trainer epochs = bare blocks (the first of each is dropped)")
    p.add_argument("--iters", type=int, default=25, help="iterations per epoch and per bare block")
    p.add_argument("--workdir", default="/tmp/sc_bench_train")
    p.add_argument("--out", help="write the numbers as JSON here")
    args = p.parse_args()
    if args.epochs < 3:
        p.error("--epochs must be at least 3 (the first epoch is warm-up)")
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
    bare_block = make_bare_block(data, hp, args.iters)

    class ScratchWithBareBlocks(Scratch):
        name = "Scratch"  # the run is Scratch's; the callback only times the bare steps in between

        def extra_callbacks(self, run):
            return [bare_block]

    res = train_run(ScratchWithBareBlocks, data, 0, 1.0,
                    {"epochs": args.epochs, "iters_per_epoch": args.iters, "val_iters": 1,
                     "final_validation": False}, overwrite=True, progress=False)
    trainer = [s / args.iters for s in res.history["epoch_seconds"]]
    bare = list(bare_block.seconds)  # bare[k] ran right after trainer epoch k
    # trainer epoch k (k >= 1) against the mean of the bare blocks before (k-1) and after (k) it, k-1 >= 1
    pairs = [(trainer[k], (bare[k - 1] + bare[k]) / 2) for k in range(2, len(trainer))]
    ratios = [t / b for t, b in pairs]
    total_trainer = sum(t for t, _ in pairs)
    total_bare = sum(b for _, b in pairs)
    cfg = data.config
    out = {
        "plan": {"patch": cfg.patch_size, "batch": cfg.batch_size, "features": cfg.network.encoder.features_per_stage,
                 "estimated_iteration_seconds": cfg.estimated_iteration_seconds},
        "precision": resolve_precision(hp.precision, "cpu"),
        "iters": args.iters,
        "trainer_epochs": trainer,
        "bare_blocks": bare,
        "pair_ratios": ratios,
        "trainer_seconds_per_iteration": total_trainer / len(pairs),
        "bare_seconds_per_iteration": total_bare / len(pairs),
        "ratio": total_trainer / total_bare,
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }
    print(f"plan: patch {cfg.patch_size}, batch {cfg.batch_size}, {out['precision']}; "
          f"{len(pairs)} trainer epochs x {args.iters} iterations, each between two bare blocks")
    print("| measurement | seconds per iteration |\n|---|---|")
    print(f"| bare forward+backward+clip+step (blocks 2-{len(bare)}) | {out['bare_seconds_per_iteration']:.3f} |")
    print(f"| selfconfig trainer (epochs 3-{len(trainer)}) | {out['trainer_seconds_per_iteration']:.3f} |")
    print(f"| ratio trainer / bare (totals) | {out['ratio']:.3f} |")
    print(f"| per-epoch ratios: median (min-max) | {out['ratio_median']:.3f} "
          f"({out['ratio_min']:.3f}-{out['ratio_max']:.3f}) |")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.exit(main())
