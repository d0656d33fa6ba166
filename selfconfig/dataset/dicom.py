"""Read one DICOM series folder into a (C, Z, Y, X) float32 array and its :class:`Geometry`.

Slice order and z spacing come from ImagePositionPatient projected on the slice normal (the cross
product of the two ImageOrientationPatient cosines). SpacingBetweenSlices and SliceThickness are
never used for multi-slice series: in real exports they are often missing or wrong.

The geometry matches what SimpleITK's ``ImageSeriesReader`` gives for the same series: origin is
the position of the first slice in ascending normal order, the direction matrix has the row
cosine, the column cosine and the normal as its columns, spacing is ``(dz, row spacing, column
spacing)`` in array axis order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfconfig.dataset.geometry import Geometry
from selfconfig.errors import ImageReadError

logger = logging.getLogger(__name__)

# SOP class of a DICOMDIR (Media Storage Directory Storage): an index, not an image
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# relative deviation of slice gaps from their median above which the series is called non-uniform
_UNIFORMITY_TOLERANCE = 0.10
# how many files is_dicom_folder looks at before giving up
_PROBE_FILES = 16


def has_dicom_preamble(path: Path) -> bool:
    """True when the file carries the ``DICM`` magic at byte 128 (Part 10 files)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _candidate_files(folder: Path) -> list[Path]:
    """Regular, non-hidden files of ``folder`` (any names, any endings), sorted for stable logs."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _looks_like_dicom_without_preamble(path: Path) -> bool:
    """Old files without the Part 10 header: let pydicom parse them and look for image tags."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM"
        return False
    return "SOPClassUID" in ds and ("Rows" in ds or "SeriesInstanceUID" in ds)


def _looks_like_cut_dicom(path: Path) -> bool:
    """A ``.dcm`` file, or one that starts like a Part 10 preamble (zeros), too short to carry
    the ``DICM`` magic: a DICOM file cut short, not some other file beside the series."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return False
    return path.suffix.lower() == ".dcm" or (size < 132 and len(head) > 0 and not head.strip(b"\0"))


def is_dicom_folder(path: str | Path) -> bool:
    """True when ``path`` is a directory that holds DICOM files (names and endings do not matter)."""
    path = Path(path)
    if not path.is_dir():
        return False
    files = [p for p in _candidate_files(path) if p.name.upper() != "DICOMDIR"]
    probe = files[:_PROBE_FILES]
    if any(has_dicom_preamble(p) or p.suffix.lower() == ".dcm" for p in probe):
        return True
    return any(_looks_like_dicom_without_preamble(p) for p in probe[:4])


@dataclass
class _Slice:
    path: Path
    ds: object  # pydicom Dataset
    position: np.ndarray | None  # ImagePositionPatient (x, y, z) or None
    orientation: np.ndarray | None  # ImageOrientationPatient (6,) or None


def _sop_class_name(uid: str) -> str:
    from pydicom.uid import UID

    try:
        return str(UID(uid).name) if uid else ""
    except Exception:  # noqa: BLE001
        return uid


def _read_headers(folder: Path) -> list[_Slice]:
    """Parse every DICOM image file in ``folder``; skip DICOMDIR, non-DICOM and non-image files."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    slices: list[_Slice] = []
    for p in _candidate_files(folder):
        if p.name.upper() == "DICOMDIR":
            continue
        preamble = has_dicom_preamble(p)
        if not preamble and _looks_like_cut_dicom(p):
            raise ImageReadError(f"DICOM file {p} is truncated or damaged (it has no DICM header, "
                                 f"{p.stat().st_size} bytes); copy or export it again, or remove it")
        try:
            ds = pydicom.dcmread(p, force=not preamble)
        except InvalidDicomError as e:
            if preamble:  # it says it is DICOM (the DICM magic) and cannot be parsed: cut short or damaged
                raise ImageReadError(f"Cannot read DICOM file {p}: {str(e).splitlines()[0] if str(e) else ''}; it "
                                     "is truncated or damaged. Copy or export it again, or remove it.") from None
            logger.debug("Skipping %s: not a DICOM file", p)
            continue
        except Exception as e:  # noqa: BLE001 - pydicom raises many kinds on broken files
            if preamble:
                raise ImageReadError(
                    f"Cannot read DICOM file {p}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
                    "Remove or replace the broken file."
                ) from None
            logger.debug("Skipping %s: not a DICOM file (%s)", p, e)
            continue
        sop_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")
                        or ds.get("SOPClassUID", ""))
        if sop_class == _DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
            logger.debug("Skipping %s: DICOMDIR index", p)
            continue
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            known = bool(sop_class) and _sop_class_name(sop_class) != sop_class
            if "Image Storage" in _sop_class_name(sop_class) or (preamble and not known):  # a torn file
                raise ImageReadError(
                    f"DICOM file {p} is an image ({_sop_class_name(sop_class) or 'no SOP class'}) without pixel "
                    "data (PixelData); it is probably truncated. Copy or export the file again, or remove it."
                )
            logger.debug("Skipping %s: DICOM file without pixel data (%s)", p, _sop_class_name(sop_class))
            continue
        slices.append(_slice_of(p, ds))
    return slices


