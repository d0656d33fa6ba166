"""Helpers for tests (selfconfig's and its users'): small synthetic files in real formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def rotation_matrix(ax: float, ay: float, az: float) -> np.ndarray:
    """The 3x3 rotation by ``ax``, ``ay``, ``az`` radians about x, then y, then z: an oblique
    direction for test scans."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def write_dicom_slice(path: Path, pixels: np.ndarray, position, orientation, series_uid: str, *, instance: int,
                      pixel_spacing=(0.8, 0.6), slope: float = 1.0, intercept: float = 0.0,
                      slice_thickness: float | None = None, spacing_between_slices: float | None = None,
                      patient_id: str = "test") -> None:
    """One CT slice (int16 pixels) with the given ImagePositionPatient / ImageOrientationPatient.
    ``slice_thickness`` and ``spacing_between_slices`` may be set to lie on purpose."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.Modality = "CT"
    ds.PatientID = patient_id
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(s) for s in pixel_spacing]
    if slice_thickness is not None:
        ds.SliceThickness = slice_thickness
    if spacing_between_slices is not None:
        ds.SpacingBetweenSlices = spacing_between_slices
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = np.asarray(pixels).astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _tumour_case(rng, shape):
    """Two MR-like channels and a BraTS-like label map of nested structures: edema (1) around a
    non-enhancing core (2) around an enhancing centre (3)."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), 0).astype(np.float32)
    center = np.array([rng.uniform(0.4, 0.6) * s for s in shape])
    scale = np.asarray(shape, np.float32) / max(shape)
    d = np.sqrt((((grid - center.reshape(-1, *[1] * len(shape))) / scale.reshape(-1, *[1] * len(shape))) ** 2).sum(0))
    r = max(shape) * rng.uniform(0.3, 0.36)
    seg = np.zeros(shape, np.uint8)
    seg[d < r] = 1
    seg[d < 0.7 * r] = 2
    seg[d < 0.4 * r] = 3
    t1 = rng.normal(0, 0.2, shape) + 1.0 + np.where(seg == 3, 2.0, 0.0) + np.where(seg == 2, -0.5, 0.0)
    flair = rng.normal(0, 0.2, shape) + 1.0 + np.where(seg >= 1, 1.5, 0.0)
    return np.stack([t1, flair]).astype(np.float32) * 100, seg


def _write_tumour_cases(raw: Path, name: str, n_train: int, n_test: int, shape, seed: int, case) -> Path:
    """Write ``n_train + n_test`` tumour cases of ``shape`` into a new raw dataset folder; ``case(image,
    seg, split)`` turns each generated case into the channels and the label map to write."""
    from selfconfig.dataset.geometry import Geometry
    from selfconfig.dataset.io import write_image, write_segmentation

    rng = np.random.default_rng(seed)
    out = Path(raw) / name
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    geom = Geometry(spacing=(1.0, 1.0, 1.0), shape=tuple(shape), dim=3, file_ending=".nii.gz")
    for i in range(n_train + n_test):
        split = "Tr" if i < n_train else "Ts"
        cid = f"{name.lower()}_{i:03d}"
        image, seg = case(*_tumour_case(rng, tuple(shape)), split)
        for c in range(image.shape[0]):
            write_image(image[c:c + 1], geom, out / f"images{split}" / f"{cid}_{c:04d}.nii.gz")
        write_segmentation(seg, geom, out / f"labels{split}" / f"{cid}.nii.gz")
    return out


