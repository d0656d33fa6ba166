"""Read each case once: check it (verification) and measure it (fingerprint).

Verification and fingerprinting need the same expensive step, reading every image, so both come
from one pass; :mod:`selfconfig.dataset.verify` turns the problems into a report and
:mod:`selfconfig.fingerprint` aggregates the measurements.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from selfconfig.dataset.cases import Case
from selfconfig.dataset.labels import LabelScheme
from selfconfig.dataset.schema import DatasetInfo
from selfconfig.errors import SelfconfigError

log = logging.getLogger(__name__)

FOREGROUND_SAMPLES_PER_CASE = 10_000


@dataclass
class CaseReport:
    case_id: str
    split: str
    problems: list[str] = field(default_factory=list)
    spacing: list[float] | None = None  # (z, y, x)
    shape: list[int] | None = None  # (Z, Y, X)
    cropped_shape: list[int] | None = None
    num_channels: int | None = None
    dim: int | None = None
    foreground_samples: list[list[float]] | None = None  # per channel
    class_counts: dict[int, int] | None = None  # segmentation: voxels per label
    constant: bool | None = None  # every voxel of every channel has one value (e.g. an all-zero image)
    # segmentation: per foreground label value, its voxel count and centroid relative to the case's
    # foreground bounding box (0 = first foreground voxel, 1 = last, per spatial axis of the label map)
    class_locations: dict[int, dict] | None = None


def nonzero_bbox(image: np.ndarray) -> list[tuple[int, int]]:
    """Bounding box (start, stop) per spatial axis of voxels that are non-zero in any channel."""
    mask = np.any(image != 0, axis=0)
    if not mask.any():
        return [(0, s) for s in mask.shape]
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        box.append((int(hit[0]), int(hit[-1]) + 1))
    return box


def class_locations(label_map: np.ndarray, foreground: list[int]) -> dict[int, dict]:
    """Per foreground value present in ``label_map`` (Z, Y, X): ``{"voxels": n, "centroid": [z, y, x]}``,
    the centroid relative to the bounding box of all ``foreground`` voxels (0.5 = its centre;
    a voxel counts at its centre, so a class that fills the box sits at exactly 0.5). The planner
    finds classes that are mirror images of each other from these (``planners.mirror``).
    One pass per axis: a (position, value) histogram, whatever the number of classes."""
    values = [int(v) for v in foreground]
    if not values or label_map.size == 0:
        return {}
    lab = np.asarray(label_map).astype(np.int64, copy=False).clip(0)
    k = max(int(lab.max()), max(values)) + 1
    profiles = []  # per axis: (positions, k) voxel counts
    for axis in range(lab.ndim):
        moved = np.moveaxis(lab, axis, 0).reshape(lab.shape[axis], -1)
        profiles.append(np.stack([np.bincount(row, minlength=k) for row in moved]))
    fg = np.zeros(k, dtype=bool)
    fg[values] = True
    counts = profiles[0].sum(0)
    out: dict[int, dict] = {}
    if not counts[fg].any():
        return out
    centroids = []
    for prof in profiles:
        hit = np.flatnonzero(prof[:, fg].sum(1))
        start, extent = hit[0], hit[-1] + 1 - hit[0]
        pos = np.arange(prof.shape[0], dtype=float) + 0.5 - start
        centroids.append((pos[:, None] * prof).sum(0) / np.maximum(prof.sum(0), 1) / extent)
    for v in values:
        if counts[v] > 0:
            out[v] = {"voxels": int(counts[v]), "centroid": [round(float(c[v]), 4) for c in centroids]}
    return out


def inspect_case(case: Case, info: DatasetInfo, seed: int = 0) -> CaseReport:
    """Read one case and return what is wrong with it and what it looks like."""
    from selfconfig.dataset.io import read_case, read_label

    rep = CaseReport(case.case_id, case.split)
    first = case.images[0]
    try:
        image, geom = read_case(case.images)
    except SelfconfigError as e:
        rep.problems.append(str(e))
        return rep
    except Exception as e:  # an unreadable file must become a line, not a traceback
        rep.problems.append(f"{first}: cannot be read ({type(e).__name__}: {e}); replace or remove the file")
        return rep

    rep.spacing = [float(s) for s in geom.spacing]
    rep.shape = [int(s) for s in geom.shape]
    rep.num_channels = int(image.shape[0])
    rep.dim = int(geom.dim)
    spatial_spacing = rep.spacing[1:] if geom.dim == 2 else rep.spacing
    if any((not np.isfinite(s)) or s <= 0 for s in spatial_spacing):
        rep.problems.append(f"{first}: spacing {tuple(rep.spacing)} is not positive; fix the file header")
    if info.dimensionality is not None and geom.dim != info.dimensionality:
        rep.problems.append(
            f"{first}: is {geom.dim}D but dataset.json says dimensionality {info.dimensionality}; "
            f"fix dataset.json or the file"
        )
    if rep.num_channels != info.num_input_channels:
        rep.problems.append(
            f"{first}: has {rep.num_channels} channel(s) but dataset.json's channel_names give "
            f"{info.num_input_channels}; fix channel_names or the files"
        )
    finite = np.isfinite(image)
    if not finite.all():
        bad = int((~finite).sum())
        rep.problems.append(f"{first}: contains {bad} NaN/Inf voxel(s); fix or replace the image")
        return rep

    rep.constant = bool(image.size == 0 or image.min() == image.max())
    label_map = None
    if case.label_file is not None:
        try:
            label_map, lgeom = read_label(case.label_file)
        except SelfconfigError as e:
            rep.problems.append(str(e))
            return rep
        except Exception as e:
            rep.problems.append(f"{case.label_file}: cannot be read ({type(e).__name__}: {e}); replace the file")
            return rep
        if tuple(lgeom.shape) != tuple(geom.shape):
            rep.problems.append(
                f"{case.label_file}: shape {tuple(lgeom.shape)} differs from its image {first.name} "
                f"{tuple(geom.shape)}; image and label must be on the same grid"
            )
            return rep
        if not geom.same_grid(lgeom):
            rep.problems.append(
                f"{case.label_file}: geometry (spacing/origin/direction) differs from its image "
                f"{first.name}; resample the label onto the image grid"
            )
        values = np.unique(label_map)
        allowed = set(info.label_values)
        wrong = [int(v) for v in values if int(v) not in allowed]
        if wrong:
            rep.problems.append(
                f"{case.label_file}: label values {wrong} are not in dataset.json's labels "
                f"{sorted(allowed)}; fix the mask or add the labels to dataset.json"
            )
        counts = np.bincount(label_map.ravel().astype(np.int64).clip(0), minlength=max(info.label_values) + 1)
        rep.class_counts = {int(i): int(c) for i, c in enumerate(counts) if c > 0}
        if info.task == "segmentation":
            rep.class_locations = class_locations(label_map, LabelScheme.of(info).foreground_labels)

    box = nonzero_bbox(image)
    rep.cropped_shape = [b - a for a, b in box]
    # foreground intensities: labelled voxels for segmentation, non-zero region otherwise
    rng = np.random.default_rng(seed)
    if label_map is not None and (label_map > 0).any():
        mask = label_map > 0
    else:
        mask = np.any(image != 0, axis=0)
        if not mask.any():
            mask = np.ones(image.shape[1:], dtype=bool)
    idx = np.flatnonzero(mask.ravel())
    take = idx if idx.size <= FOREGROUND_SAMPLES_PER_CASE else rng.choice(idx, FOREGROUND_SAMPLES_PER_CASE, replace=False)
    flat = image.reshape(image.shape[0], -1)
    rep.foreground_samples = [flat[c, take].astype(float).tolist() for c in range(image.shape[0])]
    return rep


def inspect_cases(cases: list[Case], info: DatasetInfo, pool=None, progress: bool = True) -> list[CaseReport]:
    """Inspect many cases, in parallel on ``pool`` (a :class:`selfconfig.parallel.WorkerPool`)."""
    from selfconfig.parallel import WorkerPool

    pool = pool or WorkerPool(1)
    return pool.map(inspect_case, [(c, info, i) for i, c in enumerate(cases)], desc="verify", progress=progress)