def _slice_of(path: Path, ds) -> _Slice:
    """A parsed file with its position and orientation; a malformed one is refused, naming the tag."""
    ds.filename = getattr(ds, "filename", None) or str(path)
    return _Slice(path=path, ds=ds, position=_numbers(ds, "ImagePositionPatient", 3),
                  orientation=_numbers(ds, "ImageOrientationPatient", 6))


def _single_series(folder: Path, slices: list[_Slice]) -> list[_Slice]:
    """Refuse folders that mix series: each series needs its own geometry."""
    by_series: dict[str, list[_Slice]] = {}
    for s in slices:
        by_series.setdefault(str(s.ds.get("SeriesInstanceUID", "<no SeriesInstanceUID>")), []).append(s)
    if len(by_series) > 1:
        listing = "; ".join(
            f"{uid} ({len(v)} file(s), e.g. {v[0].path.name}"
            + (f", '{v[0].ds.get('SeriesDescription')}'" if v[0].ds.get("SeriesDescription") else "") + ")"
            for uid, v in sorted(by_series.items())
        )
        raise ImageReadError(
            f"DICOM folder {folder} holds {len(by_series)} series: {listing}. "
            "Give one series per folder (move each series into its own folder)."
        )
    return slices


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _field_error(path, field: str, problem: str) -> ImageReadError:
    return ImageReadError(f"Cannot read DICOM file {path}: {field} {problem}; fix the file or export the series "
                          f"again (nothing was read)")


