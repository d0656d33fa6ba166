"""The cascade's extra input: a previous stage's segmentation on the grid of a preprocessed case.

A cascade configuration (``ConfigurationPlan.previous_stage``, nnU-Net's ``3d_cascade_fullres``)
gets the label map that the previous stage (``3d_lowres``) predicted as extra input channels. That
label map is always taken in the scan's own geometry, exactly as ``selfconfig_predict`` and the
final validation write it, and brought onto the preprocessed grid with the case's own crop box
and the label resampling of preprocessing. Training (from the previous stage's validation
predictions) and prediction (from the previous stage's model) therefore see the same input.
"""

from __future__ import annotations

import numpy as np

from selfconfig.dataset.labels import LabelScheme
from selfconfig.errors import ConfigurationError
from selfconfig.plans import ConfigurationPlan, Plans
from selfconfig.preprocessing.preprocessor import separate_z_axis
from selfconfig.preprocessing.resample import resample_labels


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
