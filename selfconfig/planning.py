"""API behind ``selfconfig_plan_and_preprocess``: verify -> fingerprint -> plans -> preprocessed data."""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from selfconfig import plugins
from selfconfig.dataset.verify import verify_dataset
from selfconfig.fingerprint import add_classification_counts, compute_fingerprint, save_fingerprint
from selfconfig.paths import DEFAULT_PLANS_NAME, Roots, resolve_dataset_name, user_cache_dir  # noqa: F401 (re-exported)
from selfconfig.plans import Plans
from selfconfig.errors import ConfigurationError
from selfconfig.dataset.trainability import trainability_warnings
from selfconfig.preprocessing.sources import compare_with_raw, remove_deleted
from selfconfig.utils import atomic_write_bytes, check_free_space, write_error

log = logging.getLogger(__name__)

CPU_THROUGHPUT_CACHE = "cpu_throughput.json"  # in the user cache folder: one measurement per machine
PLANNERS = plugins.Kind("selfconfig.planners", "planner", ConfigurationError)
DEFAULT_PLANNER = "DefaultPlanner"


def available_planners() -> list[str]:
    return plugins.available(PLANNERS)


def get_planner(name: str | None) -> type:
    """The planner class ``name`` refers to (default: DefaultPlanner): an entry point of the group
    ``selfconfig.planners``, or ``module:Class`` / ``path/to/file.py:Class``."""
    name = name or DEFAULT_PLANNER
    cls, _ = plugins.load(PLANNERS, name)
    if not isinstance(cls, type) or not callable(getattr(cls, "plan", None)):
        raise ConfigurationError(f"planner {name!r} is not a planner class (a class with a plan() method, e.g. a "
                                 f"subclass of planners.DefaultPlanner)")
    return cls


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
    warnings: list[str] = field(default_factory=list)  # the dataset cannot train as it is (see trainability_warnings)
    stale: list[str] = field(default_factory=list)  # --verify: preprocessed cases that no longer match raw


def plan_and_preprocess(dataset: str | int | None = None, *, configurations: list[str] | None = None,
                        planner: str | None = None, num_processes: int = 2, verify_only: bool = False,
                        gpu_memory_gb: float | None = None, cpu_target_seconds: float = 1.0,
                        cpu_gflops: float | None = None, roots: Roots | None = None,
                        progress: bool = True, plans_name: str | None = None,
                        remeasure_cpu: bool = False, scheduler: str | None = None,
                        target_spacing: list[float] | None = None) -> PlanAndPreprocessResult:
    """Verify the raw dataset, write fingerprint.json and the plans, and preprocess every split.

    Nothing is written when verification finds a problem (it raises VerificationError listing all).
    ``scheduler``: verify and preprocess the cases as tasks on a Dask cluster (an address or
    ``local:N``) instead of ``num_processes`` local processes. ``target_spacing``: the
    full-resolution spacing to plan instead of the planner's (nnU-Net's ``-overwrite_target_spacing``);
    it needs a ``plans_name`` of its own, so the default plans and their data stay as they are.
    """
    from selfconfig.parallel import WorkerPool

    if target_spacing is not None and (plans_name or DEFAULT_PLANS_NAME) == DEFAULT_PLANS_NAME:
        raise ConfigurationError("a target spacing of your own needs plans of their own: add --plans-name NAME "
                                 "(then train and predict with -p NAME), so the default plans and their "
                                 "preprocessed data stay as they are")

    if scheduler:
        from selfconfig.dask_cluster import check_scheduler, dask_pool

        check_scheduler(scheduler)
        pool_cm = dask_pool(scheduler)
    else:
        pool_cm = WorkerPool(num_processes)
    with pool_cm as pool:
        return _plan_and_preprocess(dataset, configurations, planner, pool, verify_only, gpu_memory_gb,
                                    cpu_target_seconds, cpu_gflops, roots, progress, plans_name, remeasure_cpu,
                                    target_spacing)


