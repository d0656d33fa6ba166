"""Post-processing of predicted label maps: keep only the largest connected component of chosen
classes (nnU-Net's), decided per class by ``selfconfig_find_best_configuration`` and applied by
``selfconfig_predict --postprocessing FILE``.

The file is JSON: ``{"format": "selfconfig-postprocessing", "largest_component_classes": [1, 3]}``
(label values, or lists of values for regions; the other keys record how the decision was made).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from selfconfig.errors import ConfigurationError

FORMAT = "selfconfig-postprocessing"


def best_configuration_folder(results_dir: Path, plans_name: str, tag: str, fraction_name: str) -> Path:
    """``results/NAME/best_configuration[__plans][__tag]/<frac>/``, where
    ``selfconfig_find_best_configuration`` writes its decision and post-processing files."""
    from selfconfig.planning import DEFAULT_PLANS_NAME

    name = "best_configuration" + (f"__{plans_name}" if plans_name != DEFAULT_PLANS_NAME else "")
    return Path(results_dir) / (name + (f"__{tag}" if tag else "")) / fraction_name


def keep_largest_component(seg: np.ndarray, label: int | Sequence[int]) -> np.ndarray:
    """``seg`` with every voxel of ``label`` (or of a region, a list of values) outside its largest
    (face-connected) component set to background 0. A copy; ``seg`` is untouched."""
    out = np.array(seg, copy=True)
    mask = out == label if isinstance(label, (int, np.integer)) else np.isin(out, list(label))
    if not mask.any():
        return out
    components, n = ndimage.label(mask)
    if n <= 1:
        return out
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    out[mask & (components != int(sizes.argmax()))] = 0
    return out


def apply_postprocessing(seg: np.ndarray, postprocessing: dict | None) -> np.ndarray:
    """Apply a post-processing record (see the module docstring); ``None`` returns ``seg``."""
    if not postprocessing:
        return seg
    for label in postprocessing.get("largest_component_classes", []):
        seg = keep_largest_component(seg, label if isinstance(label, list) else int(label))
    return seg


def postprocessing_record(classes: list, **details) -> dict:
    """``classes``: label values, or regions (lists of values), in the order they are applied."""
    return {"format": FORMAT, "largest_component_classes": [c if isinstance(c, int) else [int(x) for x in c]
                                                            for c in classes], **details}


def _is_target(c) -> bool:
    def positive_int(x) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x > 0

    return positive_int(c) or (isinstance(c, list) and bool(c) and all(positive_int(x) for x in c))


def load_postprocessing(path: Path) -> dict:
    """Read and check a post-processing file; a clear error names the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"--postprocessing {path} does not exist; selfconfig_find_best_configuration "
                                 f"writes it into the results folder")
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"--postprocessing {path} is not JSON ({e})")
    classes = record.get("largest_component_classes") if isinstance(record, dict) else None
    if (not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(classes, list)
            or not all(_is_target(c) for c in classes)):
        raise ConfigurationError(f"--postprocessing {path} is not a selfconfig post-processing file (format "
                                 f"{FORMAT!r} with a list 'largest_component_classes' of foreground label values or "
                                 f"regions)")
    return record
