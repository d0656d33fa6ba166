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
                             kind: str = "plain", min_seconds: float = 2.0, pause: float = 0.05) -> float:
    """Time forward+backward+step of a small reference network; return train GFLOP/s (3x forward).
    ``kind`` "plain": a small U-Net; an ImageNet encoder kind: that encoder with pooling and head.

    The fastest of at least ``repeats`` timed steps spread over at least ``min_seconds`` (with short
    pauses between them) after ``warmup`` untimed ones: other processes on a shared machine only ever
    make a step slower, so the minimum over a few seconds is the stable estimate as long as the
    machine is idle for some of that time. Whether it was is judged by :class:`MachineActivity`."""
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

    def step() -> float:
        t0 = time.perf_counter()
        with autocast(precision, "cpu"):
            out = net(x)
            out = out[0] if isinstance(out, (list, tuple)) else out
            loss = out.float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    for _ in range(warmup):  # oneDNN builds its kernels in the first steps
        step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_seconds and len(times) < 50):
        times.append(step())
        time.sleep(pause)  # spread the timings, so that a burst of other work misses some of them
    flops = 3.0 * estimate_conv_flops(plan, patch, task) * batch
    return flops / min(times) / 1e9


class MachineActivity:
    """How busy the rest of the machine was between :meth:`start` and :meth:`stop`: the fraction of
    all cores that other processes kept busy (from /proc/stat minus this process's own CPU time),
    and the load average before. A throughput measured while others use more than
    :attr:`busy_threshold` of the machine is marked disturbed: the plan made from it is smaller
    than this machine allows."""

    busy_threshold = 0.25

    def __init__(self) -> None:
        import os

        self.cpus = os.cpu_count() or 1
        self.others_busy: float | None = None
        self.load_before: float | None = None

    @staticmethod
    def _system_busy_ticks() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                parts = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
        return sum(parts) - idle, sum(parts)

    def start(self) -> "MachineActivity":
        import os

        try:
            self.load_before = os.getloadavg()[0]
        except OSError:
            self.load_before = None
        self._sys0 = self._system_busy_ticks()
        self._own0 = os.times()
        return self

    def stop(self) -> "MachineActivity":
        import os

        sys1, own1 = self._system_busy_ticks(), os.times()
        if self._sys0 is not None and sys1 is not None:
            ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            busy = (sys1[0] - self._sys0[0]) / ticks
            total = max((sys1[1] - self._sys0[1]) / ticks, 1e-6)  # all cores' seconds
            own = (own1.user - self._own0.user) + (own1.system - self._own0.system)
            self.others_busy = max(0.0, min(1.0, (busy - own) / total))
        return self

    @property
    def disturbed(self) -> bool:
        if self.others_busy is not None:
            return self.others_busy > self.busy_threshold
        return self.load_before is not None and self.load_before > self.busy_threshold * self.cpus

    def describe(self) -> str:
        parts = []
        if self.others_busy is not None:
            parts.append(f"other processes kept {100 * self.others_busy:.0f} % of the {self.cpus} cores busy")
        if self.load_before is not None:
            parts.append(f"load average {self.load_before:.1f}")
        return ", ".join(parts)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    import platform

    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(precision: str, dim: int) -> str:
    """What a throughput measurement depends on: CPU model, cores, threads, torch, precision."""
    import os

    import torch

    return f"{cpu_model()}|cpus={os.cpu_count()}|threads={torch.get_num_threads()}|torch={torch.__version__}|{precision}|{dim}d"