def _plan_and_preprocess(dataset, configurations, planner, pool, verify_only, gpu_memory_gb, cpu_target_seconds,
                         cpu_gflops, roots, progress, plans_name, remeasure_cpu,
                         target_spacing=None) -> PlanAndPreprocessResult:
    t0 = time.perf_counter()
    planner_cls = get_planner(planner)  # an unknown planner is refused before the dataset is read
    roots = roots or Roots.resolve()
    name = resolve_dataset_name(dataset, roots, need="raw")
    raw_dir = roots.raw / name
    info, cases, reports = verify_dataset(raw_dir, progress=progress, pool=pool)
    result = PlanAndPreprocessResult(name, {k: len(v) for k, v in cases.items()})
    result.warnings = trainability_warnings(info, reports, cases)
    for w in result.warnings:
        log.warning("%s", w)
    pre_dir = roots.preprocessed / name
    sources = compare_with_raw(pre_dir, cases)
    if verify_only:
        result.stale = sources.lines()  # reported, nothing written
        result.seconds = time.perf_counter() - t0
        return result

    fp = compute_fingerprint(info, reports, len(cases["test"]), len(cases["unlabeled"]))
    fp["warnings"] = result.warnings
    if info.task == "classification":
        add_classification_counts(fp, info, [c.label for c in cases["train"]])
    extra = {}
    if target_spacing is not None:  # planners written without the option still load when it is not given
        params = inspect.signature(planner_cls).parameters
        if "target_spacing" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            raise ConfigurationError(f"planner {planner_cls.__name__} takes no target spacing of the user's "
                                     "(its __init__ has no target_spacing argument)")
        extra["target_spacing"] = target_spacing
    p = planner_cls(info, fp, gpu_memory_gb=gpu_memory_gb, cpu_target_seconds=cpu_target_seconds,
                    cpu_gflops=cpu_gflops, plans_name=plans_name, remeasure_cpu=remeasure_cpu,
                    throughput_cache=user_cache_dir() / CPU_THROUGHPUT_CACHE, **extra)
    plans = p.plan()
    configs = configurations or list(plans.configurations)
    unknown = [c for c in configs if c not in plans.configurations]
    if unknown:
        raise ConfigurationError(
            f"configuration(s) {', '.join(unknown)} not planned for {name}; available: {', '.join(plans.configurations)}")

    from selfconfig.preprocessing.runner import pending_jobs, preprocess_dataset, required_bytes

    dirs: dict[str, Path] = {}
    for c in configs:  # one preprocessing per data identifier
        data_name = plans.configuration(c).data_name
        if data_name not in {plans.configuration(k).data_name for k in dirs}:
            dirs[c] = config_data_dir(pre_dir, plans.plans_name, data_name)
    jobs, skipped = pending_jobs(dirs, plans, cases)
    if skipped:
        log.info("%d case x configuration pair(s) already preprocessed and unchanged: skipped", skipped)
    sizes = {r.case_id: (r.shape, r.spacing, r.num_channels) for r in reports if r.shape}
    check_free_space(pre_dir, required_bytes(jobs, plans, sizes) + (1 << 20),
                     f"preprocessing {len(jobs)} case(s) of {name}")  # before anything is written
    try:
        pre_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(pre_dir, e) from None
    save_fingerprint(fp, pre_dir / "fingerprint.json")
    atomic_write_bytes(pre_dir / "dataset.json", (raw_dir / "dataset.json").read_bytes())
    path = plans_file(pre_dir, plans.plans_name)
    plans.save(path)
    remove_deleted(pre_dir, sources)
    result.plans, result.plans_path = plans, path
    result.preprocessed = preprocess_dataset(dirs, plans, cases, pool=pool, progress=progress, jobs=jobs)
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
    lines += [f"  note: {n}" for n in plans.notes]
    for name, c in plans.configurations.items():
        star = " (recommended)" if name == plans.recommended_configuration else ""
        e = c.network.encoder
        lines.append(f"  configuration {name}{star}:")
        lines.append(f"    spacing {fmt(c.spacing)}  median shape {fmt(c.median_shape)}  patch {fmt(c.patch_size)}  batch {c.batch_size}")
        lines.append(f"    normalisation {', '.join(c.normalization)}")
        axes = c.axes_to_mirror()
        lines.append(f"    mirroring axes {', '.join(map(str, axes)) if axes else 'none'}"
                     + (f" ({c.mirror_axes_reason})" if len(axes) < c.dim and c.mirror_axes_reason else ""))
        lines.append(f"    encoder {e.kind}: {e.n_stages} stages, features {e.features_per_stage}")
        if c.data_identifier and c.data_identifier != name:
            lines.append(f"    shares the preprocessed data of {c.data_identifier}")
        if c.previous_stage:
            lines.append(f"    cascade: input {plans.num_input_channels} image channel(s) + "
                         f"{c.network.in_channels - plans.num_input_channels} one-hot channel(s) of the "
                         f"{c.previous_stage} prediction")
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
