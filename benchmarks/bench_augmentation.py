"""Batched torch augmentation against batchgenerators' transforms, on the same patches.

selfconfig augments a whole batch at once on the training device (:class:`BatchAugmenter`);
nnU-Net v1 (and v2 through batchgenerators-style transforms) augments each sample with numpy and
scipy in CPU worker processes. Both pipelines here are nnU-Net's default augmentation with the
same probabilities and ranges: rotation and scaling (one resampling, cubic for the image in
batchgenerators, linear in torch), Gaussian noise, Gaussian blur, brightness, contrast,
low-resolution simulation, inverted gamma, gamma, mirroring.

Measured in one process, interleaved (A, B, A, B ...) so that load from other work hits both:

* ``torch``: one call of the batched augmenter on a (B, C, *input patch) batch, on the device
  (``--device``; on the CPU with ``--threads`` torch threads);
* ``batchgenerators``: the same batch through batchgenerators' ``Compose`` in this process, one
  thread, as one loader worker runs it. Its throughput with ``--threads`` workers is at best
  ``--threads`` times that (ideal scaling, no memory-bandwidth limit): the script reports both.

The default, one torch thread against one worker, compares the two per CPU core. With several
threads on a machine that other work keeps busy, torch's threads wait for each other at every
operation and its number drops far more than a single-threaded worker's: use more threads only
on an idle machine. Reported: patches per second of each (median over the repeats) and their
ratio. Absolute numbers depend on the machine and on what else runs on it; only the ratio of
one run is worth comparing, and only on an otherwise idle machine. batchgenerators is not a dependency of
selfconfig: ``pip install batchgenerators`` (or ``pip install -e ".[benchmarks]"``).

    .venv/bin/python benchmarks/bench_augmentation.py [--dim 3] [--patch 48 96 96] [--batch 2]
        [--repeats 10] [--threads 1] [--device cpu] [--out /tmp/bench/augmentation.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dim", type=int, choices=(2, 3), default=3)
    p.add_argument("--patch", type=int, nargs="+", default=None, help="final patch (default 48 96 96 / 256 256)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads = batchgenerators workers (ideal)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.patch = args.patch or ([48, 96, 96] if args.dim == 3 else [256, 256])
    if len(args.patch) != args.dim:
        p.error(f"--patch needs {args.dim} values for --dim {args.dim}")
    return args


def torch_pipeline(dim: int, patch: list[int], seed: int):
    """selfconfig's default augmentation for ``patch`` and the larger input patch it samples from."""
    from selfconfig.augment import BatchAugmenter, default_augmentation_config

    aug = BatchAugmenter(default_augmentation_config(dim), generator=torch.Generator().manual_seed(seed),
                         patch_size=patch)
    return aug, aug.input_patch_size()


def batchgenerators_pipeline(dim: int, patch: list[int]):
    """nnU-Net v1's default augmentation ("moreDA" without elastic deformation) in batchgenerators."""
    try:
        from batchgenerators.transforms.abstract_transforms import Compose
        from batchgenerators.transforms.color_transforms import (BrightnessMultiplicativeTransform,
                                                                 ContrastAugmentationTransform, GammaTransform)
        from batchgenerators.transforms.noise_transforms import GaussianBlurTransform, GaussianNoiseTransform
        from batchgenerators.transforms.resample_transforms import SimulateLowResolutionTransform
        from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform
    except ImportError:
        sys.exit("batchgenerators is not installed: pip install batchgenerators (or pip install -e '.[benchmarks]')")
    angle = (-np.pi, np.pi) if dim == 2 else (-np.pi / 6, np.pi / 6)
    return Compose([
        SpatialTransform(patch, patch_center_dist_from_border=None, do_elastic_deform=False, do_rotation=True,
                         angle_x=angle, angle_y=angle, angle_z=angle, p_rot_per_axis=1, do_scale=True,
                         scale=(0.7, 1.4), border_mode_data="constant", border_cval_data=0, order_data=3,
                         border_mode_seg="constant", border_cval_seg=-1, order_seg=1, random_crop=False,
                         p_el_per_sample=0, p_scale_per_sample=0.2, p_rot_per_sample=0.2),
        GaussianNoiseTransform(p_per_sample=0.1),
        GaussianBlurTransform((0.5, 1.0), different_sigma_per_channel=True, p_per_sample=0.2, p_per_channel=0.5),
        BrightnessMultiplicativeTransform(multiplier_range=(0.75, 1.25), p_per_sample=0.15),
        ContrastAugmentationTransform(p_per_sample=0.15),
        SimulateLowResolutionTransform(zoom_range=(0.5, 1), per_channel=True, p_per_channel=0.5, order_downsample=0,
                                       order_upsample=3, p_per_sample=0.25),
        GammaTransform((0.7, 1.5), True, True, retain_stats=True, p_per_sample=0.1),
        GammaTransform((0.7, 1.5), False, True, retain_stats=True, p_per_sample=0.3),
        MirrorTransform(tuple(range(dim))),
    ])


