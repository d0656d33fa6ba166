"""What the values of a label map mean: plain classes, nnU-Net v2 regions, the ignore label.

dataset.json's ``labels`` maps a name to a voxel value. nnU-Net v2 adds two things, and
selfconfig reads them the same way:

* **Regions** (BraTS): a name maps to a *list* of values, e.g. ``"whole tumor": [1, 2, 3]``,
  ``"tumor core": [2, 3]``, ``"enhancing tumor": [3]``. The network then has one sigmoid output
  per region (regions may overlap or nest), and ``regions_class_order`` says which value each
  region writes into the predicted label map, in order, later regions overwriting earlier ones.
* **The ignore label**: the label named ``"ignore"`` (the highest value) marks voxels without a
  label. They are left out of the loss and of the Dice, and a prediction never contains it.

:class:`LabelScheme` holds these rules once; training, inference and evaluation ask it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

IGNORE_NAME = "ignore"

def _as_values(value: Any) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),)


@dataclass(frozen=True)
class LabelScheme:
    """The labels of a segmentation dataset (the parsed ``labels`` and ``regions_class_order``).

    ``labels`` keeps dataset.json's order; values are ints or tuples of ints (regions).
    """

    labels: tuple[tuple[str, int | tuple[int, ...]], ...]
    regions_class_order: tuple[int, ...] | None = None

    @classmethod
    def from_labels(cls, labels: Mapping[str, Any], regions_class_order: Sequence[int] | None = None) -> "LabelScheme":
        items = []
        for name, value in labels.items():
            if isinstance(value, (list, tuple)):
                items.append((str(name), tuple(int(v) for v in value)))
            else:
                items.append((str(name), int(value)))
        order = tuple(int(v) for v in regions_class_order) if regions_class_order is not None else None
        return cls(tuple(items), order)

    @classmethod
    def of(cls, obj) -> "LabelScheme":
        """The scheme of anything with ``labels`` and ``regions_class_order`` (plans, DatasetInfo)."""
        return cls.from_labels(obj.labels, getattr(obj, "regions_class_order", None))

    # ------------------------------------------------------------------ what the labels say
    @property
    def ignore_label(self) -> int | None:
        """The value of the label named ``ignore`` (None when there is none)."""
        for name, value in self.labels:
            if name == IGNORE_NAME:
                return int(value) if not isinstance(value, tuple) else int(value[0])
        return None

    @property
    def has_ignore(self) -> bool:
        return self.ignore_label is not None

    @property
    def has_regions(self) -> bool:
        """Region-based as nnU-Net decides it: some label (not ``ignore``) lists more than one value."""
        return any(isinstance(v, tuple) and len(v) > 1 for n, v in self.labels if n != IGNORE_NAME)

    @property
    def label_values(self) -> list[int]:
        """Every value a reference label map may hold (background, classes, the ignore label)."""
        vals = {0}
        for _, v in self.labels:
            vals.update(_as_values(v))
        return sorted(vals)

    @property
    def trained_labels(self) -> list[int]:
        """Values the network learns (plain scheme): every label but ``ignore``, background included."""
        return sorted({x for n, v in self.labels if n != IGNORE_NAME for x in _as_values(v)} | {0})

    @property
    def foreground_labels(self) -> list[int]:
        """Label values other than background and ``ignore`` (where foreground patches are sampled)."""
        return [v for v in self.label_values if v != 0 and v != self.ignore_label]

    @property
    def foreground_regions(self) -> list[tuple[int, ...]]:
        """The regions (region scheme), in dataset.json order: every label but background and ``ignore``."""
        return [_as_values(v) for _, v in self._foreground_items()]

    def _foreground_items(self) -> list[tuple[str, int | tuple[int, ...]]]:
        return [(n, v) for n, v in self.labels if n != IGNORE_NAME and _as_values(v) != (0,)]

    @property
    def num_outputs(self) -> int:
        """Output channels of the segmentation network: one per region, or one per trained label."""
        return len(self.foreground_regions) if self.has_regions else len(self.trained_labels)

    @property
    def output_names(self) -> list[str]:
        """A name per output channel (regions: the region names; plain: the label names by value)."""
        if self.has_regions:
            return [n for n, _ in self._foreground_items()]
        by_value = {int(v): n for n, v in self.labels if n != IGNORE_NAME and not isinstance(v, tuple)}
        by_value.update({v[0]: n for n, v in self.labels if n != IGNORE_NAME and isinstance(v, tuple)})
        return [by_value.get(v, str(v)) for v in self.trained_labels]

    def evaluation_targets(self) -> list[tuple[str, int | tuple[int, ...]]]:
        """What the Dice is computed for: ``(name, value)`` per foreground label, or
        ``(name, (values...))`` per region (a voxel belongs to a region when its value is listed)."""
        if self.has_regions:
            return [(n, _as_values(v)) for n, v in self._foreground_items()]
        return [(n, _as_values(v)[0]) for n, v in self._foreground_items()]

    # ------------------------------------------------------------------ checks
    def problems(self) -> list[str]:
        """What is wrong with these labels, in words (empty when they are valid)."""
        out: list[str] = []
        values = [x for n, v in self.labels if n != IGNORE_NAME for x in _as_values(v)]
        if any(isinstance(v, tuple) and not v for _, v in self.labels):
            out.append("a region label lists no values")
        if any(x < 0 for _, v in self.labels for x in _as_values(v)):
            out.append("label values must not be negative")
        ignore = [v for n, v in self.labels if n == IGNORE_NAME]
        if ignore:
            if isinstance(ignore[0], tuple):
                out.append("the 'ignore' label must be one integer, not a list")
            elif values and int(ignore[0]) <= max(values):
                out.append(f"the 'ignore' label ({ignore[0]}) must be the highest label value "
                           f"(above {max(values)}), as in nnU-Net v2")
        if 0 not in values:
            out.append("there must be a background label with value 0")
        if self.has_regions:
            regions = self.foreground_regions
            if self.regions_class_order is None:
                out.append("region-based labels (lists of values) need 'regions_class_order': the value each "
                           f"region writes into the predicted label map, one per region ({len(regions)})")
            elif len(self.regions_class_order) != len(regions):
                out.append(f"'regions_class_order' has {len(self.regions_class_order)} entries but there are "
                           f"{len(regions)} regions ({', '.join(self.output_names)})")
        else:
            if self.regions_class_order is not None:
                out.append("'regions_class_order' is given but no label is a region (a list of values)")
            plain = sorted(values)
            if plain and plain != list(range(len(plain))):
                out.append(f"label values must be consecutive from 0, got {plain}")
        return out

    # ------------------------------------------------------------------ conversions (numpy)
    def region_masks(self, seg: np.ndarray) -> np.ndarray:
        """(R, *spatial) bool: voxel in region r (a value of ``seg`` is listed in the region)."""
        seg = np.asarray(seg)
        return np.stack([np.isin(seg, r) for r in self.foreground_regions])

    def regions_to_label_map(self, probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Sigmoid probabilities (R, *spatial) -> label map: region i above ``threshold`` writes
        ``regions_class_order[i]``, in that order (so nested regions end with the innermost)."""
        if self.regions_class_order is None:
            raise ValueError("regions_class_order is needed to turn region outputs into a label map")
        seg = np.zeros(probabilities.shape[1:], dtype=label_dtype(max(self.label_values)))
        for i, value in enumerate(self.regions_class_order):
            seg[probabilities[i] > threshold] = value
        return seg

    def probabilities_to_label_map(self, probabilities: np.ndarray) -> np.ndarray:
        """Network probabilities (K, *spatial) -> label map (never the ignore value: the network
        has no output for it)."""
        if self.has_regions:
            return self.regions_to_label_map(probabilities)
        values = np.asarray(self.trained_labels)
        return values[np.argmax(probabilities, 0)].astype(label_dtype(int(values.max())))


def label_dtype(max_value: int):
    return np.uint8 if max_value < 256 else np.int16
