"""Medical Segmentation Decathlon (MSD) datasets -> nnU-Net v2 raw datasets.

An MSD task folder (``Task04_Hippocampus``) holds ``dataset.json`` with ``modality``
(``{"0": "FLAIR", "1": "T1w", ...}``), labels as ``{"0": "background", "1": "edema"}``, a
``training`` list of ``{"image", "label"}`` paths and a ``test`` list; images are one NIfTI per
case, 4D when there are several modalities. :func:`convert_msd_dataset` writes what nnU-Net v2's
``nnUNetv2_convert_MSD_dataset`` writes: ``raw/DatasetNNN_Name`` (``NNN`` the task number, or
``overwrite_id``), each 4D image split into ``CASE_0000.nii.gz``, ``CASE_0001.nii.gz`` ... with the
first three axes' spacing, origin and direction, labels copied, test images split the same way,
and a dataset.json with ``channel_names``, ``labels`` (name -> value) and ``file_ending``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfconfig.errors import ConfigurationError, DatasetFormatError, ImageReadError
from selfconfig.paths import Roots

log = logging.getLogger(__name__)

_TASK_RE = re.compile(r"^Task(\d+)_(.+)$")
_ENDING = ".nii.gz"


@dataclass
class MsdConversion:
    source: Path
    target: Path
    dataset_name: str
    n_training: int
    n_test: int
    n_channels: int


def msd_target_name(source: Path, overwrite_id: int | None = None) -> str:
    """``TaskNN_Name`` -> ``DatasetNNN_Name`` (``NNN`` = ``overwrite_id`` when given), as nnU-Net v2."""
    m = _TASK_RE.match(Path(source).name)
    if not m:
        raise DatasetFormatError(
            f"{source}: an MSD task folder is named TaskNN_Name (e.g. Task04_Hippocampus); rename it "
            f"or pass the task folder itself")
    target_id = int(m.group(1)) if overwrite_id is None else int(overwrite_id)
    if not 0 < target_id < 1000:
        raise ConfigurationError(f"dataset id {target_id} must lie in 1..999 (use -overwrite_id to choose one)")
    return f"Dataset{target_id:03d}_{m.group(2)}"


def _read_msd_json(source: Path) -> dict:
    path = source / "dataset.json"
    if not path.is_file():
        raise DatasetFormatError(f"{path} is missing; an MSD task folder holds dataset.json, imagesTr and labelsTr")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{path} is not valid JSON: {e}")
    problems = []
    modality = data.get("modality")
    if not isinstance(modality, dict) or not modality:
        problems.append("'modality' must map channel indices to names, e.g. {\"0\": \"MRI\"}")
    elif sorted(str(k) for k in modality) != [str(i) for i in range(len(modality))]:
        problems.append(f"'modality' keys must be 0..{len(modality) - 1}, got {list(modality)}")
    labels = data.get("labels")
    if not isinstance(labels, dict) or not labels:
        problems.append("'labels' must map label values to names, e.g. {\"0\": \"background\", \"1\": \"tumour\"}")
    else:
        bad = [k for k in labels if not str(k).strip().isdigit()]
        if bad:
            problems.append(f"'labels' keys must be label values (MSD maps value -> name), got {bad}")
    training = data.get("training")
    if not isinstance(training, list) or not training or not all(
            isinstance(t, dict) and "image" in t and "label" in t for t in training):
        problems.append("'training' must list {\"image\": ..., \"label\": ...} entries")
    if not isinstance(data.get("test", []), list):
        problems.append("'test' must be a list of image paths")
    if problems:
        raise DatasetFormatError(f"{path} is not an MSD dataset.json: " + "; ".join(problems))
    return data


def _case_id(relpath: str, where: Path) -> str:
    name = Path(relpath).name
    if not name.endswith(_ENDING):
        raise DatasetFormatError(f"{where}: {relpath} is not a {_ENDING} file; MSD images and labels are NIfTI")
    return name[: -len(_ENDING)]


def _resolve(source: Path, relpath: str) -> Path:
    p = (source / relpath).resolve()
    if not p.is_relative_to(source.resolve()):
        raise DatasetFormatError(f"{source / 'dataset.json'}: {relpath} points outside the task folder")
    return p


def split_4d_nifti(path: Path, output_folder: Path, case_id: str, n_channels: int) -> None:
    """Write ``case_id_0000.nii.gz``, ``_0001`` ... from one 3D or 4D NIfTI (nnU-Net v2's split_4d_nifti):
    a 3D image is copied as channel 0, a 4D one cut along its fourth axis."""
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ImageReadError(f"{path} cannot be read as NIfTI ({str(e).strip().splitlines()[-1]})")
    dim = img.GetDimension()
    if dim == 3:
        if n_channels != 1:
            raise DatasetFormatError(f"{path} is 3D but dataset.json lists {n_channels} modalities")
        shutil.copyfile(path, output_folder / f"{case_id}_0000{_ENDING}")
        return
    if dim != 4:
        raise DatasetFormatError(f"{path} has {dim} dimensions; MSD images are 3D, or 4D with one volume per modality")
    arr = sitk.GetArrayFromImage(img)  # (channel, z, y, x)
    if arr.shape[0] != n_channels:
        raise DatasetFormatError(f"{path} holds {arr.shape[0]} volumes but dataset.json lists {n_channels} modalities")
    spacing = img.GetSpacing()[:3]
    origin = img.GetOrigin()[:3]
    direction = np.asarray(img.GetDirection()).reshape(4, 4)[:3, :3].ravel()
    for c in range(arr.shape[0]):
        out = sitk.GetImageFromArray(np.ascontiguousarray(arr[c]))
        out.SetSpacing(spacing)
        out.SetOrigin(origin)
        out.SetDirection(tuple(float(v) for v in direction))
        sitk.WriteImage(out, str(output_folder / f"{case_id}_{c:04d}{_ENDING}"))


def _split_job(path: str, folder: str, case_id: str, n_channels: int) -> None:
    split_4d_nifti(Path(path), Path(folder), case_id, n_channels)


def nnunet_dataset_json(msd: dict, n_training: int) -> dict:
    """The nnU-Net v2 dataset.json of a converted MSD task: ``channel_names`` from ``modality``,
    ``labels`` inverted to name -> value, ``training`` / ``test`` lists dropped."""
    out = {k: v for k, v in msd.items() if k not in ("modality", "training", "test", "labels")}
    out["channel_names"] = {str(k): str(v) for k, v in msd["modality"].items()}
    out["labels"] = {str(name): int(value) for value, name in sorted(msd["labels"].items(), key=lambda kv: int(kv[0]))}
    out["numTraining"] = n_training
    out["file_ending"] = _ENDING
    return out


def convert_msd_dataset(source: str | Path, roots: Roots | None = None, overwrite_id: int | None = None,
                        num_processes: int = 1, progress: bool = True) -> MsdConversion:
    """Convert the MSD task folder ``source`` into ``raw/DatasetNNN_Name`` (see the module docstring).

    Refuses a target id that any dataset under the three roots already uses (as nnU-Net does;
    pick another with ``overwrite_id``). Everything is written into a temporary folder that is
    renamed at the end, so a failed conversion leaves nothing behind.
    """
    from selfconfig.parallel import WorkerPool

    roots = roots or Roots.resolve()
    source = Path(source)
    if not source.is_dir():
        raise DatasetFormatError(f"{source} is not a folder; pass the MSD task folder (e.g. Task04_Hippocampus)")
    target_name = msd_target_name(source, overwrite_id)
    prefix = target_name.split("_", 1)[0] + "_"
    taken = sorted({p.name for base in (roots.raw, roots.preprocessed, roots.results) if base.is_dir()
                    for p in base.iterdir() if p.name.startswith(prefix)})
    if taken:
        raise ConfigurationError(
            f"dataset id {prefix[7:-1]} is already taken by {', '.join(taken)} (under {roots.raw}, "
            f"{roots.preprocessed} or {roots.results}); choose another with -overwrite_id")
    msd = _read_msd_json(source)
    n_channels = len(msd["modality"])
    jobs, labels, missing = [], [], []
    train_ids: list[str] = []
    for entry in msd["training"]:
        image, label = _resolve(source, entry["image"]), _resolve(source, entry["label"])
        cid = _case_id(entry["image"], source)
        for p in (image, label):
            if not p.is_file():
                missing.append(str(p))
        train_ids.append(cid)
        jobs.append((str(image), "imagesTr", cid))
        labels.append((label, cid))
    test_ids = []
    for entry in msd.get("test", []):
        image = _resolve(source, entry if isinstance(entry, str) else entry.get("image", ""))
        cid = _case_id(image.name, source)
        if not image.is_file():
            missing.append(str(image))
        test_ids.append(cid)
        jobs.append((str(image), "imagesTs", cid))
    if missing:
        raise DatasetFormatError(f"{source / 'dataset.json'} lists {len(missing)} file(s) that do not exist, "
                                 f"e.g. {missing[0]}")
    dup = sorted({c for c in train_ids if train_ids.count(c) > 1} | {c for c in test_ids if test_ids.count(c) > 1})
    if dup:
        raise DatasetFormatError(f"{source / 'dataset.json'} lists case(s) {', '.join(dup[:5])} more than once")

    target = roots.raw / target_name
    tmp = roots.raw / f".{target_name}.converting-{uuid.uuid4().hex[:8]}"
    try:
        for sub in ("imagesTr", "labelsTr") + (("imagesTs",) if test_ids else ()):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        with WorkerPool(num_processes) as pool:
            pool.map(_split_job, [(p, str(tmp / sub), cid, n_channels) for p, sub, cid in jobs],
                     desc="split 4D", progress=progress)
        for label, cid in labels:
            shutil.copyfile(label, tmp / "labelsTr" / f"{cid}{_ENDING}")
        ds = nnunet_dataset_json(msd, len(train_ids))
        (tmp / "dataset.json").write_text(json.dumps(ds, indent=2) + "\n")
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s -> %s: %d training, %d test case(s), %d channel(s)", source, target,
             len(train_ids), len(test_ids), n_channels)
    return MsdConversion(source, target, target_name, len(train_ids), len(test_ids), n_channels)
