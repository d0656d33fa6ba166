"""Read and write images, label maps and segmentations in every format selfconfig accepts.

3D formats (NIfTI, NRRD, MetaImage) go through SimpleITK, 2D images (PNG, JPEG, BMP, TIFF)
through Pillow, DICOM series folders through :mod:`selfconfig.dataset.dicom`. Whatever the
format, images come back as float32 ``(C, Z, Y, X)``, label maps as integer ``(Z, Y, X)``, and a
:class:`Geometry` that lets :func:`write_segmentation` put a prediction back on exactly the grid
of its input. A file a user got wrong raises :class:`ImageReadError` with one line that names
it; raw SimpleITK/Pillow tracebacks never escape.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from selfconfig.dataset.dicom import has_dicom_preamble, is_dicom_folder, read_dicom_file, read_dicom_series
from selfconfig.dataset.geometry import DUMMY_2D_SPACING, Geometry
from selfconfig.dataset.header_checks import check_png, check_read_geometry, check_tiff, claim_for
from selfconfig.dataset.headers import check_claimed_size
from selfconfig.errors import ImageReadError, SelfconfigError
from selfconfig.utils import atomic_path

logger = logging.getLogger(__name__)

__all__ = [
    "SUPPORTED_ENDINGS", "DICOM_FOLDER_ENDING", "split_ending", "is_dicom_folder", "read_image",
    "read_case", "read_label", "write_image", "write_segmentation", "output_ending_for",
]

# file endings read and written here; a DICOM series is a folder, whose "ending" is ""
SUPPORTED_ENDINGS: tuple[str, ...] = (
    ".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff",
)
DICOM_FOLDER_ENDING = ""

_SITK_FORMATS = {".nii.gz": "nifti", ".nii": "nifti", ".nrrd": "nrrd", ".mha": "mha", ".mhd": "mha"}
_IMAGE2D_ENDINGS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_LOSSY_ENDINGS = (".jpg", ".jpeg")
_PIL_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
_ENDINGS_LONGEST_FIRST = sorted(SUPPORTED_ENDINGS, key=len, reverse=True)


def split_ending(name: str) -> tuple[str, str]:
    """``case_0000.nii.gz`` -> (``case_0000``, ``.nii.gz``); an unknown ending -> (name, "").

    Endings are matched case-insensitively and returned as written, so stem + ending == name.
    """
    name = str(name)
    low = name.lower()
    for ending in _ENDINGS_LONGEST_FIRST:
        if low.endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)], name[-len(ending):]
    return name, ""


def _ending_of(path: Path) -> str:
    return split_ending(path.name)[1].lower()


def output_ending_for(geometry: Geometry) -> str:
    """Ending of a prediction for an input with this geometry: same format, except DICOM ->
    ``.nii.gz`` (segmentations are not written as DICOM) and lossy JPEG -> ``.png``."""
    ending = (geometry.file_ending or "").lower()
    if geometry.source_format == "dicom" or not ending:
        return ".nii.gz"
    if ending in _LOSSY_ENDINGS:
        return ".png"
    return geometry.file_ending


# ----------------------------------------------------------------------------------------- errors

def _one_line(exc: BaseException) -> str:
    """The informative part of an exception message as one line (SimpleITK puts source paths
    and object addresses first and the cause, if any, last)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Exception thrown in SimpleITK")]
    if not lines:
        return type(exc).__name__
    for i, ln in enumerate(lines):
        m = re.match(r"^(?:s?itk(?:::)?\s*)?error:\s*(?:\w+\(0x[0-9a-fA-F]+\):\s*)?(.*)$", ln, flags=re.IGNORECASE)
        if m:
            main = m.group(1).strip().rstrip(":. ")
            rest = lines[i + 1:]
            if rest and not rest[-1].startswith("Reason:"):
                main += " (" + re.sub(r"^\[\w+\]\s*\w+:\s*", "", rest[-1]).rstrip(". ") + ")"
            return main
    return lines[0].rstrip(". ")


def _require_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(f"Image file {path} does not exist; check the path and the file name.")


# ------------------------------------------------------------------------------- 3D via SimpleITK

