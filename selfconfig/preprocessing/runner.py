"""Preprocess every case of every split for every configuration, in parallel, skipping cases
that are already done. Each case is read once for all configurations."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np

from selfconfig.dataset.cases import Case
from selfconfig.dataset.labels import LabelScheme
from selfconfig.parallel import WorkerPool
from selfconfig.plans import Plans
from selfconfig.preprocessing import storage
from selfconfig.preprocessing.preprocessor import preprocess_case, preprocess_key, sample_foreground

log = logging.getLogger(__name__)


def _seg_dtype(max_value: int):
    return np.uint8 if max_value <= 255 else np.int16


def preprocess_and_save(case: Case, plans_dict: dict, targets: list[tuple[str, str, str]],
                        source: str | None = None) -> str:
    """Read ``case`` once and write it for each ``(configuration, folder, key)`` target."""
    from selfconfig.dataset.io import read_case, read_label

    plans = Plans.from_dict(plans_dict)
    image, geometry = read_case(case.images)
    seg = None
    if case.label_file is not None:
        seg, _ = read_label(case.label_file)
        seg = seg.astype(_seg_dtype(max(LabelScheme.of(plans).label_values)))
    for config_name, out_folder, key in targets:
        data, seg_p, props = preprocess_case(image, geometry, seg, plans, plans.configuration(config_name))
        fg = None
        if seg_p is not None:
            fg = sample_foreground(seg_p, LabelScheme.of(plans).foreground_labels, seed=zlib.crc32(case.case_id.encode()))
            props["classes_present"] = sorted(int(v) for v in np.unique(seg_p))
        props.update({
            "case_id": case.case_id,
            "split": case.split,
            "source_files": [str(p) for p in case.images],
            "label_file": str(case.label_file) if case.label_file else None,
            "label": case.label,
            "meta": {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in case.meta.items()},
            "preprocess_key": key,
            "source_key": source,
        })
        storage.save_case(Path(out_folder), case.case_id, data, seg_p, fg, props)
    return case.case_id


def estimated_bytes(plans: Plans, config_name: str, shape, spacing, channels: int) -> int:
    """About what one preprocessed case takes on disk: float32 data after resampling, plus its
    label map and foreground samples (an upper bound: cropping only shrinks it)."""
    from selfconfig.preprocessing.preprocessor import target_spacing_3d

    config = plans.configuration(config_name)
    target = target_spacing_3d(config, tuple(spacing))
    voxels = 1.0
    for s, sp, t in zip(shape, spacing, target):
        voxels *= max(1.0, s * float(sp) / float(t)) if t and sp else max(1, s)
    return int(voxels * (4 * channels + 2)) + 2 * 4096


def pending_jobs(config_dirs: dict[str, Path], plans: Plans, cases: dict[str, list[Case]]) -> tuple[list, int]:
    """``[(case, [(config, folder, key), ...], source_key), ...]`` of the cases to (re)do: new ones,
    ones whose plans changed what they become, ones whose raw files changed; and the skip count."""
    from selfconfig.preprocessing.sources import source_key

    keys = {name: preprocess_key(plans, plans.configuration(name)) for name in config_dirs}
    jobs, skipped = [], 0
    for split, split_cases in cases.items():
        for c in split_cases:
            targets = []
            src = source_key(c)
            for name, cdir in config_dirs.items():
                folder = storage.split_dir(cdir, split)
                if storage.is_done(folder, c.case_id, keys[name], src):
                    skipped += 1
                else:
                    targets.append((name, str(folder), keys[name]))
            if targets:
                jobs.append((c, targets, src))
    return jobs, skipped


def required_bytes(jobs: list, plans: Plans, sizes: dict[str, tuple]) -> int:
    """Estimated disk space of ``jobs``; ``sizes``: case id -> (shape, spacing, channels)."""
    return sum(estimated_bytes(plans, name, *sizes[c.case_id]) for c, targets, _ in jobs
               for name, _, _ in targets if c.case_id in sizes)


def preprocess_dataset(config_dirs: dict[str, Path], plans: Plans, cases: dict[str, list[Case]],
                       pool: WorkerPool | None = None, progress: bool = True,
                       jobs: list | None = None) -> dict[str, dict[str, int]]:
    """Write ``config_dirs[config]/<split>/`` for each configuration; returns case counts. A case
    is redone when the plans change what it becomes or its raw files changed (source key)."""
    pool = pool or WorkerPool(1)
    if jobs is None:
        jobs, skipped = pending_jobs(config_dirs, plans, cases)
        if skipped:
            log.info("%d case x configuration pair(s) already preprocessed: skipped", skipped)
    for _, targets, _ in jobs:
        for _, folder, _ in targets:
            Path(folder).mkdir(parents=True, exist_ok=True)
    plans_dict = plans.to_dict()
    # largest cases first keeps the workers busy until the end
    jobs = sorted(jobs, key=lambda j: -sum(p.stat().st_size for p in j[0].images if p.is_file()))
    pool.map(preprocess_and_save, [(c, plans_dict, t, src) for c, t, src in jobs], desc="preprocess",
             progress=progress)
    return {name: {split: len(v) for split, v in cases.items()} for name in config_dirs}
