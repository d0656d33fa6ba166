"""The cascade's extra input: a previous stage's segmentation on the grid of a preprocessed case.

A cascade configuration (``ConfigurationPlan.previous_stage``, nnU-Net's ``3d_cascade_fullres``)
gets the label map that the previous stage (``3d_lowres``) predicted as extra input channels. That
label map is always taken in the scan's own geometry, exactly as ``selfconfig_predict`` and the
final validation write it, and brought onto the preprocessed grid with the case's own crop box
and the label resampling of preprocessing. Training (from the previous stage's validation
predictions) and prediction (from the previous stage's model) therefore see the same input.

For training, :func:`preprocess_previous_stage` is a preprocessing step that runs before the run
starts: it writes each case's map on the grid as an array beside the preprocessed data's
properties, so that the training run itself reads preprocessed arrays only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from selfconfig.dataset.io import read_label
from selfconfig.dataset.labels import LabelScheme
from selfconfig.errors import ConfigurationError
from selfconfig.plans import ConfigurationPlan, Plans
from selfconfig.preprocessing import storage
from selfconfig.preprocessing.preprocessor import separate_z_axis
from selfconfig.preprocessing.resample import resample_labels
from selfconfig.utils import read_json, write_json

log = logging.getLogger(__name__)


def previous_stage_labels(plans: Plans) -> list[int]:
    """The label values that get one input channel each (background is implicit, as nnU-Net)."""
    return LabelScheme.of(plans).foreground_labels


def to_preprocessed_grid(seg: np.ndarray, props: dict, plans: Plans, config: ConfigurationPlan,
                         source: str = "previous stage") -> np.ndarray:
    """A label map on the scan's own grid -> the grid of the preprocessed case whose properties
    are ``props`` (crop to its box, resample the labels as preprocessing resamples references)."""
    seg = np.asarray(seg)
    full = [int(s) for s in props["geometry"]["shape"]]
    if list(seg.shape) != full:
        raise ConfigurationError(f"{source}: its label map has shape {list(seg.shape)} but the scan has {full}; "
                                 f"predict the previous stage again")
    cropped = seg[tuple(slice(int(a), int(b)) for a, b in props["crop_box"])]
    target = [int(s) for s in props["shape_after_resampling"]]
    zaxis = separate_z_axis(config, props["geometry"]["spacing"], props["spacing_after_resampling"])
    return resample_labels(np.ascontiguousarray(cropped), target, LabelScheme.of(plans).label_values,
                           separate_z_axis=zaxis)


def one_hot(seg: np.ndarray, labels: list[int]) -> np.ndarray:
    """(*spatial) label map -> (len(labels), *spatial) float32, one channel per label value."""
    seg = np.asarray(seg)
    return np.stack([seg == v for v in labels]).astype(np.float32) if labels else \
        np.zeros((0, *seg.shape), np.float32)


def append_previous_stage(data: np.ndarray, seg: np.ndarray, plans: Plans) -> np.ndarray:
    """The cascade's input: a preprocessed case ``data`` (C, Z, Y, X) with the previous stage's label
    map ``seg`` on its grid appended as one-hot channels, one per :func:`previous_stage_labels` value."""
    return np.concatenate([data, one_hot(seg, previous_stage_labels(plans))]).astype(np.float32, copy=False)


def preprocess_previous_stage(sources: dict[str, Path], case_folder: Path, out_dir: Path, plans: Plans,
                              config: ConfigurationPlan) -> dict[str, str]:
    """Put each case's previous-stage label map (``sources``: case id -> a file in the scan's
    geometry) on the grid of its preprocessed case in ``case_folder``, as ``out_dir/CASE.npy``;
    the ``.npy`` path of each case. A case is redone only when its source or its preprocessing
    changed (``out_dir/CASE.json`` records both)."""
    paths, made = {}, 0
    for c, src in sources.items():
        props = storage.load_properties(case_folder, c)
        stamp = {"source": str(src), "source_mtime_ns": src.stat().st_mtime_ns,
                 "preprocess_key": props.get("preprocess_key"), "shape": props["shape_after_resampling"]}
        arr_path, meta_path = out_dir / f"{c}.npy", out_dir / f"{c}.json"
        paths[c] = str(arr_path)
        if arr_path.is_file() and meta_path.is_file() and read_json(meta_path) == stamp:
            continue
        meta_path.unlink(missing_ok=True)  # not done until rewritten
        seg, _ = read_label(src)
        storage.save_array(arr_path, to_preprocessed_grid(seg, props, plans, config, str(src)))
        write_json(meta_path, stamp)
        made += 1
    if made:
        log.info("%d %s prediction(s) put on the preprocessed grid in %s", made, config.previous_stage, out_dir)
    return paths