def _sitk_geometry(img, shape: tuple[int, int, int], ending: str) -> Geometry:
    """Geometry of a SimpleITK image of dimension 2, 3 or 4 (a 4th axis is taken as channels)."""
    ndim = img.GetDimension()
    sp, org, dr = img.GetSpacing(), img.GetOrigin(), img.GetDirection()
    if ndim == 2:
        spacing = (DUMMY_2D_SPACING, float(sp[1]), float(sp[0]))
        origin = (float(org[0]), float(org[1]), 0.0)
        direction = (dr[0], dr[1], 0.0, dr[2], dr[3], 0.0, 0.0, 0.0, 1.0)
        dim = 2
    else:
        spacing = (float(sp[2]), float(sp[1]), float(sp[0]))
        origin = (float(org[0]), float(org[1]), float(org[2]))
        if ndim == 3:
            direction = tuple(dr)
        else:  # top-left 3x3 of the ndim x ndim matrix
            m = np.asarray(dr, dtype=np.float64).reshape(ndim, ndim)[:3, :3]
            direction = tuple(m.reshape(-1))
        dim = 3
    return Geometry(
        spacing=spacing, shape=shape, origin=origin,
        direction=tuple(float(v) for v in direction), dim=dim,
        source_format=_SITK_FORMATS[ending], file_ending=ending,
    )


def _restore_nifti_nonfinite(path: Path, arr: np.ndarray) -> np.ndarray:
    """SimpleITK's NIfTI reader turns NaN into 0; verification must see them. Float files only
    (integer files cannot hold NaN), so typical CT (int16) costs nothing extra."""
    import nibabel as nib

    try:
        data = np.asarray(nib.load(str(path)).dataobj)
    except Exception as e:  # noqa: BLE001 - SimpleITK already read the file
        logger.debug("Skipping the NaN check of %s: %s", path, e)
        return arr
    bad = ~np.isfinite(data)
    if not bad.any():
        return arr
    # nibabel's array is (x, y, z[, t]); SimpleITK's is the reverse
    bad = np.transpose(bad, tuple(range(bad.ndim))[::-1])
    if bad.shape != arr.shape:
        return arr
    arr = arr.copy()
    arr[bad] = np.nan
    return arr


class _ITKWarnings:
    """Collect what ITK says while a file is read (it would go to stderr, unseen): a reader that
    warns has repaired something, and a repair is refused, not used."""

    def __init__(self):
        self.messages: list[str] = []
        self._logger = None
        self._previous = None

    def __enter__(self) -> "_ITKWarnings":
        import SimpleITK as sitk

        collected = self.messages

        class Collect(sitk.LoggerBase):
            def DisplayText(self, t):  # noqa: N802 - SimpleITK's names
                pass

            def DisplayErrorText(self, t):  # noqa: N802
                collected.append(t)

            def DisplayWarningText(self, t):  # noqa: N802
                collected.append(t)

            def DisplayGenericOutputText(self, t):  # noqa: N802
                pass

            def DisplayDebugText(self, t):  # noqa: N802
                pass

        self._logger = Collect()
        self._previous = self._logger.SetAsGlobalITKLogger()
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            self._previous.SetAsGlobalITKLogger()

    #: warnings that selfconfig's own header check has already judged: ITK compares pixdim with the
    #: sform's column lengths to 1e-3 mm (absolute); header_checks refuses beyond 0.1 % (relative),
    #: and below that the two claims agree and the pixdim spacing is used, as SimpleITK does
    JUDGED = ("has unexpected scales in sform",)

    def first(self) -> str | None:
        """The first warning as one line, without ITK's source location and object address."""
        for text in self.messages:
            if any(j in text for j in self.JUDGED):
                continue
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            lines = [ln for ln in lines if not re.match(r"^(WARNING|ERROR): In .*, line \d+$", ln)]
            if lines:
                return re.sub(r"^\w+ \(0x[0-9a-fA-F]+\):\s*", "", " ".join(lines)).rstrip(". ")
        return None


