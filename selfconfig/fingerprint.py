"""Dataset fingerprint: the measurements the planner decides from.

Written to ``preprocessed/NAME/fingerprint.json``: spacings, shapes after cropping to the
non-zero region, foreground intensity statistics per channel (mean, std, percentiles 0.5 / 99.5),
class frequencies and, per case and class, voxel count and centroid within the foreground
(``class_locations``). Computed from the training cases only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selfconfig.dataset.inspect import CaseReport
from selfconfig.dataset.schema import DatasetInfo
from selfconfig.utils import write_json


def intensity_statistics(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        values = np.zeros(1)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
        "percentile_00_5": float(np.percentile(values, 0.5)),
        "percentile_99_5": float(np.percentile(values, 99.5)),
    }


def compute_fingerprint(info: DatasetInfo, reports: list[CaseReport], num_test: int = 0,
                        num_unlabeled: int = 0) -> dict:
    train = [r for r in reports if r.split == "train"]
    spacings = [r.spacing for r in train]
    shapes = [r.shape for r in train]
    cropped = [r.cropped_shape for r in train]
    n_channels = train[0].num_channels
    intensities = {}
    for c in range(n_channels):
        vals = np.concatenate([np.asarray(r.foreground_samples[c]) for r in train])
        intensities[str(c)] = intensity_statistics(vals)
    fp = {
        "dataset_name": info.name,
        "task": info.task,
        "dim": int(train[0].dim),
        "num_input_channels": int(n_channels),
        "num_training_cases": len(train),
        "num_test_cases": int(num_test),
        "num_unlabeled_cases": int(num_unlabeled),
        "case_ids": [r.case_id for r in train],
        "spacings": spacings,
        "shapes": shapes,
        "shapes_after_crop": cropped,
        "median_spacing": np.median(np.asarray(spacings), axis=0).tolist(),
        "median_shape_after_crop": np.median(np.asarray(cropped), axis=0).tolist(),
        "foreground_intensity_properties_per_channel": intensities,
    }
    if info.task == "segmentation":
        values = info.label_values  # every value of the label maps (regions: their member values)
        counts = np.zeros(max(values) + 1, dtype=np.int64)
        for r in train:
            for k, v in (r.class_counts or {}).items():
                counts[int(k)] += v
        total = max(int(counts.sum()), 1)
        names = {v: k for k, v in info.labels.items() if not isinstance(v, list)}
        key = {i: names.get(i, str(i)) for i in values}
        fp["class_voxel_counts"] = {key[i]: int(counts[i]) for i in values}
        fp["class_frequencies"] = {key[i]: float(counts[i] / total) for i in values}
        # per case, per foreground label value: voxels and centroid relative to the case's foreground
        # bounding box (z, y, x; the planner's mirror rule, planners/mirror.py)
        fp["class_locations"] = {r.case_id: {str(v): loc for v, loc in sorted((r.class_locations or {}).items())}
                                 for r in train}
    else:
        fp["class_counts"] = {}
    return fp


def add_classification_counts(fp: dict, info: DatasetInfo, labels: list[int]) -> None:
    names = {v: k for k, v in info.labels.items()}
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=info.num_classes)
    total = max(int(counts.sum()), 1)
    fp["class_counts"] = {names[i]: int(counts[i]) for i in range(info.num_classes)}
    fp["class_frequencies"] = {names[i]: float(counts[i] / total) for i in range(info.num_classes)}


def save_fingerprint(fp: dict, path: Path) -> None:
    write_json(path, fp)