def make_batch(rng: np.random.Generator, batch: int, channels: int, shape: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Noise with one labelled ball per sample: what a loader worker hands over (labels as float,
    batchgenerators' convention; the torch side gets them as uint8)."""
    data = rng.normal(size=(batch, channels, *shape)).astype(np.float32)
    seg = np.zeros((batch, 1, *shape), np.float32)
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    for b in range(batch):
        centre = rng.uniform(-0.5, 0.5, size=len(shape))
        seg[b, 0][sum((g - c) ** 2 for g, c in zip(grid, centre)) < 0.15] = 1
    return data, seg


def time_torch(aug, data: np.ndarray, seg: np.ndarray, device: torch.device) -> float:
    """One batched call; the batch is on the device already (the loader's copy is not timed)."""
    x, y = torch.from_numpy(data).to(device), torch.from_numpy(seg.astype(np.uint8)).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    aug(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def time_batchgenerators(pipeline, data: np.ndarray, seg: np.ndarray) -> float:
    """One batch through the transforms, as one worker runs it (the copies are not timed)."""
    data, seg = data.copy(), seg.copy()
    t0 = time.perf_counter()
    pipeline(data=data, seg=seg)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    aug, input_patch = torch_pipeline(args.dim, args.patch, args.seed)
    bg = batchgenerators_pipeline(args.dim, args.patch)
    rng = np.random.default_rng(args.seed)
    batches = [make_batch(rng, args.batch, args.channels, input_patch) for _ in range(2)]
    for data, seg in batches:  # warm-up: allocator, thread pools, scipy's first calls
        time_torch(aug, data, seg, device)
        time_batchgenerators(bg, data, seg)
    times: dict[str, list[float]] = {"torch": [], "batchgenerators": []}
    for i in range(args.repeats):
        data, seg = batches[i % 2]
        times["torch"].append(time_torch(aug, data, seg, device))
        times["batchgenerators"].append(time_batchgenerators(bg, data, seg))
    torch_rate = args.batch / statistics.median(times["torch"])
    bg_rate = args.batch / statistics.median(times["batchgenerators"])
    result = {
        "dim": args.dim, "patch": args.patch, "input_patch": input_patch, "batch": args.batch,
        "channels": args.channels, "device": str(device), "threads": args.threads, "repeats": args.repeats,
        "torch_patches_per_s": round(torch_rate, 2),
        "batchgenerators_patches_per_s_one_worker": round(bg_rate, 2),
        "batchgenerators_patches_per_s_ideal_workers": round(bg_rate * args.threads, 2),
        "ratio_torch_to_one_worker": round(torch_rate / bg_rate, 2),
        "ratio_torch_to_ideal_workers": round(torch_rate / (bg_rate * args.threads), 2),
        "seconds": {k: [round(t, 4) for t in v] for k, v in times.items()},
    }
    print(json.dumps({k: v for k, v in result.items() if k != "seconds"}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
