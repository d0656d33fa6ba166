"""Budgets the planner sizes networks for.

* :class:`CpuBudgetModel`: seconds per training iteration on this machine's CPU. The cost of a
  plan is its convolution FLOPs (forward x3 for forward + backward) divided by an *effective*
  throughput, measured once by timing a reference network's training step here (so
  normalisation, activation and memory-bound work are priced in), or given with ``--cpu-gflops``
  for reproducible plans. Each encoder kind gets its own measurement: an EfficientNet's
  depthwise convolutions reach a fraction of a plain U-Net's FLOP rate on a CPU (about 5x less
  here), so pricing them at the plain rate planned batches that ran 10x over the budget.
  A U-Net on an ImageNet encoder is priced per part: the encoder at its kind's rate, the
  decoder at the plain rate.
* :class:`GpuBudgetModel`: GPU memory. Activation memory of the plan, scaled so that nnU-Net's
  reference 3D configuration (patch 128^3, batch 2, 32-320 features) costs 8 GB as it does there.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from selfconfig.plans import Budget, ConfigurationPlan, DecoderPlan, EncoderPlan, HeadPlan, NetworkPlan

log = logging.getLogger(__name__)

_GPU_OVERHEAD_GB = 1.5  # CUDA context, cuDNN workspace, parameters and optimizer state


def _reference_plan(dim: int, base: int = 16, n_stages: int = 4, max_features: int = 256) -> NetworkPlan:
    k = [3] * dim
    enc = EncoderPlan(
        kind="plain",
        features_per_stage=[min(base * 2 ** i, max_features) for i in range(n_stages)],
        kernel_sizes=[k] * n_stages,
        strides=[[1] * dim] + [[2] * dim] * (n_stages - 1),
        n_conv_per_stage=[2] * n_stages,
    )
    return NetworkPlan(dim=dim, in_channels=1, num_classes=3, encoder=enc,
                       decoder=DecoderPlan(n_conv_per_stage=[2] * (n_stages - 1)))


def _reference_classifier(kind: str, dim: int) -> NetworkPlan:
    from selfconfig.networks import imagenet_encoder_layout

    return NetworkPlan(dim=dim, in_channels=3, num_classes=3, encoder=imagenet_encoder_layout(kind, dim),
                       decoder=DecoderPlan([]), head=HeadPlan())


def measure_effective_gflops(dim: int, repeats: int = 3, warmup: int = 2, precision: str = "fp32",
                             kind: str = "plain") -> float:
    """Time forward+backward+step of a small reference network; return train GFLOP/s (3x forward).
    ``kind`` "plain": a small U-Net; an ImageNet encoder kind: that encoder with pooling and head.

    The fastest of ``repeats`` timed steps after ``warmup`` untimed ones: other processes on a
    shared machine only ever make a step slower, so the minimum is the stable estimate."""
    import torch

    from selfconfig.networks import build_classification_network, build_segmentation_network, estimate_conv_flops
    from selfconfig.precision import autocast

    torch.manual_seed(0)
    if kind == "plain":
        plan, task = _reference_plan(dim), "segmentation"
        patch, batch = ([32, 48, 48], 1) if dim == 3 else ([128, 128], 4)
        net = build_segmentation_network(plan)
    else:
        plan, task = _reference_classifier(kind, dim), "classification"
        patch, batch = ([64, 64, 64], 2) if dim == 3 else ([128, 128], 4)
        net = build_classification_network(plan)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, plan.in_channels, *patch)
    times = []
    for i in range(repeats + warmup):
        t0 = time.perf_counter()
        with autocast(precision, "cpu"):
            out = net(x)
            out = out[0] if isinstance(out, (list, tuple)) else out
            loss = out.float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:  # oneDNN builds its kernels in the first steps
            times.append(time.perf_counter() - t0)
    flops = 3.0 * estimate_conv_flops(plan, patch, task) * batch
    return flops / min(times) / 1e9


def machine_key(precision: str, dim: int) -> str:
    """What a throughput measurement depends on: CPU model, cores, threads, torch, precision."""
    import os
    import platform

    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}|cpus={os.cpu_count()}|threads={torch.get_num_threads()}|torch={torch.__version__}|{precision}|{dim}d"


class CpuBudgetModel:
    """Seconds per training iteration. The effective throughput is measured once per machine and
    kept in ``cache_file`` (in the preprocessed root), so that planning again on the same machine
    gives the same plans and skips the measurement; ``remeasure`` ignores the cache."""

    def __init__(self, target_seconds: float = 1.0, gflops: float | None = None, measure: bool = True,
                 precision: str = "auto", cache_file: Path | None = None, remeasure: bool = False):
        from selfconfig.precision import resolve_precision

        self.precision = resolve_precision(precision, "cpu")
        self.limit = float(target_seconds)
        self._given = gflops
        self._measure = measure
        self._gflops: dict[int, float] = {}
        self.cache_file = Path(cache_file) if cache_file else None
        self.remeasure = remeasure

    def _cached(self, key: str) -> float | None:
        if self.remeasure or self.cache_file is None or not self.cache_file.is_file():
            return None
        try:
            return float(json.loads(self.cache_file.read_text())[key])
        except (KeyError, ValueError, OSError):
            return None

    def _store(self, key: str, value: float) -> None:
        if self.cache_file is None:
            return
        from selfconfig.utils import write_json

        data = {}
        if self.cache_file.is_file():
            try:
                data = json.loads(self.cache_file.read_text())
            except (ValueError, OSError):
                data = {}
        data[key] = round(value, 3)
        write_json(self.cache_file, data)

    def gflops(self, dim: int, kind: str = "plain") -> float:
        """Effective training GFLOP/s of ``kind`` networks in ``dim`` D (``--cpu-gflops``, if
        given, for every kind)."""
        if self._given:
            return float(self._given)
        if (dim, kind) not in self._gflops:
            if not self._measure:
                # conservative 2-core figures when measuring is off
                self._gflops[(dim, kind)] = 20.0 if kind == "plain" else 4.0
                return self._gflops[(dim, kind)]
            key = machine_key(self.precision, dim) + ("" if kind == "plain" else f"|{kind}")
            what = f"{dim}D{'' if kind == 'plain' else ', ' + kind}, {self.precision}"
            cached = self._cached(key)
            if cached is not None:
                self._gflops[(dim, kind)] = cached
                log.info("effective CPU training throughput (%s): %.1f GFLOP/s, measured earlier on this "
                         "machine (%s; --remeasure-cpu to measure again)", what, cached, self.cache_file)
            else:
                self._gflops[(dim, kind)] = measure_effective_gflops(dim, precision=self.precision, kind=kind)
                log.info("measured effective CPU training throughput (%s): %.1f GFLOP/s", what,
                         self._gflops[(dim, kind)])
                self._store(key, self._gflops[(dim, kind)])
        return self._gflops[(dim, kind)]

    def cost_per_sample(self, net: NetworkPlan, patch: list[int], task: str) -> float:
        from selfconfig.networks.cost import training_seconds_per_sample

        kind = net.encoder.kind
        return training_seconds_per_sample(net, patch, task, self.gflops(net.dim),
                                           None if kind == "plain" else self.gflops(net.dim, kind))

    def annotate(self, cfg: ConfigurationPlan, task: str) -> None:
        cfg.estimated_iteration_seconds = round(cfg.batch_size * self.cost_per_sample(cfg.network, cfg.patch_size, task), 3)

    def describe(self) -> Budget:
        import torch

        plain = [v for (_, kind), v in self._gflops.items() if kind == "plain"]
        measured = self._given or (max(plain) if plain else None)
        others = {Budget.encoder_key(kind, dim): round(v, 2) for (dim, kind), v in sorted(self._gflops.items()) if kind != "plain"}
        return Budget(device="cpu", target_iteration_seconds=self.limit, cpu_threads=torch.get_num_threads(),
                      cpu_gflops=round(measured, 2) if measured else None, precision=self.precision,
                      cpu_gflops_by_encoder=others or None)


class GpuBudgetModel:
    def __init__(self, gpu_memory_gb: float):
        self.gpu_memory_gb = float(gpu_memory_gb)
        self.limit = max(self.gpu_memory_gb - _GPU_OVERHEAD_GB, 0.5)
        self._scale: float | None = None

    def _bytes_to_gb(self) -> float:
        if self._scale is None:
            from selfconfig.networks import estimate_activation_memory_bytes

            ref = _reference_plan(3, base=32, n_stages=6, max_features=320)
            ref_bytes = estimate_activation_memory_bytes(ref, [128, 128, 128], "segmentation")
            self._scale = (8.0 - _GPU_OVERHEAD_GB) / (2 * ref_bytes)
        return self._scale

    def cost_per_sample(self, net: NetworkPlan, patch: list[int], task: str) -> float:
        from selfconfig.networks import estimate_activation_memory_bytes

        return estimate_activation_memory_bytes(net, patch, task) * self._bytes_to_gb()

    def annotate(self, cfg: ConfigurationPlan, task: str) -> None:
        per = self.cost_per_sample(cfg.network, cfg.patch_size, task)
        cfg.estimated_gpu_memory_gb = round(cfg.batch_size * per + _GPU_OVERHEAD_GB, 2)

    def describe(self) -> Budget:
        return Budget(device="cuda", gpu_memory_gb=self.gpu_memory_gb, precision="fp16")
