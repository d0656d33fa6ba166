"""dataset.json: what a raw dataset says about itself.

selfconfig's own format (see documentation/dataset_format.md) and nnU-Net v2's dataset.json are
both accepted. The parsed form is :class:`DatasetInfo`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from selfconfig.errors import DatasetFormatError

TASKS = ("segmentation", "classification")

# channel name (case-insensitive) -> normalisation scheme
_NORMALIZATION_BY_CHANNEL = {
    "ct": "ct",
    "rgb": "rgb",
    "noNorm".lower(): "none",
    "none": "none",
    "zscore": "zscore",
    "mr": "zscore",
    "mri": "zscore",
    "t1": "zscore",
    "t2": "zscore",
    "flair": "zscore",
    "gray": "zscore",
    "grey": "zscore",
}


def normalization_for_channel(channel_name: str) -> str:
    """CT -> "ct" (clip to foreground percentiles, standardise); RGB -> "rgb" (to 0-1);
    noNorm -> "none"; anything else (MR, other) -> "zscore"."""
    return _NORMALIZATION_BY_CHANNEL.get(channel_name.strip().lower(), "zscore")


@dataclass
class DatasetInfo:
    """Parsed dataset.json.

    ``channel_names`` maps the file channel index (``"0"`` -> ``CASE_0000.ext``) to a name. A
    channel named ``RGB`` is one file that holds three colour channels, so
    ``num_input_channels`` counts it three times.
    ``labels`` maps a label name to its integer value (segmentation: voxel values; classification:
    class indices). ``labels_file`` is the classification labels table for imagesTr
    (default ``labelsTr.csv``); the held-out table is ``labelsTs.csv``.
    """

    name: str
    task: str
    dimensionality: int | None
    channel_names: dict[str, str]
    labels: dict[str, int]
    file_ending: str
    description: str = ""
    synthetic: bool = False
    labels_file: str = "labelsTr.csv"
    test_labels_file: str = "labelsTs.csv"
    nnunet_format: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def num_file_channels(self) -> int:
        return len(self.channel_names)

    @property
    def num_input_channels(self) -> int:
        return sum(3 if n.strip().lower() == "rgb" else 1 for n in self.channel_names.values())

    @property
    def is_color(self) -> bool:
        return any(n.strip().lower() == "rgb" for n in self.channel_names.values())

    @property
    def num_classes(self) -> int:
        return max(self.labels.values()) + 1

    def normalization_schemes(self) -> list[str]:
        """One scheme per file channel, in channel order."""
        return [normalization_for_channel(self.channel_names[k]) for k in self.channel_keys()]

    def channel_keys(self) -> list[str]:
        return sorted(self.channel_names, key=int)

    def to_dict(self) -> dict:
        return asdict(self)


def load_dataset_json(folder: Path) -> DatasetInfo:
    """Read and validate ``folder/dataset.json``; raise one clear error naming the file."""
    path = Path(folder) / "dataset.json"
    if not path.is_file():
        raise DatasetFormatError(
            f"{path} is missing; every raw dataset needs a dataset.json "
            f"(see documentation/dataset_format.md)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{path} is not valid JSON: {e}")
    return parse_dataset_json(data, path, default_name=Path(folder).name)


def parse_dataset_json(data: dict, path: Path | str = "dataset.json", default_name: str = "") -> DatasetInfo:
    problems: list[str] = []
    nnunet = "task" not in data and ("modality" in data or "channel_names" in data)
    task = data.get("task", "segmentation")
    if task not in TASKS:
        problems.append(f"'task' is {task!r}; use one of {', '.join(TASKS)}")
    channels = data.get("channel_names", data.get("modality"))
    if not isinstance(channels, dict) or not channels:
        problems.append("'channel_names' must map channel indices to names, e.g. {\"0\": \"CT\"}")
        channels = {}
    else:
        channels = {str(k): str(v) for k, v in channels.items()}
        keys = sorted(channels, key=lambda k: int(k) if k.isdigit() else -1)
        if [k for k in keys] != [str(i) for i in range(len(keys))]:
            problems.append(f"'channel_names' keys must be 0..{len(keys) - 1}, got {list(channels)}")
    labels = data.get("labels")
    if not isinstance(labels, dict) or not labels:
        problems.append("'labels' must map label names to integers, e.g. {\"background\": 0, \"lobe\": 1}")
        labels = {}
    else:
        clean = {}
        for name, value in labels.items():
            if isinstance(value, (list, tuple)):
                problems.append(f"label {name!r} is a region (list of values); region-based labels are not supported")
                continue
            try:
                clean[str(name)] = int(value)
            except (TypeError, ValueError):
                problems.append(f"label {name!r} has value {value!r}; label values must be integers")
        labels = clean
        values = sorted(labels.values())
        if labels and values != list(range(len(values))):
            problems.append(f"label values must be consecutive from 0, got {values}")
    file_ending = data.get("file_ending")
    if file_ending is None:
        problems.append("'file_ending' is missing (e.g. \".nii.gz\", \".png\", or \"\" for DICOM folders)")
        file_ending = ""
    dim = data.get("dimensionality")
    if dim is not None and dim not in (2, 3):
        problems.append(f"'dimensionality' is {dim!r}; use 2 or 3")
    if problems:
        raise DatasetFormatError(f"{path}: " + "; ".join(problems))
    known = {"name", "task", "dimensionality", "channel_names", "modality", "labels", "file_ending",
             "description", "synthetic", "labels_file", "test_labels_file"}
    return DatasetInfo(
        name=str(data.get("name") or default_name),
        task=task,
        dimensionality=dim,
        channel_names=channels,
        labels=labels,
        file_ending=str(file_ending),
        description=str(data.get("description", "")),
        synthetic=bool(data.get("synthetic", False)),
        labels_file=str(data.get("labels_file", "labelsTr.csv")),
        test_labels_file=str(data.get("test_labels_file", "labelsTs.csv")),
        nnunet_format=nnunet,
        extra={k: v for k, v in data.items() if k not in known},
    )
