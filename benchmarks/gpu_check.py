"""GPU readiness check: plan for this GPU, train, predict, and report what a GPU user needs to know.

Run through ``benchmarks/gpu_check.sh`` (which bounds it to 8 minutes). Steps, on synthetic
LUNG_LOBES CT phantoms:

1. plan + preprocess with the GPU budget (``--gpu-memory-gb``, default: this GPU's memory);
2. train Scratch for ``--epochs`` x ``--iters`` iterations with mixed precision (fp16 autocast and a
   gradient scaler), the batched augmentation on the GPU and the background loader workers; after
   every epoch a bare block of the same number of forward+backward+clip+step iterations of a copy
   of the network on one fixed batch already on the GPU (interleaved, as bench_train_step.py);
3. sample ``nvidia-smi`` every 200 ms while training: GPU utilisation; record the peak GPU memory of
   the training epochs against the plan's ``estimated_gpu_memory_gb``;
4. predict the test cases with and without mirroring (time per case, first case dropped as warm-up);
5. stitch a large volume on the GPU and on the CPU (MONAI ``device``/``sw_device``): time and agreement;
6. with more than one GPU: a 2-process DDP training step with torchrun, when this checkout has it.

``--allow-cpu`` runs the same steps on the CPU with tiny sizes (a smoke test of the script itself).
Writes a markdown report to stdout and every number as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


class SmiSampler:
    """``nvidia-smi`` utilisation and memory every 200 ms, in a thread, with timestamps."""

    def __init__(self, gpu: int = 0):
        self.samples: list[tuple[float, float, float]] = []  # (time, util %, memory MiB)
        self.exe = shutil.which("nvidia-smi")
        self.gpu = gpu
        self._stop = threading.Event()

    def __enter__(self):
        if self.exe:
            self.proc = subprocess.Popen([self.exe, "-i", str(self.gpu), "--query-gpu=utilization.gpu,memory.used",
                                          "--format=csv,noheader,nounits", "-lms", "200"],
                                         stdout=subprocess.PIPE, text=True)
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            try:
                u, m = (float(v) for v in line.split(","))
            except ValueError:
                continue
            self.samples.append((time.time(), u, m))

    def __exit__(self, *exc):
        if self.exe:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def mean_util(self, t0: float, t1: float) -> float | None:
        vals = [u for t, u, _ in self.samples if t0 <= t <= t1]
        return statistics.mean(vals) if vals else None


def bare_block_callback(data, hp, device, iters: int, precision: str):
    """After each epoch: ``iters`` bare steps of a copy of the network on one fixed batch on ``device``;
    also records the peak GPU memory of the epoch just finished (before the bare block runs)."""
    import torch

    from selfconfig.data.sampler import PatchSampler
    from selfconfig.precision import autocast
    from selfconfig.training.loop import Callback
    from selfconfig.training.trainer import make_optimizer

    cfg = data.config
    batch = PatchSampler(data.case_refs("train"), cfg.patch_size, cfg.batch_size, "segmentation",
                         oversample=cfg.foreground_oversampling, seed=0).sample(0)
    x = torch.from_numpy(batch["data"]).to(device)
    y = torch.from_numpy(batch["seg"]).to(device)
    cuda = device.type == "cuda"

    class BareBlock(Callback):
        def __init__(self):
            self.seconds: list[float] = []
            self.epoch_peak_gb: list[float] = []
            self.bare_copy_gb = 0.0

        def on_fit_start(self, module, state) -> None:
            self.net = copy.deepcopy(module.network)
            self.loss = copy.deepcopy(module.loss)
            self.opt = make_optimizer(self.net.parameters(), hp, hp.lr)
            self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
            n = sum(p.numel() for p in self.net.parameters())
            self.bare_copy_gb = 3 * 4 * n / 2**30  # weights, gradients, momentum of the copy, float32
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)

        def on_epoch_end(self, module, state, logs) -> None:
            if cuda:
                torch.cuda.synchronize(device)
                self.epoch_peak_gb.append(torch.cuda.max_memory_reserved(device) / 2**30)
            self.net.train()
            t0 = time.perf_counter()
            for _ in range(iters):
                with autocast(precision, device):
                    loss = self.loss(self.net(x), y)
                self.opt.zero_grad(set_to_none=True)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                    self.scaler.unscale_(self.opt)
                    torch.nn.utils.clip_grad_norm_(self.net.parameters(), hp.grad_clip)
                    self.scaler.step(self.opt)
                    self.scaler.update()
                else:
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(self.net.parameters(), hp.grad_clip)
                    self.opt.step()
                float(loss.detach())
            if cuda:
                torch.cuda.synchronize(device)
            self.seconds.append((time.perf_counter() - t0) / iters)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)

    return BareBlock()


def time_prediction(checkpoint: Path, raw: Path, device, tta: bool) -> dict:
    import torch

    from selfconfig.dataset.io import read_case
    from selfconfig.inference.predictor import Predictor

    predictor = Predictor.from_checkpoints([checkpoint], device, tta=tta)
    seconds = []
    for image in sorted((raw / "imagesTs").glob("*_0000.nii.gz")):
        arr, geom = read_case([image])
        t0 = time.perf_counter()
        predictor.predict_case(arr, geom, image.name)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - t0)
    kept = seconds[1:] or seconds  # the first case pays cuDNN's autotuning
    return {"mirroring": tta, "precision": predictor.precision, "seconds": seconds,
            "median_per_case_s": statistics.median(kept)}


def stitch_check(checkpoint: Path, device, shape: list[int]) -> dict:
    """One large preprocessed volume stitched on the device and on the CPU: time and agreement."""
    import numpy as np
    import torch

    from selfconfig.inference.predictor import Predictor, stitch_bytes

    rng = np.random.default_rng(0)
    data = rng.standard_normal((1, *shape)).astype(np.float32)
    out: dict = {"shape": shape}
    results = {}
    for where in ("device", "cpu", "auto"):
        p = Predictor.from_checkpoints([checkpoint], device, tta=False, stitch=where)
        out["float32_stitch_gb"] = stitch_bytes(p.plans.num_classes, 1, shape, False) / 2**30
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        results[where] = p.predict_preprocessed(data).argmax(0)
        out[f"{where}_seconds"] = time.perf_counter() - t0
        if device.type == "cuda":
            out[f"{where}_peak_gpu_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        if where == "auto":
            out["auto_stitched_on"] = str(p.stitch_device(data.shape))
    out["argmax_agreement_device_vs_cpu"] = float((results["device"] == results["cpu"]).mean())
    return out


def ddp_step(work: Path, env: dict) -> dict:
    exe = Path(sys.executable).parent / "selfconfig_train"
    helptext = subprocess.run([str(exe), "--help"], capture_output=True, text=True, env=env).stdout
    if "--nproc-per-node" not in helptext:
        return {"skipped": "this checkout's selfconfig_train has no --nproc-per-node (DDP not merged)"}
    cmd = [str(exe), "-d", "LUNG_LOBES", "-c", "3d", "-tr", "Scratch", "-f", "0", "--epochs", "2",
           "--iters-per-epoch", "50", "--no-progress", "--tag", "ddp", "--nproc-per-node", "2",
           "--no-final-validation"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    return {"command": " ".join(cmd), "returncode": r.returncode, "wall_s": time.perf_counter() - t0,
            "tail": (r.stdout + r.stderr)[-2000:]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/selfconfig_gpu_check"))
    p.add_argument("--out", type=Path, help="JSON (default WORKDIR/gpu_check.json)")
    p.add_argument("--gpu-memory-gb", type=float, help="plan for this much GPU memory (default: the GPU's)")
    p.add_argument("--epochs", type=int, default=6, help="training epochs (the first is warm-up)")
    p.add_argument("--iters", type=int, default=50, help="iterations per epoch and per bare block")
    p.add_argument("--stitch-shape", type=int, nargs=3, default=[192, 384, 384],
                   help="preprocessed volume of the stitching check (z y x)")
    p.add_argument("--allow-cpu", action="store_true", help="smoke-test the script on the CPU")
    args = p.parse_args()

    import logging

    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("no CUDA GPU visible to torch (torch.cuda.is_available() is False); nothing to check", file=sys.stderr)
        return 2
    device = torch.device("cuda:0" if cuda else "cpu")
    work = args.workdir.resolve()
    roots_env = {"SELFCONFIG_RAW": str(work / "raw"), "SELFCONFIG_PREPROCESSED": str(work / "pre"),
                 "SELFCONFIG_RESULTS": str(work / "res")}
    os.environ.update(roots_env)
    from common import make_lung_lobes

    from selfconfig.paths import Roots
    from selfconfig.planning import plan_and_preprocess
    from selfconfig.precision import resolve_precision
    from selfconfig.training.config import TrainingConfig
    from selfconfig.training.context import open_dataset
    from selfconfig.training.run import train_run
    from trainers import Scratch

    report: dict = {"torch": torch.__version__, "device": str(device)}
    if cuda:
        prop = torch.cuda.get_device_properties(0)
        report.update(gpu=prop.name, gpu_memory_gb=round(prop.total_memory / 2**30, 1),
                      gpus=torch.cuda.device_count(), cuda=torch.version.cuda)
    t_start = time.perf_counter()
    shutil.rmtree(work / "pre", ignore_errors=True)
    shutil.rmtree(work / "res", ignore_errors=True)
    make_lung_lobes(work / "raw", n_train=8, n_test=4 if cuda else 2)
    roots = Roots.resolve()
    gpu_gb = args.gpu_memory_gb or (report.get("gpu_memory_gb") if cuda else 0.25)
    t0 = time.perf_counter()
    plan_and_preprocess("LUNG_LOBES", configurations=["3d"], roots=roots, progress=False, gpu_memory_gb=gpu_gb,
                        num_processes=min(8, os.cpu_count() or 1))
    report["plan_and_preprocess_s"] = time.perf_counter() - t0
    data = open_dataset("LUNG_LOBES", "3d", roots=roots)
    cfg = data.config
    hp = TrainingConfig.for_device(device.type)
    precision = resolve_precision(hp.precision, device)
    epochs, iters = (args.epochs, args.iters) if cuda else (3, 2)
    report["plan"] = {"gpu_memory_gb": gpu_gb, "patch": cfg.patch_size, "batch": cfg.batch_size,
                      "features": cfg.network.encoder.features_per_stage,
                      "estimated_gpu_memory_gb": cfg.estimated_gpu_memory_gb}
    bare = bare_block_callback(data, hp, device, iters, precision)

    class ScratchWithBareBlocks(Scratch):
        name = "Scratch"

        def extra_callbacks(self, run):
            return [bare]

    with SmiSampler() as smi:
        t0 = time.time()
        res = train_run(ScratchWithBareBlocks, data, 0, 1.0,
                        {"epochs": epochs, "iters_per_epoch": iters, "val_iters": 2, "final_validation": False},
                        overwrite=True, device=device, progress=False)
        t1 = time.time()
    trainer = [s / iters for s in res.history["epoch_seconds"]]
    pairs = [(trainer[k], (bare.seconds[k - 1] + bare.seconds[k]) / 2) for k in range(2, len(trainer))]
    report["training"] = {
        "precision": precision, "num_workers": hp.num_workers, "epochs": epochs, "iters_per_epoch": iters,
        "trainer_s_per_iteration": [round(t, 4) for t in trainer], "bare_s_per_iteration": bare.seconds,
        "iterations_per_s": len(pairs) / sum(t for t, _ in pairs) if pairs else 1 / trainer[-1],
        "trainer_over_bare": sum(t for t, _ in pairs) / sum(b for _, b in pairs) if pairs else None,
        "gpu_util_mean_percent": smi.mean_util(t0, t1),
        "peak_gpu_reserved_gb_per_epoch": bare.epoch_peak_gb,
        "peak_gpu_reserved_gb": max(bare.epoch_peak_gb) if bare.epoch_peak_gb else None,
        "bare_copy_gb_included": bare.bare_copy_gb,
    }
    ckpt = res.run_dir / "checkpoint_final.pt"
    report["predict"] = [time_prediction(ckpt, roots.raw / "LUNG_LOBES", device, tta) for tta in (False, True)]
    report["stitch"] = stitch_check(ckpt, device, args.stitch_shape if cuda else [24, 64, 64])
    if cuda and torch.cuda.device_count() > 1:
        report["ddp"] = ddp_step(work, {**os.environ, **roots_env})
    report["total_s"] = time.perf_counter() - t_start
    out = args.out or work / "gpu_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    print(f"\nJSON: {out}")
    return 0


def _f(v, nd=2):
    return "n/a" if v is None else f"{v:.{nd}f}"


def print_report(r: dict) -> None:
    t, pl = r["training"], r["plan"]
    print(f"## GPU check: {r.get('gpu', r['device'])} ({r.get('gpu_memory_gb', '?')} GB, {r.get('gpus', 0)} GPU(s)), "
          f"torch {r['torch']}, CUDA {r.get('cuda')}\n")
    print(f"plan for {pl['gpu_memory_gb']} GB: patch {pl['patch']}, batch {pl['batch']}, features {pl['features']}\n")
    print("| measurement | value | target |\n|---|---|---|")
    print(f"| training iterations per second ({t['precision']}, {t['epochs']} x {t['iters_per_epoch']}) | "
          f"{_f(t['iterations_per_s'])} | |")
    print(f"| trainer / bare step | {_f(t['trainer_over_bare'], 3)} | <= 1.1 |")
    print(f"| GPU utilisation while training (mean of nvidia-smi samples) | {_f(t['gpu_util_mean_percent'], 0)} % | |")
    print(f"| peak GPU memory reserved in a training epoch | {_f(t['peak_gpu_reserved_gb'])} GB (includes the bare "
          f"copy's {_f(t['bare_copy_gb_included'])} GB) | plan's estimate {_f(pl['estimated_gpu_memory_gb'])} GB |")
    for pr in r["predict"]:
        print(f"| prediction per case, mirroring {'on' if pr['mirroring'] else 'off'} ({pr['precision']}) | "
              f"{_f(pr['median_per_case_s'])} s | |")
    s = r["stitch"]
    print(f"| stitching {s['shape']} ({_f(s['float32_stitch_gb'])} GB float32): on the GPU / on the CPU | "
          f"{_f(s['device_seconds'])} s / {_f(s['cpu_seconds'])} s, argmax agreement "
          f"{_f(s['argmax_agreement_device_vs_cpu'], 4)}; auto chose {s['auto_stitched_on']} | |")
    if "ddp" in r:
        d = r["ddp"]
        print("| 2-GPU DDP (2 x 50 iterations) | " + (d.get("skipped") or
              f"exit {d['returncode']}, {_f(d['wall_s'], 1)} s wall") + " | |")
    print(f"\ntotal {_f(r['total_s'], 0)} s")


if __name__ == "__main__":
    sys.exit(main())
