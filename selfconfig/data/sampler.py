"""Patch sampling from preprocessed cases (pure numpy; runs inside loader worker processes).

A batch is a pure function of (seed, batch index): the loader can be restarted at any
iteration and produce exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfconfig.preprocessing import storage


@dataclass
class CaseRef:
    folder: str
    case_id: str
    label: int | None = None  # classification
    # cascade: the previous stage's label map of this case on its preprocessed grid (an .npy file,
    # :mod:`selfconfig.training.cascade`); cropped with the case and batched as ``previous_stage``
    previous_stage: str | None = None


def crop_with_pad(arr: np.ndarray, start: list[int], size: list[int], pad_value: float = 0) -> np.ndarray:
    """Crop ``size`` voxels starting at ``start`` from the last ``len(size)`` axes of ``arr``,
    padding with ``pad_value`` where the window leaves the array. Reads only the window from a
    memory-mapped array."""
    lead = arr.ndim - len(size)
    src, dst = [], []
    for s, n, dim in zip(start, size, arr.shape[lead:]):
        a, b = max(s, 0), min(s + n, dim)
        src.append(slice(a, max(a, b)))
        dst.append(slice(a - s, a - s + max(0, b - a)))
    out = np.full(arr.shape[:lead] + tuple(size), pad_value, dtype=arr.dtype)
    out[(Ellipsis, *dst)] = arr[(Ellipsis, *src)]
    return out


class PatchSampler:
    """Samples training patches.

    ``patch_size`` has 3 entries for 3D configurations and 2 for 2D (a 2D patch from a 3D case
    comes from one random slice). ``oversample`` is the fraction of each batch forced to be
    centred on a foreground voxel (segmentation; nnU-Net uses 1/3).

    ``final_patch_size``: the patch the network sees when ``patch_size`` is the larger crop that
    spatial augmentation samples it from (:meth:`selfconfig.augment.BatchAugmenter.input_patch_size`).
    The larger crop may then reach past the case's borders by the margin between the two, so that
    the final patch covers the case as evenly as without the margin (as nnU-Net's loader).

    Cases with a ``previous_stage`` label map (cascade) give it cropped at the same place, as the
    batch's ``previous_stage`` (B, 1, *patch); every case of such a sampler must have one.
    """

    def __init__(self, cases: list[CaseRef], patch_size: list[int], batch_size: int, task: str,
                 oversample: float = 0.33, with_labels: bool = True, seed: int = 0, random_crop: bool = True,
                 final_patch_size: list[int] | None = None):
        if not cases:
            raise ValueError("no cases to sample from")
        self.cases = cases
        self.patch = [int(p) for p in patch_size]
        final = [int(p) for p in (final_patch_size or patch_size)]
        if len(final) != len(self.patch) or any(f > p for f, p in zip(final, self.patch)):
            raise ValueError(f"final patch {final} must fit in the sampled patch {self.patch}")
        if final != self.patch:
            # beyond the largest case a larger crop holds only padding: cap it there (the crop and
            # its copy between processes grow with its volume: a 3D crop for +-30 degrees and zoom
            # 0.7 is up to 20x the patch)
            largest = self._largest_case_shape()
            self.patch = [p if f >= p else max(f, min(p, m + (m - f) % 2))
                          for p, f, m in zip(self.patch, final, largest)]
        self.margin = [(p - f) // 2 for p, f in zip(self.patch, final)]
        self.final = final
        self.batch_size = int(batch_size)
        self.task = task
        self.oversample = float(oversample)
        self.with_labels = with_labels
        self.seed = int(seed)
        self.random_crop = random_crop
        self._fg_cache: dict[tuple[str, str], np.ndarray | None] = {}

    # ------------------------------------------------------------------ helpers
    def _largest_case_shape(self) -> list[int]:
        """Per axis, the largest extent of the cases (read from the array headers only)."""
        n = len(self.patch)
        shapes = [storage.load_data(Path(r.folder), r.case_id).shape[-n:] for r in self.cases]
        return [int(max(s[i] for s in shapes)) for i in range(n)]

    def _fg(self, ref: CaseRef) -> np.ndarray | None:
        key = (ref.folder, ref.case_id)
        if key not in self._fg_cache:
            self._fg_cache[key] = storage.load_fg_locations(Path(ref.folder), ref.case_id)
        return self._fg_cache[key]

    def _start(self, rng: np.random.Generator, shape: list[int], center: list[int] | None) -> list[int]:
        starts = []
        for i, (dim, p) in enumerate(zip(shape, self.patch)):
            m, f = self.margin[i], self.final[i]
            lo, hi = -m, dim - p + m  # the final patch stays on the case
            if center is not None:
                jitter = int(rng.integers(-(f // 4), f // 4 + 1))
                s = int(center[i]) - p // 2 + jitter
                s = min(max(s, min(lo, hi)), max(lo, hi))  # keep the window on the case
            elif not self.random_crop:
                s = (dim - p) // 2
            elif hi > lo:
                s = int(rng.integers(lo, hi + 1))
            else:
                s = -int(rng.integers(0, p - dim + 1))  # pad randomly around a small case
            starts.append(s)
        return starts

    # ------------------------------------------------------------------ sampling
    def sample(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(index)])
        n_fg = int(round(self.batch_size * self.oversample)) if self.with_labels and self.task == "segmentation" else 0
        datas, segs, labels, ids, prevs = [], [], [], [], []
        picks = rng.integers(0, len(self.cases), self.batch_size)
        for j, ci in enumerate(picks):
            ref = self.cases[int(ci)]
            data = storage.load_data(Path(ref.folder), ref.case_id)
            seg = storage.load_seg(Path(ref.folder), ref.case_id) if self.with_labels and self.task == "segmentation" else None
            prev = np.load(ref.previous_stage, mmap_mode="r") if ref.previous_stage else None
            force_fg = j >= self.batch_size - n_fg
            center = None
            if force_fg:
                fg = self._fg(ref)
                if fg is not None and len(fg):
                    classes = np.unique(fg[:, 0])
                    cls = classes[rng.integers(0, len(classes))]
                    rows = fg[fg[:, 0] == cls]
                    center = rows[rng.integers(0, len(rows)), 1:].tolist()
            spatial = list(data.shape[1:])
            if len(self.patch) == 2:  # 2D patch: one slice of a (C, Z, Y, X) case
                if center is not None:
                    z = int(center[0])
                    center = center[1:]
                else:
                    z = int(rng.integers(0, spatial[0]))
                start = self._start(rng, spatial[1:], center)
                d = crop_with_pad(data[:, z], start, self.patch)
                s = crop_with_pad(seg[z], start, self.patch) if seg is not None else None
                p = crop_with_pad(prev[z], start, self.patch) if prev is not None else None
            else:
                start = self._start(rng, spatial, center)
                d = crop_with_pad(data, start, self.patch)
                s = crop_with_pad(seg, start, self.patch) if seg is not None else None
                p = crop_with_pad(prev, start, self.patch) if prev is not None else None
            datas.append(d)
            if p is not None:
                prevs.append(p[None])
            if s is not None:
                segs.append(s[None])
            labels.append(-1 if ref.label is None else int(ref.label))
            ids.append(ref.case_id)
        batch = {"data": np.stack(datas).astype(np.float32, copy=False), "label": np.asarray(labels, dtype=np.int64),
                 "index": np.asarray(index, dtype=np.int64)}
        if segs:
            # labels keep their stored integer type (uint8 up to 255 classes): a quarter of the data
            # of an int64 map to copy between processes; the training step widens them on its device
            batch["seg"] = np.stack(segs)
        if prevs:
            if len(prevs) != len(datas):
                raise ValueError("some cases of a cascade sampler have no previous-stage label map")
            batch["previous_stage"] = np.stack(prevs)
        return batch


def iterate_cases(cases: list[CaseRef], patch_size: list[int], batch_size: int, task: str,
                  with_labels: bool = True):
    """Every case once, in order, centre-cropped/padded to ``patch_size`` (validation of classifiers)."""
    sampler = PatchSampler(cases, patch_size, 1, task, oversample=0.0, with_labels=with_labels, random_crop=False)
    for i in range(0, len(cases), batch_size):
        chunk = cases[i:i + batch_size]
        datas, labels = [], []
        for ref in chunk:
            data = storage.load_data(Path(ref.folder), ref.case_id)
            start = sampler._start(None, list(data.shape[1:]) if len(patch_size) == 3 else list(data.shape[2:]), None)
            d = crop_with_pad(data if len(patch_size) == 3 else data[:, data.shape[1] // 2], start, sampler.patch)
            datas.append(d)
            labels.append(-1 if ref.label is None else int(ref.label))
        yield {"data": np.stack(datas).astype(np.float32, copy=False), "label": np.asarray(labels, dtype=np.int64),
               "case_ids": [r.case_id for r in chunk]}