class CpuBudgetModel:
    """Seconds per training iteration. The effective throughput is measured once per machine and
    kept in ``cache_file`` (a per-user cache, :func:`selfconfig.paths.user_cache_dir`), so that
    planning again on the same machine gives the same plans and skips the measurement;
    ``remeasure`` ignores the cache."""

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
        self._disturbed: dict[tuple[int, str], str] = {}

    def _entry(self, key: str) -> dict | None:
        """The cached measurement ``{"gflops", "disturbed", "note"}`` (older caches held a number)."""
        if self.cache_file is None or not self.cache_file.is_file():
            return None
        try:
            value = json.loads(self.cache_file.read_text())[key]
        except (KeyError, ValueError, OSError, TypeError):
            return None
        if isinstance(value, (int, float)):
            return {"gflops": float(value), "disturbed": False, "note": ""}
        if isinstance(value, dict) and isinstance(value.get("gflops"), (int, float)):
            return {"gflops": float(value["gflops"]), "disturbed": bool(value.get("disturbed")),
                    "note": str(value.get("note", ""))}
        return None

    def _store(self, key: str, entry: dict) -> None:
        if self.cache_file is None:
            return
        from selfconfig.utils import write_json

        data = {}
        if self.cache_file.is_file():
            try:
                data = json.loads(self.cache_file.read_text())
            except (ValueError, OSError):
                data = {}
        data[key] = {"gflops": round(entry["gflops"], 3), "disturbed": entry["disturbed"], "note": entry["note"],
                     "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.cache_file, data)
        except OSError as e:  # a read-only home must not stop planning
            log.warning("could not keep the CPU measurement in %s (%s)", self.cache_file, e)

    def _measure_now(self, dim: int, kind: str) -> dict:
        activity = MachineActivity().start()
        value = measure_effective_gflops(dim, precision=self.precision, kind=kind)
        activity.stop()
        return {"gflops": float(value), "disturbed": activity.disturbed, "note": activity.describe()}

    def gflops(self, dim: int, kind: str = "plain") -> float:
        """Effective training GFLOP/s of ``kind`` networks in ``dim`` D (``--cpu-gflops``, if
        given, for every kind).

        Measured once per machine and kept in :attr:`cache_file` (outside any dataset folder, so
        every later plan on this machine reuses it). A measurement taken while other processes kept
        the machine busy is marked *disturbed*: it is used (it is a lower bound), the plan summary
        says so, and the next plan measures again and keeps the better of the two; an undisturbed
        measurement is final until ``--remeasure-cpu``."""
        if self._given:
            return float(self._given)
        if (dim, kind) not in self._gflops:
            if not self._measure:
                # conservative 2-core figures when measuring is off
                self._gflops[(dim, kind)] = 20.0 if kind == "plain" else 4.0
                return self._gflops[(dim, kind)]
            key = machine_key(self.precision, dim) + ("" if kind == "plain" else f"|{kind}")
            what = f"{dim}D{'' if kind == 'plain' else ', ' + kind}, {self.precision}"
            cached = None if self.remeasure else self._entry(key)
            if cached is not None and not cached["disturbed"]:
                entry = cached
                log.info("effective CPU training throughput (%s): %.1f GFLOP/s, measured earlier on this "
                         "machine (%s; --remeasure-cpu to measure again)", what, entry["gflops"], self.cache_file)
            else:
                entry = self._measure_now(dim, kind)
                log.info("measured effective CPU training throughput (%s): %.1f GFLOP/s (%s)", what,
                         entry["gflops"], entry["note"] or "machine activity unknown")
                if cached is not None and cached["gflops"] > entry["gflops"] and entry["disturbed"]:
                    entry = cached  # both disturbed: the faster one is closer to the truth
                if entry["disturbed"]:
                    log.warning("the CPU measurement (%s) was disturbed: %s. The plan is smaller than this "
                                "machine allows; plan again on an idle machine (the next plan measures again)",
                                what, entry["note"])
                self._store(key, entry)
            self._gflops[(dim, kind)] = entry["gflops"]
            if entry["disturbed"]:
                self._disturbed[(dim, kind)] = entry["note"]
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
        note = None
        if self._disturbed:
            note = "; ".join(f"{dim}D {kind}: {text}" for (dim, kind), text in sorted(self._disturbed.items()))
            note = (f"the CPU throughput was measured while the machine was busy ({note}); this plan is smaller "
                    "than the machine allows: plan again when it is idle")
        return Budget(device="cpu", target_iteration_seconds=self.limit, cpu_threads=torch.get_num_threads(),
                      cpu_gflops=round(measured, 2) if measured else None, precision=self.precision,
                      cpu_gflops_by_encoder=others or None, cpu_measurement_note=note)


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
