"""API behind ``selfconfig_plan_and_preprocess``: verify -> fingerprint -> plans -> preprocessed data."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from selfconfig.dataset.verify import verify_dataset
from selfconfig.fingerprint import add_classification_counts, compute_fingerprint, save_fingerprint
from selfconfig.paths import Roots, resolve_dataset_name, user_cache_dir
from selfconfig.plans import Plans
from selfconfig.errors import ConfigurationError

log = logging.getLogger(__name__)

DEFAULT_PLANS_NAME = "selfconfigPlans"
CPU_THROUGHPUT_CACHE = "cpu_throughput.json"  # in the user cache folder: one measurement per machine


def plans_file(preprocessed_dir: Path, plans_name: str = DEFAULT_PLANS_NAME) -> Path:
    """``plans.json`` for the default plans, ``<plans_name>.json`` for any other planner's."""
    return Path(preprocessed_dir) / ("plans.json" if plans_name == DEFAULT_PLANS_NAME else f"{plans_name}.json")


def config_data_dir(preprocessed_dir: Path, plans_name: str, data_name: str) -> Path:
    """``<data>/`` for the default plans, ``<plans_name>_<data>/`` for others, where ``data`` is the
    configuration's data identifier (configurations with the same preprocessing share it)."""
    name = data_name if plans_name == DEFAULT_PLANS_NAME else f"{plans_name}_{data_name}"
    return Path(preprocessed_dir) / name


def load_plans(preprocessed_dir: Path, plans_name: str = DEFAULT_PLANS_NAME) -> Plans:
    return Plans.load(plans_file(preprocessed_dir, plans_name))


@dataclass
class PlanAndPreprocessResult:
    dataset: str
    verified_cases: dict[str, int]
    plans: Plans | None = None
    plans_path: Path | None = None
    preprocessed: dict = field(default_factory=dict)
    seconds: float = 0.0


def plan_and_preprocess(dataset: str | int | None = None, *, configurations: list[str] | None = None,
                        planner: str | None = None, num_processes: int = 2, verify_only: bool = False,
                        gpu_memory_gb: float | None = None, cpu_target_seconds: float = 1.0,
                        cpu_gflops: float | None = None, roots: Roots | None = None,
                        progress: bool = True, plans_name: str | None = None,
                        remeasure_cpu: bool = False) -> PlanAndPreprocessResult:
    """Verify the raw dataset, write fingerprint.json and the plans, and preprocess every split.

    Nothing is written when verification finds a problem (it raises VerificationError listing all).
    """
    from selfconfig.parallel import WorkerPool

    with WorkerPool(num_processes) as pool:
        return _plan_and_preprocess(dataset, configurations, planner, pool, verify_only, gpu_memory_gb,
                                    cpu_target_seconds, cpu_gflops, roots, progress, plans_name, remeasure_cpu)


def _plan_and_preprocess(dataset, configurations, planner, pool, verify_only, gpu_memory_gb, cpu_target_seconds,
                         cpu_gflops, roots, progress, plans_name, remeasure_cpu) -> PlanAndPreprocessResult:
    from planners import get_planner

    t0 = time.perf_counter()
    roots = roots or Roots.resolve()
    name = resolve_dataset_name(dataset, roots, need="raw")
    raw_dir = roots.raw / name
    info, cases, reports = verify_dataset(raw_dir, progress=progress, pool=pool)
    result = PlanAndPreprocessResult(name, {k: len(v) for k, v in cases.items()})
    if verify_only:
        result.seconds = time.perf_counter() - t0
        return result

    pre_dir = roots.preprocessed / name
    fp = compute_fingerprint(info, reports, len(cases["test"]), len(cases["unlabeled"]))
    if info.task == "classification":
        add_classification_counts(fp, info, [c.label for c in cases["train"]])
    planner_cls = get_planner(planner)
    p = planner_cls(info, fp, gpu_memory_gb=gpu_memory_gb, cpu_target_seconds=cpu_target_seconds,
                    cpu_gflops=cpu_gflops, plans_name=plans_name, remeasure_cpu=remeasure_cpu,
                    throughput_cache=user_cache_dir() / CPU_THROUGHPUT_CACHE)
    plans = p.plan()
    configs = configurations or list(plans.configurations)
    unknown = [c for c in configs if c not in plans.configurations]
    if unknown:
        raise ConfigurationError(
            f"configuration(s) {', '.join(unknown)} not planned for {name}; available: {', '.join(plans.configurations)}")

    pre_dir.mkdir(parents=True, exist_ok=True)
    save_fingerprint(fp, pre_dir / "fingerprint.json")
    shutil.copyfile(raw_dir / "dataset.json", pre_dir / "dataset.json")
    path = plans_file(pre_dir, plans.plans_name)
    plans.save(path)
    from selfconfig.preprocessing.runner import preprocess_dataset

    result.plans, result.plans_path = plans, path
    dirs: dict[str, Path] = {}
    for c in configs:  # one preprocessing per data identifier
        data_name = plans.configuration(c).data_name
        if data_name not in {plans.configuration(k).data_name for k in dirs}:
            dirs[c] = config_data_dir(pre_dir, plans.plans_name, data_name)
    result.preprocessed = preprocess_dataset(dirs, plans, cases, pool=pool, progress=progress)
    result.seconds = time.perf_counter() - t0
    return result


def format_plans_summary(plans: Plans) -> str:
    """A readable plan summary for the terminal."""
    lines = [f"Plans '{plans.plans_name}' for {plans.dataset_name} ({plans.task}, {plans.dim}D, "
             f"{plans.num_input_channels} input channel(s), {plans.num_classes} classes) by {plans.planner}"]
    b = plans.budget
    if b.device == "cpu":
        lines.append(f"  budget: CPU, ~{b.target_iteration_seconds:g} s per training iteration "
                     f"({b.cpu_threads} threads, {b.precision}, {b.cpu_gflops} effective GFLOP/s"
                     + "".join(f"; {k}: {v}" for k, v in (b.cpu_gflops_by_encoder or {}).items()) + ")")
        if b.cpu_measurement_note:
            lines.append(f"  WARNING: {b.cpu_measurement_note}")
    else:
        lines.append(f"  budget: GPU with {b.gpu_memory_gb:g} GB")
    lines.append(f"  median spacing {fmt(plans.original_median_spacing)}, median shape {fmt(plans.original_median_shape)}")
    for name, c in plans.configurations.items():
        star = " (recommended)" if name == plans.recommended_configuration else ""
        e = c.network.encoder
        lines.append(f"  configuration {name}{star}:")
        lines.append(f"    spacing {fmt(c.spacing)}  median shape {fmt(c.median_shape)}  patch {fmt(c.patch_size)}  batch {c.batch_size}")
        lines.append(f"    normalisation {', '.join(c.normalization)}")
        lines.append(f"    encoder {e.kind}: {e.n_stages} stages, features {e.features_per_stage}")
        if c.data_identifier and c.data_identifier != name:
            lines.append(f"    shares the preprocessed data of {c.data_identifier}")
        if e.kind == "plain":
            lines.append(f"      strides {[fmt(s) for s in e.strides]}")
            lines.append(f"      kernels {[fmt(k) for k in e.kernel_sizes]}")
        if c.estimated_iteration_seconds is not None:
            lines.append(f"    estimated {c.estimated_iteration_seconds:.2f} s per training iteration on this CPU")
        if c.estimated_gpu_memory_gb is not None:
            lines.append(f"    estimated {c.estimated_gpu_memory_gb:.1f} GB GPU memory")
    return "\n".join(lines)


def fmt(v) -> str:
    return "x".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
