"""dataset.json: what a raw dataset says about itself.

selfconfig's own format (see documentation/dataset_format.md) and nnU-Net v2's dataset.json are
both accepted. The parsed form is :class:`DatasetInfo`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from selfconfig.dataset.labels import IGNORE_NAME, LabelScheme
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
    class indices); in segmentation a value may be a list of values (an nnU-Net v2 region, with
    ``regions_class_order``) and the label ``ignore`` marks unlabelled voxels (see
    :mod:`selfconfig.dataset.labels`). ``labels_file`` is the classification labels table for imagesTr
    (default ``labelsTr.csv``); the held-out table is ``labelsTs.csv``.
    """

    name: str
    task: str
    dimensionality: int | None
    channel_names: dict[str, str]
    labels: dict[str, int | list[int]]
    file_ending: str
    description: str = ""
    synthetic: bool = False
    labels_file: str = "labelsTr.csv"
    test_labels_file: str = "labelsTs.csv"
    nnunet_format: bool = False
    extra: dict = field(default_factory=dict)
    regions_class_order: list[int] | None = None

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
    def label_scheme(self) -> LabelScheme:
        return LabelScheme.from_labels(self.labels, self.regions_class_order)

    @property
    def num_classes(self) -> int:
        """Outputs of the network: classes (classification), trained labels (segmentation, the
        ignore label left out) or regions (region-based segmentation)."""
        if self.task != "segmentation":
            return max(self.labels.values()) + 1
        return self.label_scheme.num_outputs

    @property
    def label_values(self) -> list[int]:
        """Every value a label map (or labels table) may hold, the ignore label included."""
        if self.task != "segmentation":
            return sorted(self.labels.values())
        return self.label_scheme.label_values

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
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DatasetFormatError(f"{path} is not UTF-8 text (byte {e.start}); save it as UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{path} is not valid JSON: {e}") from None
    except OSError as e:
        raise DatasetFormatError(f"{path} cannot be read ({e.strerror or e})") from None
    return parse_dataset_json(data, path, default_name=Path(folder).name)


def parse_dataset_json(data: dict, path: Path | str = "dataset.json", default_name: str = "") -> DatasetInfo:
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path} holds a JSON {type(data).__name__}, not an object; it must be "
                                 f"{{\"channel_names\": ..., \"labels\": ..., \"file_ending\": ...}} "
                                 f"(see documentation/dataset_format.md)")
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
    regions_class_order = data.get("regions_class_order")
    if not isinstance(labels, dict) or not labels:
        problems.append("'labels' must map label names to integers, e.g. {\"background\": 0, \"lobe\": 1}")
        labels = {}
    else:
        labels, label_problems = _parse_labels(labels, regions_class_order, task)
        problems.extend(label_problems)
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
             "description", "synthetic", "labels_file", "test_labels_file", "regions_class_order"}
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
        regions_class_order=[int(v) for v in regions_class_order] if regions_class_order is not None else None,
    )


def _parse_labels(labels: dict, regions_class_order, task: str) -> tuple[dict, list[str]]:
    """Labels as ints (or lists of ints for regions) and the problems found, in words."""
    problems: list[str] = []
    clean: dict[str, int | list[int]] = {}
    for name, value in labels.items():
        name = str(name)
        if isinstance(value, (list, tuple)):
            if task != "segmentation":
                problems.append(f"label {name!r} is a region (list of values); regions exist only in segmentation")
                continue
            try:
                clean[name] = [_as_int(v) for v in value]
            except (TypeError, ValueError):
                problems.append(f"label {name!r} has value {value!r}; a region lists integer label values")
            continue
        try:
            clean[name] = _as_int(value)
        except (TypeError, ValueError):
            problems.append(f"label {name!r} has value {value!r}; label values must be integers")
    if problems:
        return clean, problems
    if regions_class_order is not None and (
            not isinstance(regions_class_order, list) or not all(isinstance(v, int) for v in regions_class_order)):
        return clean, [f"'regions_class_order' must be a list of integer label values, got {regions_class_order!r}"]
    if task != "segmentation":
        if IGNORE_NAME in clean:
            problems.append("an 'ignore' label exists only in segmentation")
        values = sorted(clean.values())
        if values != list(range(len(values))):
            problems.append(f"label values must be consecutive from 0, got {values}")
        return clean, problems
    return clean, LabelScheme.from_labels(clean, regions_class_order).problems()


def _as_int(value) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)
