"""Resampling of images (order 3) and label maps (one-hot, linear) to a target spacing.

For anisotropic data the low-resolution axis is resampled separately: in-plane with order 3,
then along z with nearest neighbour, so that thick slices are not blurred into each other (as
nnU-Net does).
"""

from __future__ import annotations

import numpy as np
from skimage.transform import resize


def new_shape_for(shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]) -> list[int]:
    return [max(1, int(round(s * sp / t))) for s, sp, t in zip(shape, spacing, target)]


def _resize(x: np.ndarray, shape, order: int) -> np.ndarray:
    if tuple(x.shape) == tuple(shape):
        return x
    return resize(x, shape, order=order, mode="edge", anti_aliasing=False, preserve_range=True)


def resample_image(image: np.ndarray, new_shape: list[int], order: int = 3, separate_z_axis: int | None = None,
                   order_z: int = 0) -> np.ndarray:
    """Resample (C, Z, Y, X) to (C, *new_shape). ``separate_z_axis``: the axis (0..2) resampled alone."""
    new_shape = list(new_shape)
    if list(image.shape[1:]) == new_shape:
        return image.astype(np.float32, copy=False)
    out = np.empty((image.shape[0], *new_shape), dtype=np.float32)
    for c in range(image.shape[0]):
        x = image[c].astype(np.float32, copy=False)
        if separate_z_axis is None:
            out[c] = _resize(x, new_shape, order)
        else:
            ax = separate_z_axis
            moved = np.moveaxis(x, ax, 0)
            inplane = [s for i, s in enumerate(new_shape) if i != ax]
            slices = np.stack([_resize(moved[k], inplane, order) for k in range(moved.shape[0])])
            if slices.shape[0] != new_shape[ax]:
                slices = _resize(slices, [new_shape[ax], *inplane], order_z)
            out[c] = np.moveaxis(slices, 0, ax)
    return out


def resample_labels(seg: np.ndarray, new_shape: list[int], labels: list[int] | None = None,
                    separate_z_axis: int | None = None) -> np.ndarray:
    """Resample a label map (Z, Y, X) by interpolating each label's one-hot mask linearly."""
    new_shape = list(new_shape)
    if list(seg.shape) == new_shape:
        return seg
    labels = [int(v) for v in (labels if labels is not None else np.unique(seg))]
    out = np.zeros(new_shape, dtype=seg.dtype)
    for lab in labels:
        if lab == 0:
            continue
        mask = (seg == lab).astype(np.float32)
        if separate_z_axis is None:
            r = _resize(mask, new_shape, 1)
        else:
            ax = separate_z_axis
            moved = np.moveaxis(mask, ax, 0)
            inplane = [s for i, s in enumerate(new_shape) if i != ax]
            r = np.stack([_resize(moved[k], inplane, 1) for k in range(moved.shape[0])])
            if r.shape[0] != new_shape[ax]:
                r = _resize(r, [new_shape[ax], *inplane], 0)
            r = np.moveaxis(r, 0, ax)
        out[r >= 0.5] = lab
    return out