def _read_sitk(path: Path, ending: str) -> tuple[np.ndarray, Geometry]:
    """-> raw-dtype array (C, Z, Y, X) and geometry."""
    import SimpleITK as sitk

    check_claimed_size(path, ending)  # before SimpleITK allocates what the header claims
    claim = claim_for(path, ending)  # invalid or contradictory header fields, named, before any reading
    try:
        with _ITKWarnings() as warned:
            img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ImageReadError(
            f"Cannot read image {path}: {_one_line(e)}. Check that the file is complete and a valid "
            f"{_SITK_FORMATS[ending]} file (re-export it if needed)."
        ) from None
    if warned.first():
        raise ImageReadError(f"Cannot read image {path}: SimpleITK had to repair its header ({warned.first()}); fix "
                             f"the header or export the scan again (nothing was read)")
    check_read_geometry(path, claim, img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    ndim, comps = img.GetDimension(), img.GetNumberOfComponentsPerPixel()
    if ndim not in (2, 3, 4):
        raise ImageReadError(f"Image {path} has {ndim} dimensions; selfconfig reads 2D, 3D and 4D (channels) images.")
    if ndim == 4 and comps > 1:
        raise ImageReadError(f"Image {path} is 4D with {comps}-component pixels; store one 3D image per channel.")
    try:
        arr = sitk.GetArrayFromImage(img)  # (Z,Y,X)[,C] / (Y,X)[,C] / (T,Z,Y,X)
    except RuntimeError as e:
        raise ImageReadError(f"Cannot read the voxels of {path}: {_one_line(e)}.") from None
    if np.iscomplexobj(arr):
        raise ImageReadError(f"Image {path} holds complex values; store magnitude images instead.")
    if _SITK_FORMATS[ending] == "nifti" and arr.dtype.kind == "f":
        arr = _restore_nifti_nonfinite(path, arr)
    if ndim == 2:
        arr = arr[None]  # Z = 1
    if ndim == 4:
        logger.info("Reading 4D image %s: its 4th axis (%d) is taken as channels", path, arr.shape[0])
    elif comps > 1:
        arr = np.moveaxis(arr, -1, 0)
    else:
        arr = arr[None]
    shape = tuple(int(v) for v in arr.shape[1:])
    return arr, _sitk_geometry(img, shape, ending)


def _write_sitk(array: np.ndarray, geometry: Geometry, path: Path, is_vector: bool) -> None:
    """array (Z, Y, X) or (Z, Y, X, C) with ``is_vector``; a dim-2 geometry with Z == 1 writes 2D."""
    import SimpleITK as sitk

    sp, org, dr = geometry.spacing, geometry.origin, geometry.direction
    if geometry.dim == 2 and array.shape[0] == 1:
        img = sitk.GetImageFromArray(array[0], isVector=is_vector)
        img.SetSpacing((float(sp[2]), float(sp[1])))
        img.SetOrigin((float(org[0]), float(org[1])))
        img.SetDirection((float(dr[0]), float(dr[1]), float(dr[3]), float(dr[4])))
    else:
        img = sitk.GetImageFromArray(array, isVector=is_vector)
        img.SetSpacing((float(sp[2]), float(sp[1]), float(sp[0])))
        img.SetOrigin(tuple(float(v) for v in org))
        img.SetDirection(tuple(float(v) for v in dr))
    try:
        with atomic_path(path, int(array.nbytes)) as tmp:  # a failure leaves no file that looks finished
            sitk.WriteImage(img, str(tmp), True)
    except RuntimeError as e:
        raise SelfconfigError(
            f"Cannot write {path}: {_one_line(e)}. Check that the folder exists, is writable and has free space "
            "(the file was not written)."
        ) from None


# ---------------------------------------------------------------------------------- 2D via Pillow

def _open_2d(path: Path):
    """Open and fully load a 2D image with Pillow; any failure, and any warning Pillow gives about
    what it had to guess or skip, -> ImageReadError."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    if _ending_of(path) == ".png":
        check_png(path)
    elif _ending_of(path) in (".tif", ".tiff"):
        check_tiff(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            im = _load_2d(path)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError, struct.error,
            IndexError, KeyError, TypeError, ZeroDivisionError, MemoryError, OverflowError) as e:
        raise ImageReadError(
            f"Cannot read image {path}: {_one_line(e)}. Check that the file is complete and a valid "
            f"{_ending_of(path).lstrip('.').upper()} image."
        ) from None
    relevant = [w for w in caught if not issubclass(w.category, (Image.DecompressionBombWarning, DeprecationWarning))]
    if relevant:
        raise ImageReadError(f"Cannot read image {path}: Pillow had to repair it ({_one_line(relevant[0].message)}); "
                             f"check that the file is complete and valid (nothing was read)")
    if 0 in im.size:
        raise ImageReadError(f"Cannot read image {path}: its header gives the size {im.size[0]} x {im.size[1]}; an "
                             f"image needs at least one row and one column")
    return im


def _load_2d(path: Path):
    from PIL import Image

    im = Image.open(path)
    if getattr(im, "n_frames", 1) > 1:
        raise ImageReadError(
            f"Image {path} has {im.n_frames} pages/frames; selfconfig reads single-page 2D images. "
            "Store volumes as NIfTI (.nii.gz) instead."
        )
    im.load()
    return im


def _read_2d_image(path: Path) -> np.ndarray:
    """-> (C, 1, Y, X) raw-dtype array: gray -> C=1, colour -> C=3 (alpha dropped)."""
    im = _open_2d(path)
    mode = im.mode
    if mode in ("P", "PA"):
        palette = np.asarray(im.getpalette() or [], dtype=np.int64).reshape(-1, 3)
        gray = palette.size == 0 or bool(np.all(palette == palette[:, :1]))
        im = im.convert("L" if gray else "RGB")
    elif mode in ("LA", "La"):
        im = im.getchannel(0)
    elif mode in ("RGBA", "RGBa", "RGBX"):
        im = im.convert("RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    arr = np.asarray(im)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3:
        if arr.shape[-1] == 4:  # 4-sample images Pillow left alone: drop alpha
            arr = arr[..., :3]
        arr = np.moveaxis(arr, -1, 0)
    else:
        raise ImageReadError(f"Image {path} has an unexpected pixel layout {arr.shape} (mode {mode}).")
    return arr[:, None]


def _geometry_2d(shape_yx: tuple[int, int], ending: str) -> Geometry:
    return Geometry(spacing=(DUMMY_2D_SPACING, 1.0, 1.0), shape=(1, int(shape_yx[0]), int(shape_yx[1])),
                    dim=2, source_format="image2d", file_ending=ending)


def _to_uint_image(array: np.ndarray, path: Path, allow_16bit: bool) -> np.ndarray:
    """Round to integers and pick uint8, or uint16 where values exceed 255 and the format allows."""
    arr = np.asarray(array)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"cannot write NaN/Inf values to {path}")
        arr = np.rint(arr)
    lo = float(arr.min()) if arr.size else 0.0
    hi = float(arr.max()) if arr.size else 0.0
    if lo < 0:
        raise ValueError(f"cannot write negative values ({lo}) to {path}; {_ending_of(path)} stores unsigned integers")
    if hi <= 255:
        return arr.astype(np.uint8)
    if hi <= 65535 and allow_16bit:
        return arr.astype(np.uint16)
    raise ValueError(
        f"values up to {hi} do not fit a {'16' if allow_16bit else '8'}-bit {_ending_of(path)} file ({path})")


def _write_2d(planes: np.ndarray, path: Path, ending: str) -> None:
    """planes (C, Y, X) with C in (1, 3) already as uint8/uint16 -> image file."""
    from PIL import Image

    arr = planes[0] if planes.shape[0] == 1 else np.ascontiguousarray(np.moveaxis(planes, 0, -1))
    if arr.dtype == np.uint16 and arr.ndim == 3:
        raise ValueError(f"16-bit colour images cannot be written to {path}; scale to 0..255")
    im = Image.fromarray(np.ascontiguousarray(arr))
    kwargs = {"quality": 95} if ending in _LOSSY_ENDINGS else {}
    with atomic_path(path, int(arr.nbytes)) as tmp:  # OSError -> one line naming path; no partial file left
        im.save(tmp, format=_PIL_FORMAT[ending], **kwargs)


# ------------------------------------------------------------------------------------ public API

def _read_raw(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """Any supported file or DICOM folder -> raw-dtype (C, Z, Y, X) array and geometry."""
    path = Path(path)
    _require_file(path)
    if path.is_dir():
        if is_dicom_folder(path):
            return read_dicom_series(path)
        raise ImageReadError(
            f"{path} is a folder without DICOM files; an image is a file ({', '.join(SUPPORTED_ENDINGS)}) "
            "or a folder holding one DICOM series."
        )
    ending = _ending_of(path)
    if ending in _SITK_FORMATS:
        return _read_sitk(path, ending)
    if ending in _IMAGE2D_ENDINGS:
        arr = _read_2d_image(path)
        return arr, _geometry_2d(arr.shape[2:], ending)
    if path.suffix.lower() == ".dcm" or has_dicom_preamble(path):
        return read_dicom_file(path)
    raise ImageReadError(
        f"{path} has an unsupported file ending; use one of {', '.join(SUPPORTED_ENDINGS)} or a DICOM folder."
    )


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """One image file or DICOM series folder -> float32 (C, Z, Y, X) and its geometry."""
    arr, geometry = _read_raw(path)
    return np.asarray(arr, dtype=np.float32), geometry


def _grid_difference(a: Geometry, b: Geometry) -> str:
    if tuple(a.shape) != tuple(b.shape):
        return f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
    parts = []
    for name in ("spacing", "origin", "direction"):
        va, vb = getattr(a, name), getattr(b, name)
        if not np.allclose(va, vb, rtol=1e-3, atol=1e-3):
            parts.append(f"{name} {tuple(round(float(v), 4) for v in va)} vs {tuple(round(float(v), 4) for v in vb)}")
    return ", ".join(parts) or "geometry differs"


def read_case(paths: Sequence[str | os.PathLike]) -> tuple[np.ndarray, Geometry]:
    """The channel files of one case (CASE_0000, CASE_0001, ...) -> float32 (C, Z, Y, X) stacked
    along C, and the geometry they share. Files on different grids raise ImageReadError."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ImageReadError("A case needs at least one image file; none were given.")
    arrays, first_geometry = [], None
    for p in paths:
        arr, geometry = read_image(p)
        if first_geometry is None:
            first_geometry = geometry
        elif not first_geometry.same_grid(geometry):
            raise ImageReadError(
                f"Channel files {paths[0]} and {p} are on different grids ({_grid_difference(first_geometry, geometry)}); "
                "all channel files of a case must share one grid: resample them onto the grid of the first channel."
            )
        arrays.append(arr)
    data = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
    return data, first_geometry


def _as_label_array(arr: np.ndarray, path: Path) -> np.ndarray:
    """Check integrality and pick the smallest fitting dtype: uint8, int16 (else int32)."""
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ImageReadError(f"Label file {path} contains NaN/Inf values; labels must be integers.")
        frac = arr != np.rint(arr)
        if frac.any():
            example = float(arr[frac].flat[0])
            raise ImageReadError(
                f"Label file {path} contains non-integer values (e.g. {example:g}); labels must be integer "
                "class values: save the mask with an integer type (no interpolation when resampling)."
            )
    elif arr.dtype.kind not in "iu":
        raise ImageReadError(f"Label file {path} has pixel type {arr.dtype}; labels must be integers.")
    lo = int(arr.min()) if arr.size else 0
    hi = int(arr.max()) if arr.size else 0
    if lo >= 0 and hi <= 255:
        return arr.astype(np.uint8)
    if lo >= np.iinfo(np.int16).min and hi <= np.iinfo(np.int16).max:
        return arr.astype(np.int16)
    return arr.astype(np.int32)


def read_label(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """A label map file -> integer (Z, Y, X) array (2D: (1, Y, X)) and its geometry."""
    path = Path(path)
    _require_file(path)
    ending = _ending_of(path)
    if path.is_file() and ending in _IMAGE2D_ENDINGS:
        im = _open_2d(path)
        arr = np.asarray(im)  # palette images give their indices, which are the labels
        if arr.ndim != 2:
            channels = arr.shape[-1] if arr.ndim == 3 else "?"
            hint = ""
            if arr.ndim == 3 and np.all(arr[..., :3] == arr[..., :1]):
                hint = " (its colour channels are identical: save it as a gray, mode 'L', image)"
            raise ImageReadError(
                f"Label file {path} has {channels} channels (mode {im.mode}){hint}; labels must be "
                "single-channel integer images (gray PNG with values 0, 1, 2, ...)."
            )
        return _as_label_array(arr, path)[None], _geometry_2d(arr.shape, ending)
    arr, geometry = _read_raw(path)
    if arr.shape[0] != 1:
        raise ImageReadError(
            f"Label file {path} has {arr.shape[0]} channels/components; labels must be single-channel "
            "integer images."
        )
    return _as_label_array(arr[0], path), geometry


def _check_writable_ending(path: Path) -> str:
    ending = _ending_of(path)
    if ending not in _SITK_FORMATS and ending not in _IMAGE2D_ENDINGS:
        raise SelfconfigError(
            f"Cannot write {path}: unsupported file ending; use one of {', '.join(SUPPORTED_ENDINGS)} "
            "(DICOM is read, not written)."
        )
    return ending


def write_image(array: np.ndarray, geometry: Geometry, path: str | os.PathLike) -> None:
    """Write an image (C, Z, Y, X) or (Z, Y, X); the format follows the path's ending.

    3D formats keep the array's dtype (float64 -> float32) and get spacing, origin and direction
    from ``geometry``; several channels become a vector image. 2D formats take Z == 1 and C of 1
    (gray) or 3 (RGB), written as uint8, or uint16 where values exceed 255 (gray PNG/TIFF only).
    """
    path = Path(path)
    ending = _check_writable_ending(path)
    arr = np.asarray(array)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"write_image expects (C, Z, Y, X) or (Z, Y, X), got shape {arr.shape}")
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if ending in _SITK_FORMATS:
        if arr.shape[0] == 1:
            _write_sitk(arr[0], geometry, path, is_vector=False)
        else:
            _write_sitk(np.moveaxis(arr, 0, -1), geometry, path, is_vector=True)
        return
    if arr.shape[1] != 1 or arr.shape[0] not in (1, 3):
        raise ValueError(f"{ending} images must be (1, 1, Y, X) gray or (3, 1, Y, X) RGB, got {arr.shape}")
    planes = _to_uint_image(arr[:, 0], path, allow_16bit=ending in (".png", ".tif", ".tiff"))
    _write_2d(planes, path, ending)


def write_segmentation(seg: np.ndarray, geometry: Geometry, path: str | os.PathLike) -> None:
    """Write a label map (Z, Y, X) on exactly the grid ``geometry`` describes (uint8 when labels
    fit, else int16). 2D formats get a lossless gray PNG/TIFF/BMP; JPEG is refused."""
    path = Path(path)
    ending = _check_writable_ending(path)
    if ending in _LOSSY_ENDINGS:
        raise SelfconfigError(
            f"Cannot write segmentation {path}: JPEG is lossy and would change label values; use .png."
        )
    arr = np.asarray(seg)
    if arr.ndim != 3:
        raise ValueError(f"write_segmentation expects (Z, Y, X), got shape {arr.shape}")
    if tuple(arr.shape) != tuple(int(v) for v in geometry.shape):
        raise ValueError(f"segmentation shape {arr.shape} differs from the geometry's shape {tuple(geometry.shape)}")
    if arr.dtype.kind == "f" and np.any(arr != np.rint(arr)):
        raise ValueError(f"segmentation for {path} holds non-integer values")
    arr = _as_label_array(arr if arr.dtype.kind != "f" else np.rint(arr), path)
    if ending in _SITK_FORMATS:
        _write_sitk(arr, geometry, path, is_vector=False)
        return
    if arr.shape[0] != 1:
        raise ValueError(f"{ending} segmentations must be 2D (Z == 1), got shape {arr.shape}")
    planes = _to_uint_image(arr, path, allow_16bit=ending in (".png", ".tif", ".tiff"))
    _write_2d(planes, path, ending)
