"""On-disk format of a preprocessed case.

``preprocessed/NAME/<config>/<split>/`` holds per case:

* ``CASE.npy``      float32 (C, Z, Y, X): read memory-mapped, so a loader crops a patch without
  reading the whole volume;
* ``CASE_seg.npy``  integer (Z, Y, X) label map (labeled segmentation cases only);
* ``CASE_fg.npy``   int32 (N, 4) rows ``(class, z, y, x)``: sampled foreground locations per class;
* ``CASE.json``     properties: original geometry, crop box, shapes, spacing, label (classification).

Every file is written to a temporary name and renamed; ``CASE.json`` is written last, so a case
whose JSON exists is complete, and a half-written case is never taken for a finished one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from selfconfig.utils import atomic_path, read_json, write_json

SPLIT_DIRS = {"train": "train", "test": "test", "unlabeled": "unlabeled"}


def split_dir(config_dir: Path, split: str) -> Path:
    return Path(config_dir) / SPLIT_DIRS[split]


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    """np.save under a temporary name, then rename; a full disk is one line naming ``path``."""
    with atomic_path(path, int(arr.nbytes) + 128) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(arr))


def save_array(path: Path, arr: np.ndarray) -> None:
    """One array as ``.npy``, written to a temporary name and renamed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _atomic_save_npy(Path(path), arr)


def save_case(folder: Path, case_id: str, data: np.ndarray, seg: np.ndarray | None,
              fg_locations: np.ndarray | None, properties: dict) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{case_id}.json").unlink(missing_ok=True)  # not finished until rewritten
    _atomic_save_npy(folder / f"{case_id}.npy", data.astype(np.float32, copy=False))
    if seg is not None:
        _atomic_save_npy(folder / f"{case_id}_seg.npy", seg)
    if fg_locations is not None:
        _atomic_save_npy(folder / f"{case_id}_fg.npy", fg_locations.astype(np.int32, copy=False))
    write_json(folder / f"{case_id}.json", properties)


def is_done(folder: Path, case_id: str, key: str, source_key: str | None = None) -> bool:
    """The case is preprocessed with these plans (``key``) and, when given, from raw files that
    are still what they were (``source_key``, see :mod:`selfconfig.preprocessing.sources`)."""
    p = Path(folder) / f"{case_id}.json"
    if not p.is_file() or not (Path(folder) / f"{case_id}.npy").is_file():
        return False
    try:
        props = read_json(p)
    except (json.JSONDecodeError, OSError):
        return False
    return props.get("preprocess_key") == key and (source_key is None or props.get("source_key") == source_key)


def remove_case(folder: Path, case_id: str) -> None:
    """Remove one preprocessed case (its JSON first, so that a half-removed case is never taken as done)."""
    folder = Path(folder)
    for name in (f"{case_id}.json", f"{case_id}.npy", f"{case_id}_seg.npy", f"{case_id}_fg.npy"):
        (folder / name).unlink(missing_ok=True)


def list_cases(folder: Path) -> list[str]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.glob("*.json") if not p.name.startswith("."))


def load_properties(folder: Path, case_id: str) -> dict:
    return read_json(Path(folder) / f"{case_id}.json")


def load_data(folder: Path, case_id: str, mmap: bool = True) -> np.ndarray:
    return np.load(Path(folder) / f"{case_id}.npy", mmap_mode="r" if mmap else None)


def load_seg(folder: Path, case_id: str, mmap: bool = True) -> np.ndarray | None:
    p = Path(folder) / f"{case_id}_seg.npy"
    return np.load(p, mmap_mode="r" if mmap else None) if p.is_file() else None


def load_fg_locations(folder: Path, case_id: str) -> np.ndarray | None:
    p = Path(folder) / f"{case_id}_fg.npy"
    return np.load(p) if p.is_file() else None
