"""Case discovery: which files belong to which case, in which split.

Layout (documentation/dataset_format.md)::

    raw/NAME/dataset.json
    raw/NAME/imagesTr/CASE_0000.ext   one file per channel (CASE_0001.ext ...); DICOM: a folder CASE_0000/
    raw/NAME/labelsTr/CASE.ext        segmentation masks
    raw/NAME/labelsTr.csv             classification labels: case,label[,extra columns]
    raw/NAME/imagesTs/ + labelsTs/ (or labelsTs.csv)   held-out test cases
    raw/NAME/imagesUn/                unlabeled scans (images only)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from selfconfig.dataset.io import split_ending
from selfconfig.dataset.schema import DatasetInfo
from selfconfig.errors import DatasetFormatError

SPLITS = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs"), "unlabeled": ("imagesUn", None)}

log = logging.getLogger(__name__)

_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass
class Case:
    """One case: its image files (one per file channel), and its label (file or class index)."""

    case_id: str
    split: str
    images: list[Path]
    label_file: Path | None = None
    label: int | None = None  # classification
    meta: dict = field(default_factory=dict)  # extra columns of the labels table

    @property
    def labeled(self) -> bool:
        return self.label_file is not None or self.label is not None


def _group_channels(folder: Path, file_ending: str) -> tuple[dict[str, dict[int, Path]], list[str]]:
    """Group ``CASE_XXXX<ending>`` files (or DICOM folders ``CASE_XXXX/``) by case."""
    groups: dict[str, dict[int, Path]] = {}
    stray: list[str] = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            stem, ending = p.name, ""
        else:
            stem, ending = split_ending(p.name)
            if file_ending and ending.lower() != file_ending.lower():
                stray.append(p.name)
                continue
        m = _CHANNEL_RE.match(stem)
        if not m:
            stray.append(p.name)
            continue
        groups.setdefault(m.group("case"), {})[int(m.group("channel"))] = p
    return groups, stray


def channel_files(folder: Path) -> dict[str, list[Path]]:
    """Case -> its ``CASE_XXXX`` channel files in channel order (files named otherwise are left out)."""
    groups, _ = _group_channels(Path(folder), "")
    return {case: [channels[c] for c in sorted(channels)] for case, channels in groups.items()}


def read_labels_table(path: Path, info: DatasetInfo) -> pd.DataFrame:
    """Read a classification labels table; labels may be class indices or class names."""
    try:
        df = pd.read_csv(path, dtype={"case": str})
    except Exception as e:  # pandas raises many types for malformed files
        raise DatasetFormatError(f"{path} cannot be read as CSV ({e}); it needs columns case,label")
    missing = [c for c in ("case", "label") if c not in df.columns]
    if missing:
        raise DatasetFormatError(f"{path} lacks column(s) {', '.join(missing)}; it needs columns case,label")
    names = info.labels

    def to_index(v):
        """A class name or an integer (``2`` or ``2.0``); anything else (``0.7``, NaN) is kept as it is and
        reported by discovery: truncating 0.7 to 0 would train on a label nobody wrote."""
        if isinstance(v, str) and not v.strip().lstrip("-").isdigit():
            return names.get(v.strip(), v)
        try:
            f = float(v)
        except (TypeError, ValueError):
            return v
        return int(f) if f == f and f.is_integer() else v

    df["label"] = df["label"].map(to_index)
    return df


def discover_cases(raw_dir: Path, info: DatasetInfo, split: str) -> tuple[list[Case], list[str]]:
    """Find the cases of one split. Returns (cases, problems); problems are one line each."""
    images_name, labels_name = SPLITS[split]
    images_dir = raw_dir / images_name
    problems: list[str] = []
    if not images_dir.is_dir():
        if split == "train":
            problems.append(f"{images_dir} is missing; put training images there as CASE_0000{info.file_ending}")
        return [], problems
    groups, stray = _group_channels(images_dir, info.file_ending)
    for name in stray:
        problems.append(
            f"{images_dir / name}: not named CASE_XXXX{info.file_ending} (XXXX = channel index, 4 digits); "
            f"rename it or remove it"
        )
    expected = set(range(info.num_file_channels))
    cases: list[Case] = []
    for case_id, channels in sorted(groups.items()):
        if set(channels) != expected:
            have = ", ".join(f"{c:04d}" for c in sorted(channels))
            problems.append(
                f"{images_dir / case_id}_*: has channel files [{have}] but dataset.json lists "
                f"{info.num_file_channels} channel(s) (0000..{info.num_file_channels - 1:04d}); add or remove files"
            )
            continue
        cases.append(Case(case_id, split, [channels[c] for c in sorted(channels)]))

    if split == "unlabeled":
        return cases, problems

    if info.task == "segmentation":
        labels_dir = raw_dir / labels_name
        for case in cases:
            candidates = [labels_dir / f"{case.case_id}{info.file_ending}"] if info.file_ending else []
            if not info.file_ending:  # DICOM images: labels as NIfTI
                candidates = [labels_dir / f"{case.case_id}{e}" for e in (".nii.gz", ".nii", ".nrrd", ".mha")]
            found = next((c for c in candidates if c.exists()), None)
            if found is None:
                where = candidates[0] if candidates else labels_dir / case.case_id
                if split == "train" or labels_dir.is_dir():
                    problems.append(f"{where}: label file missing for case {case.case_id}; add it or remove the case's images")
            case.label_file = found
    else:
        table_name = info.labels_file if split == "train" else info.test_labels_file
        table = raw_dir / table_name
        if not table.is_file():
            if split == "train" or cases:
                if split == "train":
                    problems.append(f"{table} is missing; classification datasets need a table with columns case,label")
            return cases, problems
        df = read_labels_table(table, info)
        rows, dup_problems = _rows_by_case(df, table)
        problems += dup_problems
        valid = set(info.labels.values())
        for case in cases:
            row = rows.get(case.case_id)
            if row is None:
                problems.append(f"{table}: no row for case {case.case_id}; add 'case,label' for it")
                continue
            lab = row["label"]
            if not isinstance(lab, int) or lab not in valid:
                problems.append(
                    f"{table}: case {case.case_id} has label {lab!r}, not one of dataset.json's labels "
                    f"{sorted(info.labels.items(), key=lambda kv: kv[1])}; fix the row"
                )
                continue
            case.label = lab
            case.meta = {k: v for k, v in row.items() if k not in ("case", "label")}
        have = {c.case_id for c in cases}
        for extra in sorted(set(rows) - have):
            problems.append(f"{table}: case {extra} has a label but no image in {images_dir}; add the image or drop the row")
    return cases, problems


def _rows_by_case(df: pd.DataFrame, table: Path) -> tuple[dict[str, dict], list[str]]:
    """One row per case id: a case listed twice with different labels is a problem (which one is
    right?); listed twice with the same label it is reported and used once."""
    rows: dict[str, dict] = {}
    problems: list[str] = []
    seen: dict[str, list] = {}
    for r in df.to_dict("records"):
        cid = str(r["case"])
        seen.setdefault(cid, []).append(r["label"])
        rows.setdefault(cid, r)
    for cid, labels in seen.items():
        if len(labels) < 2:
            continue
        if len({repr(v) for v in labels}) > 1:
            problems.append(f"{table}: case {cid} has {len(labels)} rows with different labels {labels}; "
                            f"keep one row per case")
        else:
            log.warning("%s: case %s is listed %d times with the same label %r; used once", table, cid,
                        len(labels), labels[0])
    return rows, problems


def discover_all(raw_dir: Path, info: DatasetInfo) -> tuple[dict[str, list[Case]], list[str]]:
    out: dict[str, list[Case]] = {}
    problems: list[str] = []
    for split in SPLITS:
        cases, p = discover_cases(raw_dir, info, split)
        out[split] = cases
        problems += p
    seen: dict[str, str] = {}
    for split, cases in out.items():
        for c in cases:
            if c.case_id in seen:
                problems.append(f"case id {c.case_id} appears in both {seen[c.case_id]} and {split}; case ids must be unique")
            seen[c.case_id] = split
    return out, problems