def write_region_dataset(raw: Path, name: str = "TINYREGIONS", *, n_train: int = 5, n_test: int = 1,
                         shape=(16, 24, 24), seed: int = 0, with_ignore: bool = False) -> Path:
    """A tiny BraTS-like raw dataset in nnU-Net v2 form: two channels (T1, FLAIR), labels 1-3
    nested, and region labels ``whole tumor`` [1, 2, 3] > ``tumor core`` [2, 3] > ``enhancing
    tumor`` [3] with ``regions_class_order`` [1, 2, 3]. ``with_ignore``: a slab of each training
    label is marked ``ignore`` (value 4)."""
    import json

    def case(image, seg, split):
        if with_ignore and split == "Tr":
            seg[:, :, : shape[2] // 4] = 4
        return image, seg

    out = _write_tumour_cases(raw, name, n_train, n_test, shape, seed, case)
    labels = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
    if with_ignore:
        labels["ignore"] = 4
    ds = {"channel_names": {"0": "T1", "1": "FLAIR"}, "labels": labels, "regions_class_order": [1, 2, 3],
          "numTraining": n_train, "file_ending": ".nii.gz", "name": name}
    (out / "dataset.json").write_text(json.dumps(ds, indent=1))
    return out


def write_ignore_dataset(raw: Path, name: str = "TINYIGNORE", *, n_train: int = 5, n_test: int = 1,
                         shape=(16, 24, 24), seed: int = 0) -> Path:
    """A tiny nnU-Net v2 raw dataset with an ``ignore`` label: labels background 0, blob 1, rim 2,
    and ``ignore`` 3 marking a band of each label map (as scribble or partial annotations do)."""
    import json

    def case(image, seg, split):
        seg = np.where(seg >= 2, 2, seg).astype(np.uint8)
        seg[:, : shape[1] // 5] = 3  # unlabelled band
        return image[1:2], seg

    out = _write_tumour_cases(raw, name, n_train, n_test, shape, seed, case)
    ds = {"channel_names": {"0": "MR"}, "labels": {"background": 0, "blob": 1, "rim": 2, "ignore": 3},
          "numTraining": n_train, "file_ending": ".nii.gz", "name": name}
    (out / "dataset.json").write_text(json.dumps(ds, indent=1))
    return out


def write_msd_task(parent: Path, name: str = "Task07_Tiny", *, n_train: int = 4, n_test: int = 1,
                   shape=(12, 20, 24), spacing=(0.8, 0.9, 2.5), seed: int = 0) -> Path:
    """A tiny Medical Segmentation Decathlon task folder: 4D NIfTI images holding two modalities
    (MSD's ``modality`` T1 and FLAIR), label maps 0-2, labels as value -> name, and the
    ``training`` / ``test`` lists of MSD's dataset.json. ``spacing`` is (x, y, z) as NIfTI stores it;
    the direction is not the identity, so geometry errors show."""
    import json

    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    task = Path(parent) / name
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub).mkdir(parents=True, exist_ok=True)
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # rotated 90 degrees in plane
    origin = (-10.0, 5.0, 2.0)
    prefix = name.split("_", 1)[1].lower()
    training, test = [], []
    for i in range(n_train + n_test):
        cid = f"{prefix}_{i:03d}"
        image, seg = _tumour_case(rng, tuple(shape))
        seg = np.minimum(seg, 2).astype(np.uint8)
        vols = []
        for c in range(image.shape[0]):
            v = sitk.GetImageFromArray(image[c].astype(np.float32))
            v.SetSpacing(spacing)
            v.SetOrigin(origin)
            v.SetDirection(direction)
            vols.append(v)
        img4 = sitk.JoinSeries(vols)  # 4D: (x, y, z, channel)
        split = "Tr" if i < n_train else "Ts"
        sitk.WriteImage(img4, str(task / f"images{split}" / f"{cid}.nii.gz"))
        if split == "Tr":
            lab = sitk.GetImageFromArray(seg)
            lab.SetSpacing(spacing)
            lab.SetOrigin(origin)
            lab.SetDirection(direction)
            sitk.WriteImage(lab, str(task / "labelsTr" / f"{cid}.nii.gz"))
            training.append({"image": f"./imagesTr/{cid}.nii.gz", "label": f"./labelsTr/{cid}.nii.gz"})
        else:
            test.append(f"./imagesTs/{cid}.nii.gz")
    # macOS leaves "._" files in MSD archives; they are not cases
    (task / "imagesTr" / f"._{prefix}_000.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    meta = {"name": "TINY", "description": "tiny generated MSD-style task", "tensorImageSize": "4D",
            "modality": {"0": "T1", "1": "FLAIR"}, "labels": {"0": "background", "1": "oedema", "2": "core"},
            "numTraining": n_train, "numTest": n_test, "training": training, "test": test}
    (task / "dataset.json").write_text(json.dumps(meta, indent=1))
    return task


def planner_inputs(shape=(40, 160, 160), spacing=(2.0, 1.0, 1.0), n: int = 10):
    """A 3-class CT segmentation dataset's parsed dataset.json and a fingerprint of ``n`` cases of
    ``shape`` at ``spacing``: what a planner needs, without any files."""
    from selfconfig.dataset.schema import parse_dataset_json

    info = parse_dataset_json({"task": "segmentation", "channel_names": {"0": "CT"},
                               "labels": {"bg": 0, "a": 1, "b": 2}, "file_ending": ".nii.gz"})
    fp = {"dim": 3, "spacings": [list(spacing)] * n, "shapes_after_crop": [list(shape)] * n,
          "median_spacing": list(spacing), "median_shape_after_crop": list(shape), "num_training_cases": n,
          "foreground_intensity_properties_per_channel": {"0": {"mean": 0.0, "std": 1.0, "percentile_00_5": -1.0,
                                                                "percentile_99_5": 1.0}}}
    return info, fp


#: the labels of :func:`write_scored_cases`
SCORED_LABELS = {"background": 0, "liver": 1, "tumor": 2}


def write_scored_cases(folder: Path) -> tuple[Path, Path, dict[str, list[Path]]]:
    """Three 32^3 cases with their scans (``imagesTs``), references (``labelsTs``) and predictions
    (``pred``): liver predicted with Dice 1 ("good"), 2/3 ("fair": half missed) and 0 ("bad":
    nothing predicted). Returns (predictions, references, case -> scan files)."""
    import SimpleITK as sitk

    ref_dir, pred_dir, img_dir = folder / "labelsTs", folder / "pred", folder / "imagesTs"
    rng = np.random.default_rng(1)
    images = {}
    for case in ("good", "fair", "bad"):
        ref = np.zeros((32, 32, 32), np.uint8)
        ref[10:20, 8:24, 12:22] = 1
        ref[14:16, 12:14, 14:16] = 2
        pred = ref.copy()
        if case == "fair":
            pred[15:20] = 0
        if case == "bad":
            pred[:] = 0
        scan = (ref * 100 + rng.normal(0, 10, ref.shape)).astype(np.float32)
        for arr, path in ((ref, ref_dir / f"{case}.nii.gz"), (pred, pred_dir / f"{case}.nii.gz"),
                          (scan, img_dir / f"{case}_0000.nii.gz")):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing((1.0, 1.0, 2.0))
            path.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(img, str(path))
        images[case] = [img_dir / f"{case}_0000.nii.gz"]
    return pred_dir, ref_dir, images