def _numbers(ds, tag: str, count: int) -> np.ndarray | None:
    """A multi-valued numeric tag as floats; None when absent or empty; refused when malformed."""
    v = ds.get(tag)
    if v is None or v == "" or (hasattr(v, "__len__") and not isinstance(v, str) and len(v) == 0):
        return None
    values = list(v) if hasattr(v, "__iter__") and not isinstance(v, (str, bytes)) else [v]
    path = getattr(ds, "filename", "?")
    try:
        arr = np.asarray([float(x) for x in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise _field_error(path, tag, f"is {v!r}, not {count} number(s)") from None
    if arr.size != count or not np.all(np.isfinite(arr)):
        raise _field_error(path, tag, f"is {tuple(float(x) for x in arr)}; it must be {count} finite number(s)")
    return arr


def _pixel_spacing(ds, warn: bool = True) -> tuple[float, float]:
    """(row spacing = y, column spacing = x); ImagerPixelSpacing for projection images; 1 mm, with a
    warning, only where neither is stated. A stated spacing that is 0, negative or NaN is refused."""
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        v = _numbers(ds, tag, 2)
        if v is None:
            continue
        if np.any(v <= 0):
            raise _field_error(getattr(ds, "filename", "?"), tag,
                               f"is {tuple(float(x) for x in v)}; a pixel spacing must be greater than 0")
        return float(v[0]), float(v[1])
    if warn:
        logger.warning("DICOM file %s has no PixelSpacing; using 1 mm", getattr(ds, "filename", "?"))
    return 1.0, 1.0


def _slice_thickness(ds) -> float:
    """z spacing of a one-slice series: SliceThickness where stated (refused when not > 0), else 1 mm."""
    v = _numbers(ds, "SliceThickness", 1)
    if v is None:
        return 1.0
    if v[0] <= 0:
        raise _field_error(getattr(ds, "filename", "?"), "SliceThickness",
                           f"is {float(v[0]):g}; a slice thickness must be greater than 0")
    return float(v[0])


def _orientation(path: Path, iop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit row and column cosines of ImageOrientationPatient; refused when they are not two
    orthogonal unit vectors (within rounding of the written digits)."""
    row, col = iop[:3], iop[3:]
    for name, v in (("row", row), ("column", col)):
        n = float(np.linalg.norm(v))
        if abs(n - 1.0) > 1e-2:
            raise _field_error(path, "ImageOrientationPatient", f"gives a {name} direction {tuple(float(x) for x in v)} "
                                                               f"of length {n:.4g}, not a unit vector")
    row, col = _unit(row), _unit(col)
    if abs(float(row @ col)) > 1e-2:
        raise _field_error(path, "ImageOrientationPatient", f"gives row and column directions that are not "
                                                           f"perpendicular (cosine {float(row @ col):.4g})")
    return row, col


def _check_pixel_module(s: "_Slice") -> None:
    """Refuse pixel-module fields that are impossible or that the pixel data contradict."""
    ds, path = s.ds, s.path
    for tag in ("Rows", "Columns"):
        v = ds.get(tag)
        if v is None or int(v) < 1:
            raise _field_error(path, tag, f"is {v!r}; an image needs at least one row and one column")
    bits = ds.get("BitsAllocated")
    if bits is None or int(bits) not in (1, 8, 16, 32, 64):
        raise _field_error(path, "BitsAllocated", f"is {bits!r}; it must be 1, 8, 16, 32 or 64")
    stored = ds.get("BitsStored")
    if stored is not None and not 1 <= int(stored) <= int(bits):
        raise _field_error(path, "BitsStored", f"is {stored!r} with BitsAllocated {bits}")
    high = ds.get("HighBit")
    if stored is not None and high is not None and int(high) != int(stored) - 1:
        raise _field_error(path, "HighBit", f"is {high} with BitsStored {stored}; DICOM requires HighBit = BitsStored - 1 "
                                            "(where the stored bits sit is otherwise ambiguous)")
    spp = ds.get("SamplesPerPixel", 1)
    if spp is None or int(spp) not in (1, 3):
        raise _field_error(path, "SamplesPerPixel", f"is {spp!r}; it must be 1 (gray) or 3 (colour)")
    rep = ds.get("PixelRepresentation", 0)
    if rep is None or int(rep) not in (0, 1):
        raise _field_error(path, "PixelRepresentation", f"is {rep!r}; it must be 0 (unsigned) or 1 (signed)")
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" in ds and not getattr(ts, "is_compressed", False):
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        need = (int(ds.Rows) * int(ds.Columns) * int(spp) * frames * int(bits) + 7) // 8
        have = len(ds.PixelData or b"")
        if have > need + 1:  # one pad byte is allowed (an even length)
            raise _field_error(path, "PixelData", f"holds {have} bytes, more than Rows x Columns x SamplesPerPixel x "
                                                 f"BitsAllocated ({ds.Rows} x {ds.Columns} x {spp} x {bits}) claim "
                                                 f"({need}); Rows, Columns or BitsAllocated is wrong")
        if have < need:
            raise _field_error(path, "PixelData", f"holds {have} bytes, but Rows x Columns x SamplesPerPixel x "
                                                 f"BitsAllocated ({ds.Rows} x {ds.Columns} x {spp} x {bits}) claim "
                                                 f"{need}; the file is truncated or its header is wrong")
    for tag in ("RescaleSlope", "RescaleIntercept"):
        v = _numbers(ds, tag, 1)
        if v is not None and tag == "RescaleSlope" and v[0] == 0:
            raise _field_error(path, tag, "is 0; it would make every voxel the same value")


def _decode_pixels(s: _Slice) -> np.ndarray:
    """Pixels of one file as float64 (frames/Y/X[/samples]) in modality units (rescale applied).

    pydicom decodes first; where it lacks a plugin for the transfer syntax (JPEG-LS, 12-bit JPEG
    ...) SimpleITK/GDCM decodes instead (GDCM applies the rescale itself).
    """
    try:
        arr = np.asarray(s.ds.pixel_array, dtype=np.float64)
    except Exception as e_pydicom:  # noqa: BLE001 - missing decoder plugins raise RuntimeError etc.
        import SimpleITK as sitk

        ts = getattr(getattr(s.ds, "file_meta", None), "TransferSyntaxUID", None)
        if ts is None or not getattr(ts, "is_compressed", False):  # raw pixels: nothing to decode
            msg = str(e_pydicom).splitlines()[0] if str(e_pydicom) else type(e_pydicom).__name__
            raise ImageReadError(
                f"Cannot read the pixel data of DICOM file {s.path}: {msg}. The file may be truncated; "
                "copy or export it again, or remove it."
            ) from None

        try:
            img = sitk.ReadImage(str(s.path))
        except RuntimeError:
            msg = str(e_pydicom).splitlines()[0] if str(e_pydicom) else type(e_pydicom).__name__
            ts_name = getattr(ts, "name", ts)
            raise ImageReadError(
                f"Cannot decode the pixel data of DICOM file {s.path} (transfer syntax {ts_name}): {msg}. "
                "Decompress the series (e.g. `gdcmconv --raw`) or convert it to NIfTI."
            ) from None
        arr = sitk.GetArrayFromImage(img).astype(np.float64)
        if img.GetNumberOfComponentsPerPixel() == 1 and arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        return arr
    slope_v, intercept_v = _numbers(s.ds, "RescaleSlope", 1), _numbers(s.ds, "RescaleIntercept", 1)
    slope = 1.0 if slope_v is None else float(slope_v[0])
    intercept = 0.0 if intercept_v is None else float(intercept_v[0])
    if slope != 1.0 or intercept != 0.0:
        arr = arr * slope + intercept
    return arr


def _sort_slices(folder: Path, slices: list[_Slice]) -> tuple[list[_Slice], np.ndarray, float]:
    """Order slices along the normal; return (sorted slices, direction 3x3, z spacing)."""
    first = slices[0]
    if first.orientation is None or any(s.position is None or s.orientation is None for s in slices):
        if len(slices) > 1:
            logger.warning(
                "DICOM series in %s lacks ImagePositionPatient/ImageOrientationPatient; ordering "
                "%d slices by InstanceNumber with z spacing 1 mm", folder, len(slices))
        ordered = sorted(slices, key=lambda s: (int(s.ds.get("InstanceNumber", 0) or 0), s.path.name))
        if first.orientation is not None:
            row, col = _orientation(first.path, first.orientation)
            direction = np.stack([row, col, _unit(np.cross(row, col))], axis=1)
        else:
            direction = np.eye(3)
        dz = 1.0
        if len(slices) == 1:
            dz = _slice_thickness(first.ds)
        return ordered, direction, dz

    for s in slices[1:]:
        if np.max(np.abs(s.orientation - first.orientation)) > 1e-3:
            raise ImageReadError(
                f"DICOM series in {folder} mixes slice orientations ({s.path.name} differs from "
                f"{first.path.name}); it is not one volume. Keep only the slices of one stack in the folder."
            )
    row, col = _orientation(first.path, first.orientation)
    normal = _unit(np.cross(row, col))
    direction = np.stack([row, col, normal], axis=1)  # columns: x axis, y axis, z axis

    proj = np.array([float(np.dot(s.position, normal)) for s in slices])
    order = np.argsort(proj, kind="stable")
    ordered = [slices[i] for i in order]
    proj = proj[order]
    if len(ordered) == 1:
        return ordered, direction, _slice_thickness(first.ds)

    gaps = np.diff(proj)
    dz = float(np.median(gaps))
    if dz <= 1e-6 or np.any(gaps <= max(1e-4, 1e-3 * dz)):
        i = int(np.argmin(gaps))
        raise ImageReadError(
            f"DICOM series in {folder} has slices at the same position (ImagePositionPatient of {ordered[i].path.name} "
            f"and {ordered[i + 1].path.name}); it may hold several echoes, phases or time points. "
            "Put one volume per folder."
        )
    deviation = float(np.max(np.abs(gaps - dz)) / dz)
    if deviation > _UNIFORMITY_TOLERANCE:
        logger.warning(
            "DICOM series in %s has non-uniform slice spacing or missing slices (gaps %.4g..%.4g mm, "
            "median %.4g mm used); the volume will be geometrically distorted",
            folder, float(gaps.min()), float(gaps.max()), dz)
    # in-plane offsets of slice origins along the row/column cosines should not drift (gantry tilt)
    inplane = np.array([[np.dot(s.position - ordered[0].position, row),
                         np.dot(s.position - ordered[0].position, col)] for s in ordered])
    if np.max(np.abs(inplane)) > 0.1 * min(_pixel_spacing(first.ds, warn=False)):
        logger.warning("DICOM series in %s is sheared (gantry tilt?); the shear is ignored", folder)
    return ordered, direction, dz


def read_dicom_series(folder: str | Path) -> tuple[np.ndarray, Geometry]:
    """Read the single DICOM series in ``folder`` -> float32 (C, Z, Y, X) and its geometry."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"DICOM folder {folder} does not exist or is not a folder.")
    slices = _read_headers(folder)
    if not slices:
        raise ImageReadError(
            f"DICOM folder {folder} holds no readable DICOM image files. Point to the folder that "
            "holds the slices of one series."
        )
    return _build_volume(folder, _single_series(folder, slices))


def read_dicom_file(path: str | Path) -> tuple[np.ndarray, Geometry]:
    """Read one DICOM file as a one-slice series (Z == 1)."""
    import pydicom

    path = Path(path)
    try:
        ds = pydicom.dcmread(path, force=not has_dicom_preamble(path))
    except Exception as e:  # noqa: BLE001
        raise ImageReadError(f"Cannot read DICOM file {path}: {type(e).__name__}: {e}.") from None
    if "PixelData" not in ds:
        raise ImageReadError(f"DICOM file {path} holds no pixel data; it is not an image.")
    return _build_volume(path.parent, [_slice_of(path, ds)])


def _build_volume(folder: Path, slices: list[_Slice]) -> tuple[np.ndarray, Geometry]:
    for s in slices:
        frames = int(s.ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise ImageReadError(
                f"DICOM file {s.path} is a multi-frame ({frames} frames) image, which selfconfig does "
                "not read. Convert the series to NIfTI (e.g. with dcm2niix) and use the .nii.gz file."
            )
    for s in slices:
        _check_pixel_module(s)
    ordered, direction, dz = _sort_slices(folder, slices)
    first = ordered[0]
    rows, cols = int(first.ds.Rows), int(first.ds.Columns)
    for s in ordered[1:]:
        if (int(s.ds.Rows), int(s.ds.Columns)) != (rows, cols):
            raise ImageReadError(
                f"DICOM series in {folder} mixes image sizes ({s.path.name}: {s.ds.Rows}x{s.ds.Columns}, "
                f"{first.path.name}: {rows}x{cols}). Keep one stack per folder."
            )
    sy, sx = _pixel_spacing(first.ds)

    planes = []
    for s in ordered:
        arr = _decode_pixels(s)
        if arr.ndim == 2:  # (Y, X)
            arr = arr[None]
        elif arr.ndim == 3 and arr.shape[:2] == (rows, cols):  # (Y, X, samples)
            arr = np.moveaxis(arr, -1, 0)
        else:
            raise ImageReadError(f"DICOM file {s.path} has unexpected pixel array shape {arr.shape}.")
        planes.append(arr)
    channels = {p.shape[0] for p in planes}
    if len(channels) > 1:
        raise ImageReadError(f"DICOM series in {folder} mixes gray and colour slices; keep one kind.")
    data = np.stack(planes, axis=1).astype(np.float32)  # (C, Z, Y, X)

    origin = tuple(float(v) for v in first.position) if first.position is not None else (0.0, 0.0, 0.0)
    geometry = Geometry(
        spacing=(float(dz), float(sy), float(sx)),
        shape=tuple(int(v) for v in data.shape[1:]),
        origin=origin,
        direction=tuple(float(v) for v in direction.reshape(-1)),
        dim=3,
        source_format="dicom",
        file_ending="",
        extra={"series_instance_uid": str(first.ds.get("SeriesInstanceUID", "")),
               "modality": str(first.ds.get("Modality", ""))},
    )
    logger.debug("Read DICOM series %s: shape %s spacing %s", folder, geometry.shape, geometry.spacing)
    return data, geometry
