"""Preprocessed cases know their raw source.

Each preprocessed case records a cheap fingerprint of the raw files it came from: per file its
size, modification time and a hash of its first 64 KiB (the header and the first voxels), plus the
classification label. A rerun of ``selfconfig_plan_and_preprocess`` compares it with the raw
dataset as it is now: a changed case (a corrected label file, a re-exported scan, a new label in
the table) is preprocessed again; a case deleted from raw is removed from the preprocessed folders
and from ``splits.json``; ``--verify`` reports all of it without writing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from selfconfig.dataset.cases import Case
from selfconfig.preprocessing import storage
from selfconfig.utils import read_json, write_json

log = logging.getLogger(__name__)

HEAD_BYTES = 64 * 1024


def _file_entry(p: Path) -> list:
    st = p.stat()
    with open(p, "rb") as f:
        head = hashlib.sha1(f.read(HEAD_BYTES)).hexdigest()[:16]
    return [p.name, int(st.st_size), int(st.st_mtime_ns), head]


def _entries(p: Path) -> list:
    if p.is_dir():  # a DICOM series folder: every file in it
        return [_file_entry(f) for f in sorted(p.rglob("*")) if f.is_file()]
    return [_file_entry(p)]


def source_key(case: Case) -> str:
    """A short hash of what the case's raw files and label are now (stat + a 64 KiB read per file)."""
    parts = {"images": [_entries(Path(p)) for p in case.images],
             "label_file": _entries(Path(case.label_file)) if case.label_file else None,
             "label": case.label}
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _data_dirs(pre_dir: Path) -> list[Path]:
    """Every preprocessed data folder (one per data identifier) under ``preprocessed/NAME``."""
    return sorted(d for d in Path(pre_dir).iterdir()
                  if d.is_dir() and any((d / s).is_dir() for s in storage.SPLIT_DIRS.values()))


@dataclass
class SourceReport:
    changed: list[str] = field(default_factory=list)  # "folder/split/case"
    deleted: list[str] = field(default_factory=list)
    deleted_ids: set[str] = field(default_factory=set)

    def lines(self) -> list[str]:
        out = []
        if self.changed:
            out.append(f"{len(self.changed)} preprocessed case(s) differ from their raw files now (e.g. "
                       f"{', '.join(self.changed[:3])}): they are preprocessed again by a rerun")
        if self.deleted:
            out.append(f"{len(self.deleted)} preprocessed case(s) no longer exist in the raw data (e.g. "
                       f"{', '.join(self.deleted[:3])}): a rerun removes them and drops them from splits.json")
        return out


def compare_with_raw(pre_dir: Path, cases: dict[str, list[Case]]) -> SourceReport:
    """What a rerun would redo (changed) and remove (deleted); reads only stat data and headers."""
    rep = SourceReport()
    pre_dir = Path(pre_dir)
    if not pre_dir.is_dir():
        return rep
    keys = {(split, c.case_id): source_key(c) for split, cs in cases.items() for c in cs}
    for d in _data_dirs(pre_dir):
        for split in storage.SPLIT_DIRS:
            folder = storage.split_dir(d, split)
            for cid in storage.list_cases(folder):
                name = f"{d.name}/{split}/{cid}"
                if (split, cid) not in keys:
                    rep.deleted.append(name)
                    rep.deleted_ids.add(cid)
                    continue
                try:
                    saved = read_json(folder / f"{cid}.json").get("source_key")
                except (OSError, ValueError):
                    saved = None
                if saved != keys[(split, cid)]:
                    rep.changed.append(name)
    return rep


def remove_deleted(pre_dir: Path, report: SourceReport) -> None:
    """Remove preprocessed cases whose raw case is gone (our own derived files only) and drop
    them from splits.json, keeping every other case in its fold."""
    pre_dir = Path(pre_dir)
    for name in report.deleted:
        folder_name, split, cid = name.split("/")
        storage.remove_case(storage.split_dir(pre_dir / folder_name, split), cid)
    if report.deleted:
        log.warning("%d preprocessed case(s) were deleted from the raw data and removed here: %s",
                    len(report.deleted), ", ".join(report.deleted[:5]))
    path = pre_dir / "splits.json"
    if report.deleted_ids and path.is_file():
        splits = read_json(path)
        gone = report.deleted_ids
        hit = sorted({c for s in splits for c in s["train"] + s["val"]} & gone)
        if hit:
            new = [{"train": [c for c in s["train"] if c not in gone], "val": [c for c in s["val"] if c not in gone]}
                   for s in splits]
            write_json(path, new)
            log.warning("dropped %d deleted case(s) from %s (%s); runs trained with them keep their own "
                        "cases.json and are refused on --continue", len(hit), path, ", ".join(hit[:5]))
