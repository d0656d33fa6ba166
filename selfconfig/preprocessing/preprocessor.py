"""Preprocess one case: crop to non-zero, normalise, resample. Used for training data and, with
the same code, for every image that prediction sees."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from selfconfig.dataset.geometry import Geometry
from selfconfig.dataset.inspect import nonzero_bbox
from selfconfig.dataset.labels import LabelScheme
from selfconfig.plans import ConfigurationPlan, Plans
from selfconfig.preprocessing.normalize import normalize
from selfconfig.preprocessing.resample import new_shape_for, resample_image, resample_labels

log = logging.getLogger(__name__)

PREPROCESSING_VERSION = 1
FG_SAMPLES_PER_CLASS = 10_000


def target_spacing_3d(config: ConfigurationPlan, original_spacing: tuple[float, float, float]) -> list[float]:
    """Target spacing in (z, y, x): 2D configurations keep each case's own z spacing."""
    if config.dim == 3:
        return list(config.spacing)
    return [float(original_spacing[0]), *config.spacing]


def separate_z_axis(config: ConfigurationPlan, original_spacing, target_spacing) -> int | None:
    if not config.separate_z_resampling:
        return None
    for sp in (original_spacing, target_spacing):
        sp = list(sp)
        if max(sp) / min(sp) > config.anisotropy_threshold:
            return int(np.argmax(sp))
    return None


def preprocess_key(plans: Plans, config: ConfigurationPlan) -> str:
    """A hash of everything that changes the preprocessed arrays; a rerun redoes a case when it changes."""
    relevant = {
        "version": PREPROCESSING_VERSION,
        "spacing": config.spacing,
        "dim": config.dim,
        "normalization": config.normalization,
        "intensity": plans.intensity_properties,
        "orders": [config.resample_order_image, config.resample_order_label],
        "separate_z": config.separate_z_resampling,
        "labels": plans.labels,
    }
    if plans.regions_class_order is not None:
        relevant["regions_class_order"] = plans.regions_class_order
    return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def sample_foreground(seg: np.ndarray, labels: list[int], seed: int) -> np.ndarray:
    """Up to 10 000 random voxel locations per foreground class (at least 1 % of the class)."""
    rng = np.random.default_rng(seed)
    rows = []
    flat = seg.ravel()
    for lab in labels:
        if lab == 0:
            continue
        idx = np.flatnonzero(flat == lab)
        if idx.size == 0:
            continue
        n = min(idx.size, max(FG_SAMPLES_PER_CLASS, int(np.ceil(idx.size * 0.01))))
        pick = rng.choice(idx, n, replace=False) if n < idx.size else idx
        coords = np.stack(np.unravel_index(pick, seg.shape), axis=1)
        rows.append(np.concatenate([np.full((len(pick), 1), lab), coords], axis=1))
    return np.concatenate(rows).astype(np.int32) if rows else np.zeros((0, 4), np.int32)


def preprocess_case(image: np.ndarray, geometry: Geometry, seg: np.ndarray | None, plans: Plans,
                    config: ConfigurationPlan) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Crop, normalise and resample one case; return data, label map and the properties needed
    to put a prediction back into the original geometry."""
    box = nonzero_bbox(image)
    sl = tuple(slice(a, b) for a, b in box)
    cropped = image[(slice(None), *sl)]
    seg_c = seg[sl] if seg is not None else None
    mask = None
    if np.prod(cropped.shape[1:]) < 0.75 * np.prod(image.shape[1:]):
        mask = np.any(cropped != 0, axis=0)  # z-score inside the body when the background was large
    data = normalize(cropped, config.normalization, plans.intensity_properties, mask)
    orig_spacing = tuple(float(s) for s in geometry.spacing)
    target = target_spacing_3d(config, orig_spacing)
    if geometry.dim == 2:
        target[0] = orig_spacing[0]
    new_shape = new_shape_for(data.shape[1:], orig_spacing, target)
    zaxis = separate_z_axis(config, orig_spacing, target)
    data = resample_image(data, new_shape, order=config.resample_order_image, separate_z_axis=zaxis)
    if seg_c is not None:
        seg_c = resample_labels(np.asarray(seg_c), new_shape, LabelScheme.of(plans).label_values, separate_z_axis=zaxis)
    props = {
        "geometry": geometry.to_dict(),
        "crop_box": [list(b) for b in box],
        "shape_after_crop": list(cropped.shape[1:]),
        "shape_after_resampling": list(data.shape[1:]),
        "spacing_after_resampling": [float(t) for t in target],
        "configuration": config.name,
    }
    return data, seg_c, props
