"""Check the grid a header claims (spacing, direction, origin, dimensions, data type) before a
reader library interprets it, and check that what the library returned is that claim.

SimpleITK quietly repairs headers it does not like: a NIfTI ``pixdim`` of 0, NaN or Inf becomes
1 mm, a negative one its absolute value, a sheared ``sform`` is replaced by the ``qform`` (with
a warning on stderr, at best); a case would then be planned and resampled at a spacing that is
not the scan's. Here the header is parsed by selfconfig itself; a field that is invalid, or two
fields that contradict each other, is refused in one line naming the file and the field, and the
geometry SimpleITK returns is compared with the claim (:func:`check_read_geometry`), so a
substitution nobody foresaw is refused as well. A file this module does not understand is left
to the reader, which reports it.
"""

from __future__ import annotations

import gzip
import math
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfconfig.errors import ImageReadError

#: columns of a direction matrix must be this close to unit length and to orthogonal
ORTHO_TOLERANCE = 1e-3
#: two claims of one spacing (pixdim vs. sform) must agree this closely (relative)
SPACING_TOLERANCE = 1e-3


@dataclass
class GridClaim:
    """What a header says about its spatial axes, in SimpleITK's conventions: spacing and origin
    in file axis order (x, y, z), direction in LPS with one column per axis. ``None``: not
    stated (the reader's default applies and is not compared). ``fields`` names the header
    fields each part came from, for the refusal."""

    spacing: tuple[float, ...]
    origin: tuple[float, ...] | None
    direction: np.ndarray | None
    fields: dict[str, str]


def header_error(path: Path, field: str, problem: str) -> ImageReadError:
    return ImageReadError(f"Cannot read image {path}: header field {field} {problem}; fix the header or export "
                          f"the scan again (nothing was read)")


def _finite(values) -> bool:
    return all(math.isfinite(float(v)) for v in values)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def _check_spacing(path: Path, values, names: list[str]) -> None:
    for v, name in zip(values, names):
        if not math.isfinite(float(v)) or float(v) <= 0:
            raise header_error(path, name, f"is {float(v):g}; a voxel spacing must be a finite number greater than 0")


def _check_axes(path: Path, matrix: np.ndarray, field: str, unit: bool) -> np.ndarray:
    """Columns of ``matrix`` are the axes; refuse NaN, zero-length, parallel or sheared axes.
    ``unit``: the columns must already be unit vectors (a direction, not spacing x direction).
    Returns the unit columns."""
    if not np.all(np.isfinite(matrix)):
        raise header_error(path, field, f"holds a non-finite value {_fmt(matrix.T.reshape(-1))}")
    norms = np.linalg.norm(matrix, axis=0)
    for i, n in enumerate(norms):
        if n <= 1e-12:
            raise header_error(path, field, f"gives axis {i} a zero-length direction {_fmt(matrix[:, i])}")
        if unit and abs(n - 1.0) > ORTHO_TOLERANCE:
            raise header_error(path, field, f"gives axis {i} a direction of length {n:.6g} {_fmt(matrix[:, i])}, "
                                            f"not a unit vector")
    units = matrix / norms
    gram = units.T @ units - np.eye(units.shape[1])
    if np.max(np.abs(gram)) > ORTHO_TOLERANCE:
        i, j = np.unravel_index(int(np.argmax(np.abs(gram))), gram.shape)
        angle = math.degrees(math.acos(max(-1.0, min(1.0, float(units[:, i] @ units[:, j])))))
        raise header_error(path, field, f"makes axes {i} and {j} meet at {angle:.4g} degrees (a sheared or "
                                        f"degenerate grid); selfconfig reads orthogonal grids only")
    return units


# ---------------------------------------------------------------------------------------- NIfTI

_NIFTI_BITS = {2: 8, 4: 16, 8: 32, 16: 32, 32: 64, 64: 64, 128: 24, 256: 8, 512: 16, 768: 32, 1024: 64, 1280: 64,
               1536: 128, 1792: 128, 2048: 256, 2304: 32}
_NIFTI_LAYOUT = {  # field: (offset, struct code) for NIfTI-1 / NIfTI-2
    1: {"dim": (40, "8h"), "datatype": (70, "h"), "bitpix": (72, "h"), "pixdim": (76, "8f"),
        "vox_offset": (108, "f"), "scl_slope": (112, "f"), "scl_inter": (116, "f"), "qform_code": (252, "h"),
        "sform_code": (254, "h"), "quatern": (256, "3f"), "qoffset": (268, "3f"), "srow": (280, "12f")},
    2: {"datatype": (12, "h"), "bitpix": (14, "h"), "dim": (16, "8q"), "pixdim": (104, "8d"),
        "vox_offset": (168, "q"), "scl_slope": (176, "d"), "scl_inter": (184, "d"), "qform_code": (344, "i"),
        "sform_code": (348, "i"), "quatern": (352, "3d"), "qoffset": (376, "3d"), "srow": (400, "12d")},
}
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _read_nifti_header(path: Path, compressed: bool) -> bytes | None:
    try:
        opener = gzip.open if compressed else open
        with opener(path, "rb") as f:
            return f.read(540)
    except (EOFError, OSError, zlib.error):
        return None  # headers.check_claimed_size reports it


def _nifti_fields(head: bytes) -> tuple[int, str, dict] | None:
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            version = 1
        elif len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            version = 2
        else:
            continue
        fields = {}
        for name, (offset, code) in _NIFTI_LAYOUT[version].items():
            vals = struct.unpack_from(endian + code, head, offset)
            fields[name] = vals if len(vals) > 1 else vals[0]
        return version, endian, fields
    return None


def _quaternion_matrix(b: float, c: float, d: float) -> np.ndarray:
    """NIfTI's rotation from (b, c, d), a = sqrt(1 - b^2 - c^2 - d^2) (nifti1_io's convention)."""
    a2 = 1.0 - (b * b + c * c + d * d)
    if a2 < 1e-7:  # nifti1_io: a 180-degree rotation; (b, c, d) are normalised
        s = 1.0 / math.sqrt(b * b + c * c + d * d)
        a, b, c, d = 0.0, b * s, c * s, d * s
    else:
        a = math.sqrt(a2)
    return np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                     [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                     [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]])


def nifti_claim(path: Path, compressed: bool) -> GridClaim | None:
    head = _read_nifti_header(path, compressed)
    parsed = _nifti_fields(head or b"")
    if parsed is None:
        return None
    version, _, f = parsed
    dim, pixdim = f["dim"], f["pixdim"]
    if not 1 <= dim[0] <= 7:
        raise header_error(path, "dim[0]", f"is {dim[0]}; the number of dimensions must be 1..7")
    for i in range(1, dim[0] + 1):
        if dim[i] < 1:
            raise header_error(path, f"dim[{i}]", f"is {dim[i]}; every axis needs at least one voxel")
    bits = _NIFTI_BITS.get(f["datatype"])
    if bits is None:
        raise header_error(path, "datatype", f"is {f['datatype']}, not a NIfTI data type")
    if f["bitpix"] != bits:
        raise header_error(path, "bitpix", f"is {f['bitpix']} but datatype {f['datatype']} has {bits} bits per voxel; "
                                           "the header contradicts itself")
    offset = float(f["vox_offset"])
    minimum = 352 if version == 1 else 544
    if not math.isfinite(offset) or offset != int(offset):
        raise header_error(path, "vox_offset", f"is {offset:g}, not a whole number of bytes")
    if offset < minimum:
        raise header_error(path, "vox_offset", f"is {offset:g}; the voxels of a single-file NIfTI-{version} "
                                               f"start at byte {minimum} or later")
    for name in ("scl_slope", "scl_inter"):
        if not math.isfinite(float(f[name])):
            raise header_error(path, name, f"is {float(f[name]):g}; intensity scaling must be finite")
    if float(f["scl_slope"]) == 0 and float(f["scl_inter"]) != 0:
        raise header_error(path, "scl_inter", f"is {float(f['scl_inter']):g} while scl_slope is 0, which by the NIfTI "
                                              "standard means no scaling; readers disagree on such a file (SimpleITK "
                                              "adds the intercept, nibabel does not)")
    n = min(dim[0], 3)
    _check_spacing(path, pixdim[1:n + 1], [f"pixdim[{i}]" for i in range(1, n + 1)])
    spacing = np.array([float(v) for v in pixdim[1:4]] + [1.0] * (3 - len(pixdim[1:4])))
    spacing[n:] = 1.0
    q_dir = q_org = s_dir = s_org = None
    if f["qform_code"] > 0:
        b, c, d = (float(v) for v in f["quatern"])
        if not _finite((b, c, d)) or b * b + c * c + d * d > 1.0 + 1e-4:
            raise header_error(path, "quatern_b/c/d", f"is {_fmt((b, c, d))}, not a rotation (qform)")
        if not _finite(f["qoffset"]):
            raise header_error(path, "qoffset_x/y/z", f"is {_fmt(f['qoffset'])}, not finite (qform)")
        if not math.isfinite(float(pixdim[0])):
            raise header_error(path, "pixdim[0]", f"(qfac) is {float(pixdim[0]):g}; it must be 1 or -1")
        q_dir = _quaternion_matrix(b, c, d)
        if float(pixdim[0]) < 0:
            q_dir[:, 2] *= -1
        q_org = np.array([float(v) for v in f["qoffset"]])
    if f["sform_code"] > 0:
        srow = np.array(f["srow"], dtype=np.float64).reshape(3, 4)
        if not np.all(np.isfinite(srow)):
            raise header_error(path, "srow_x/y/z", f"(sform) holds a non-finite value {_fmt(srow.reshape(-1))}")
        m = srow[:, :3]
        s_dir = _check_axes(path, m[:, :n] if n < 3 else m, "srow_x/y/z (sform)", unit=False)
        norms = np.linalg.norm(m[:, :n], axis=0)
        if np.any(np.abs(norms - spacing[:n]) > SPACING_TOLERANCE * spacing[:n]):
            raise header_error(path, "srow_x/y/z", f"(sform) gives the spacing {_fmt(norms)} but pixdim gives "
                                                   f"{_fmt(spacing[:n])}; the header contradicts itself")
        if n < 3:
            s_dir = np.column_stack([s_dir, m[:, n:] / np.maximum(np.linalg.norm(m[:, n:], axis=0), 1e-12)])
        s_org = srow[:, 3]
    if q_dir is not None and s_dir is not None:
        if np.max(np.abs(q_dir[:, :n] - s_dir[:, :n])) > 10 * ORTHO_TOLERANCE:
            raise header_error(path, "sform/qform", "give two different orientations (srow_x/y/z vs quatern_b/c/d); "
                                                    "make them agree (e.g. nibabel: img.set_qform(img.get_sform()))")
        if np.max(np.abs(q_org - s_org)) > 1e-2 + 1e-4 * np.max(np.abs(s_org)):
            raise header_error(path, "sform/qform", f"give two different origins {_fmt(s_org)} (srow) and "
                                                    f"{_fmt(q_org)} (qoffset); make them agree")
    direction, origin = (s_dir, s_org) if s_dir is not None else (q_dir, q_org)
    if direction is not None:
        direction = _RAS_TO_LPS @ direction
        origin = _RAS_TO_LPS @ origin
    axes = max(dim[0], 1)
    if axes == 2 and direction is not None:
        plane = direction[:2, :2]
        if np.max(np.abs(plane.T @ plane - np.eye(2))) > ORTHO_TOLERANCE:
            field = "srow_x/y/z (sform)" if s_dir is not None else "quatern_b/c/d (qform)"
            raise header_error(path, field, "turns the axes of this 2D image out of the x-y plane, which a 2D image "
                                            "cannot keep; store it as a 3D image with one slice")
    names = {"spacing": "pixdim", "direction": "srow_x/y/z (sform)" if s_dir is not None else "quatern_b/c/d (qform)",
             "origin": "srow_x/y/z (sform)" if s_dir is not None else "qoffset_x/y/z (qform)"}
    k = min(axes, 3)
    return GridClaim(tuple(spacing[:k]), None if origin is None else tuple(origin[:k]),
                     None if direction is None else direction[:k, :k], names)


# ----------------------------------------------------------------------------------------- NRRD

_NRRD_TYPES = {"signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t", "short", "short int",
               "signed short", "signed short int", "int16", "int16_t", "ushort", "unsigned short",
               "unsigned short int", "uint16", "uint16_t", "int", "signed int", "int32", "int32_t", "uint",
               "unsigned int", "uint32", "uint32_t", "longlong", "long long", "long long int", "signed long long",
               "signed long long int", "int64", "int64_t", "ulonglong", "unsigned long long",
               "unsigned long long int", "uint64", "uint64_t", "float", "double"}
_NRRD_ENCODINGS = {"raw", "gzip", "gz", "ascii", "text", "txt", "bzip2", "bz2", "hex"}
_NRRD_SPACES = {"right-anterior-superior": np.diag([-1.0, -1.0, 1.0]), "ras": np.diag([-1.0, -1.0, 1.0]),
                "left-anterior-superior": np.diag([1.0, -1.0, 1.0]), "las": np.diag([1.0, -1.0, 1.0]),
                "left-posterior-superior": np.eye(3), "lps": np.eye(3)}
_VECTOR = re.compile(r"\(([^)]*)\)")


def _text_header(path: Path, limit: int = 64 * 1024) -> list[str]:
    from selfconfig.dataset.headers import _text_header as lines_of

    try:
        return lines_of(path, limit)[0]
    except OSError:
        return []


def _floats(text: str, path: Path, field: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise header_error(path, field, f"is {text.strip()!r}, not a list of numbers") from None


def _ints(text: str, path: Path, field: str) -> list[int]:
    try:
        return [int(v) for v in text.split()]
    except ValueError:
        raise header_error(path, field, f"is {text.strip()!r}, not a list of whole numbers") from None


def nrrd_claim(path: Path) -> GridClaim | None:
    lines = _text_header(path)
    if not lines or not lines[0].startswith("NRRD"):
        return None
    f: dict[str, str] = {}
    for line in lines[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        f[key.strip().lower()] = value.lstrip("=").strip()
    try:
        ndim = int(f.get("dimension", ""))
    except ValueError:
        raise header_error(path, "dimension", f"is {f.get('dimension')!r}, not a whole number") from None
    sizes = _ints(f.get("sizes", ""), path, "sizes")
    if len(sizes) != ndim:
        raise header_error(path, "sizes", f"lists {len(sizes)} sizes for dimension {ndim}")
    for i, s in enumerate(sizes):
        if s < 1:
            raise header_error(path, "sizes", f"gives axis {i} {s} voxels; every axis needs at least one")
    if f.get("type", "").lower() not in _NRRD_TYPES:
        raise header_error(path, "type", f"is {f.get('type')!r}, not a NRRD data type selfconfig reads")
    if f.get("encoding", "raw").lower() not in _NRRD_ENCODINGS:
        raise header_error(path, "encoding", f"is {f.get('encoding')!r}, not a NRRD encoding")
    space = f.get("space", "").lower()
    flip = _NRRD_SPACES.get(space, np.eye(3))
    spatial: list[int] = []
    direction = origin = None
    spacing: list[float] = []
    if "space directions" in f:
        entries = f["space directions"].split()
        if len(entries) != ndim:
            raise header_error(path, "space directions", f"lists {len(entries)} entries for dimension {ndim}")
        vectors = []
        for i, e in enumerate(entries):
            if e.lower() == "none":
                continue
            m = _VECTOR.fullmatch(e)
            if not m:
                raise header_error(path, "space directions", f"entry {i} {e!r} is not a vector (x,y,z)")
            vectors.append(_floats(m.group(1), path, "space directions"))
            spatial.append(i)
        if vectors:
            width = {len(v) for v in vectors}
            if len(width) != 1 or width.pop() not in (2, 3) or len(vectors) > 3:
                raise header_error(path, "space directions", f"holds vectors of lengths {[len(v) for v in vectors]}")
            m = np.array(vectors, dtype=np.float64).T  # columns: axes
            units = _check_axes(path, m, "space directions", unit=False)
            spacing = [float(v) for v in np.linalg.norm(m, axis=0)]
            if m.shape[0] == 3:
                direction = flip @ units
        if "space origin" in f:
            mo = _VECTOR.fullmatch(f["space origin"].strip())
            vals = _floats(mo.group(1) if mo else f["space origin"], path, "space origin")
            if not _finite(vals):
                raise header_error(path, "space origin", f"is {_fmt(vals)}, not finite")
            if len(vals) == 3:
                origin = tuple(flip @ np.array(vals))
    elif "spacings" in f:
        vals = _floats(f["spacings"], path, "spacings")
        if len(vals) != ndim:
            raise header_error(path, "spacings", f"is {f['spacings']!r}, not {ndim} numbers")
        kinds = f.get("kinds", "").split()
        for i, v in enumerate(vals):
            nonspatial = len(kinds) == ndim and kinds[i].lower() in ("vector", "rgb-color", "rgba-color", "list",
                                                                       "3-vector", "4-vector", "complex")
            if nonspatial and math.isnan(v):
                continue
            _check_spacing(path, [v], [f"spacings (axis {i})"])
            spacing.append(v)
            spatial.append(i)
    if not spatial:
        return None
    names = {"spacing": "space directions" if "space directions" in f else "spacings",
             "direction": "space directions", "origin": "space origin"}
    k = len(spacing)
    if direction is not None and direction.shape != (k, k):
        direction = None
    return GridClaim(tuple(spacing), origin if origin is None or len(origin) == k else None, direction, names)


# ------------------------------------------------------------------------------------ MetaImage

_MET_TYPES = {"MET_CHAR", "MET_UCHAR", "MET_SHORT", "MET_USHORT", "MET_INT", "MET_UINT", "MET_LONG", "MET_ULONG",
              "MET_LONG_LONG", "MET_ULONG_LONG", "MET_FLOAT", "MET_DOUBLE"}


def mha_claim(path: Path) -> GridClaim | None:
    lines = _text_header(path)
    f: dict[str, str] = {}
    names: dict[str, str] = {}
    for line in lines:
        key, eq, value = line.partition("=")
        if eq:
            f[key.strip().lower()] = value.strip()
            names[key.strip().lower()] = key.strip()
    if "ndims" not in f or "dimsize" not in f:
        return None
    ndims = _ints(f["ndims"], path, "NDims")
    if len(ndims) != 1 or not 1 <= ndims[0] <= 10:
        raise header_error(path, "NDims", f"is {f['ndims']!r}; it must be one whole number 1..10")
    n = ndims[0]
    dims = _ints(f["dimsize"], path, "DimSize")
    if len(dims) != n:
        raise header_error(path, "DimSize", f"lists {len(dims)} sizes for NDims {n}")
    for i, d in enumerate(dims):
        if d < 1:
            raise header_error(path, "DimSize", f"gives axis {i} {d} voxels; every axis needs at least one")
    if f.get("elementtype", "").upper() not in _MET_TYPES:
        raise header_error(path, "ElementType", f"is {f.get('elementtype')!r}, not a MetaImage element type")
    if "elementnumberofchannels" in f:
        ch = _ints(f["elementnumberofchannels"], path, "ElementNumberOfChannels")
        if len(ch) != 1 or ch[0] < 1:
            raise header_error(path, "ElementNumberOfChannels", f"is {f['elementnumberofchannels']!r}")
    if "headersize" in f:
        hs = _ints(f["headersize"], path, "HeaderSize")
        if len(hs) != 1 or hs[0] < -1:
            raise header_error(path, "HeaderSize", f"is {f['headersize']!r}; it must be -1 or a byte count")
    spacing = [1.0] * n
    key = "elementspacing" if "elementspacing" in f else "elementsize" if "elementsize" in f else None
    if key:
        spacing = _floats(f[key], path, names[key])
        if len(spacing) != n:
            raise header_error(path, names[key], f"lists {len(spacing)} values for NDims {n}")
        _check_spacing(path, spacing, [f"{names[key]} (axis {i})" for i in range(n)])
    origin = None
    for k in ("offset", "origin", "position"):
        if k in f:
            vals = _floats(f[k], path, names[k])
            if len(vals) != n or not _finite(vals):
                raise header_error(path, names[k], f"is {f[k]!r}; it must be {n} finite numbers")
            origin = tuple(vals)
            break
    direction = None
    for k in ("transformmatrix", "rotation", "orientation"):
        if k in f:
            vals = _floats(f[k], path, names[k])
            if len(vals) != n * n:
                raise header_error(path, names[k], f"lists {len(vals)} values; NDims {n} needs {n * n}")
            m = np.array(vals, dtype=np.float64).reshape(n, n).T  # MetaIO writes the direction column by column
            direction = _check_axes(path, m, names[k], unit=True)
            break
    return GridClaim(tuple(spacing), origin, direction,
                     {"spacing": names.get(key or "", "ElementSpacing"), "origin": "Offset", "direction": "TransformMatrix"})


# ---------------------------------------------------------------------------------------- both

def claim_for(path: Path, ending: str) -> GridClaim | None:
    """Parse and check the header of a ``.nii(.gz)``, ``.nrrd``, ``.mha`` or ``.mhd`` file;
    :class:`ImageReadError` naming the field when it is invalid or contradicts itself."""
    ending = ending.lower()
    if ending in (".nii", ".nii.gz"):
        return nifti_claim(path, ending == ".nii.gz")
    if ending == ".nrrd":
        return nrrd_claim(path)
    if ending in (".mha", ".mhd"):
        return mha_claim(path)
    return None


def check_read_geometry(path: Path, claim: GridClaim | None, spacing, origin, direction) -> None:
    """Refuse when the reader returned another grid than the header claims (a silent repair).
    ``spacing``/``origin``/``direction``: SimpleITK's, for the image's own dimension."""
    sp = np.asarray(spacing, dtype=np.float64)
    org = np.asarray(origin, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    k = sp.size
    d = d.reshape(k, k) if d.size == k * k else d
    if not (np.all(np.isfinite(sp)) and np.all(sp > 0) and np.all(np.isfinite(org)) and np.all(np.isfinite(d))):
        raise ImageReadError(f"Cannot read image {path}: the reader returned spacing {_fmt(sp)}, origin {_fmt(org)}, "
                             f"direction {_fmt(d.reshape(-1))}, not a valid grid; fix the header or export the scan "
                             "again (nothing was read)")
    if claim is None:
        return
    m = min(k, len(claim.spacing))
    want = np.asarray(claim.spacing[:m], dtype=np.float64)
    if np.any(np.abs(sp[:m] - want) > 1e-5 * np.maximum(want, 1e-6)):
        raise header_error(path, claim.fields["spacing"], f"gives the spacing {_fmt(want)} but the reader made it "
                                                          f"{_fmt(sp[:m])}")
    if claim.direction is not None and claim.direction.shape[0] >= m and d.shape == (k, k):
        if np.max(np.abs(d[:m, :m] - claim.direction[:m, :m])) > 1e-4 + ORTHO_TOLERANCE:
            raise header_error(path, claim.fields["direction"],
                               f"gives the direction {_fmt(claim.direction[:m, :m].reshape(-1))} but the reader made "
                               f"it {_fmt(d[:m, :m].reshape(-1))}")
    if claim.origin is not None and len(claim.origin) >= m:
        want_o = np.asarray(claim.origin[:m], dtype=np.float64)
        if np.any(np.abs(org[:m] - want_o) > 1e-3 + 1e-5 * np.abs(want_o)):
            raise header_error(path, claim.fields["origin"], f"gives the origin {_fmt(want_o)} but the reader made it "
                                                             f"{_fmt(org[:m])}")


# ------------------------------------------------------------------------------------------ PNG

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path: Path) -> None:
    """Every chunk's CRC, and the whole zlib stream of the image data (its Adler-32 included).

    Pillow checks neither for the image data: it stops inflating as soon as it has the pixels
    the header asks for, so a damaged IDAT chunk (a flipped byte in a stored block, a wrong
    checksum) would be read as pixels that are not the file's. Inflating costs one extra pass
    over the data, with one chunk of output in memory at a time.
    """
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:8] != _PNG_SIGNATURE:
        return  # not a PNG: Pillow names what it is not
    pos, inflater, ended, inflated, need = 8, zlib.decompressobj(), False, 0, None
    palette_needed = palette_seen = False
    while pos + 8 <= len(blob):
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        kind = blob[pos + 4:pos + 8]
        name = kind.decode("latin-1")
        end = pos + 12 + length
        if end > len(blob):
            raise ImageReadError(f"Cannot read image {path}: chunk {name} claims {length} bytes and the file ends "
                                 f"before them; the file is truncated (nothing was read)")
        crc = struct.unpack(">I", blob[end - 4:end])[0]
        if zlib.crc32(blob[pos + 4:end - 4]) & 0xFFFFFFFF != crc:
            raise ImageReadError(f"Cannot read image {path}: chunk {name} fails its CRC check; the file is damaged "
                                 f"(nothing was read)")
        if kind == b"IHDR" and length == 13:
            ihdr = struct.unpack(">IIBBBBB", blob[pos + 8:pos + 21])
            _check_ihdr(path, *ihdr)
            need = _png_data_bytes(*ihdr)
            palette_needed = ihdr[3] == 3
        if kind == b"PLTE":
            palette_seen = True
        if kind == b"IDAT" and palette_needed and not palette_seen:
            raise header_error(path, "PLTE", "is missing, and IHDR colour type 3 (palette) needs it before the image "
                                             "data; Pillow would make up a palette")
        if kind == b"IDAT":
            try:
                data = blob[pos + 8:end - 4]
                while data:
                    inflated += len(inflater.decompress(data, 1 << 20))
                    data = inflater.unconsumed_tail
            except zlib.error as e:
                raise ImageReadError(f"Cannot read image {path}: the compressed image data (IDAT) are damaged ({e}) "
                                     f"(nothing was read)") from None
        pos = end
        if kind == b"IEND":
            ended = True
            break
    if not ended:
        raise ImageReadError(f"Cannot read image {path}: the file ends before its IEND chunk; it is truncated "
                             f"(nothing was read)")
    if not inflater.eof:
        raise ImageReadError(f"Cannot read image {path}: the compressed image data (IDAT) end before their end "
                             f"marker and checksum; the file is truncated or damaged (nothing was read)")
    if need is not None and inflated < need:
        raise ImageReadError(f"Cannot read image {path}: its header (IHDR width, height, bit depth, colour type) "
                             f"needs {need} bytes of image data and the file holds {inflated}; Pillow would make up "
                             f"the rest (nothing was read)")


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _check_ihdr(path: Path, width: int, height: int, depth: int, ctype: int, comp: int, filt: int,
                interlace: int) -> None:
    """The PNG specification's IHDR rules (Pillow reads an unknown interlace method as none)."""
    problems = [("width", width, width >= 1), ("height", height, height >= 1),
                ("colour type", ctype, ctype in _PNG_DEPTHS),
                ("bit depth", depth, depth in _PNG_DEPTHS.get(ctype, (depth,))),
                ("compression method", comp, comp == 0), ("filter method", filt, filt == 0),
                ("interlace method", interlace, interlace in (0, 1))]
    for name, value, ok in problems:
        if not ok:
            raise header_error(path, f"IHDR {name}", f"is {value}, which the PNG specification does not allow"
                                                     + (f" with colour type {ctype}" if name == "bit depth" else ""))
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_data_bytes(width: int, height: int, depth: int, ctype: int, _comp: int, _filt: int,
                    interlace: int) -> int | None:
    """The inflated size of the image data an IHDR asks for (filter byte per row); None when
    the IHDR is not valid (Pillow refuses it)."""
    if ctype not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16) or interlace not in (0, 1):
        return None
    bits = _PNG_CHANNELS[ctype] * depth
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if w > 0 and h > 0:
            total += h * (1 + -(-w * bits // 8))
    return total


# ----------------------------------------------------------------------------------------- TIFF

_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}


def check_tiff(path: Path) -> None:
    """The first image's size and strips, for uncompressed strips: Pillow reads past a strip that
    is shorter than the image it claims (the bytes after it, or zeros) instead of refusing."""
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:4] not in (b"II*\0", b"MM\0*") or len(blob) < 8:
        return  # BigTIFF or not a TIFF: Pillow names what it is
    e = "<" if blob[:2] == b"II" else ">"
    (ifd,) = struct.unpack(e + "I", blob[4:8])
    if ifd + 2 > len(blob):
        raise ImageReadError(f"Cannot read image {path}: its first directory (IFD) lies at byte {ifd}, past the end "
                             f"of the file ({len(blob)} bytes); the file is truncated (nothing was read)")
    (n,) = struct.unpack(e + "H", blob[ifd:ifd + 2])
    if ifd + 2 + 12 * n > len(blob):
        raise ImageReadError(f"Cannot read image {path}: its directory (IFD) runs past the end of the file; the "
                             f"file is truncated (nothing was read)")
    tags: dict[int, list[int]] = {}
    for k in range(n):
        tag, typ, count = struct.unpack(e + "HHI", blob[ifd + 2 + 12 * k:ifd + 10 + 12 * k])
        code = _TIFF_TYPES.get(typ)
        if code is None or count > 1 << 20:
            continue
        size = struct.calcsize(code) * count
        at = ifd + 10 + 12 * k
        if size > 4:
            (at,) = struct.unpack(e + "I", blob[at:at + 4])
        if at + size > len(blob):
            raise ImageReadError(f"Cannot read image {path}: the values of TIFF tag {tag} lie past the end of the "
                                 f"file; the file is truncated (nothing was read)")
        tags[tag] = list(struct.unpack(e + code * count, blob[at:at + size]))
    for tag, name in ((256, "ImageWidth"), (257, "ImageLength")):
        if tag in tags and tags[tag][0] < 1:
            raise header_error(path, name, f"is {tags[tag][0]}; an image needs at least one row and one column")
    if tags.get(259, [1])[0] != 1 or 273 not in tags or 279 not in tags or 322 in tags:
        return  # compressed or tiled: the decoder checks its own stream
    width, height = tags.get(256, [0])[0], tags.get(257, [0])[0]
    spp = tags.get(277, [1])[0]
    bits = tags.get(258, [1])
    planar = tags.get(284, [1])[0]
    if planar != 1 or spp < 1 or not bits:
        return
    need = -(-width * spp * bits[0] // 8) * height
    offsets, counts = tags[273], tags[279]
    if len(offsets) != len(counts):
        raise header_error(path, "StripOffsets/StripByteCounts", f"list {len(offsets)} and {len(counts)} strips")
    for off, cnt in zip(offsets, counts):
        if off + cnt > len(blob):
            raise ImageReadError(f"Cannot read image {path}: a strip (StripOffsets {off}, StripByteCounts {cnt}) "
                                 f"runs past the end of the file ({len(blob)} bytes); the file is truncated "
                                 f"(nothing was read)")
    if sum(counts) < need:
        raise header_error(path, "StripByteCounts", f"gives {sum(counts)} bytes of pixels, and ImageWidth x "
                                                    f"ImageLength x SamplesPerPixel x BitsPerSample ({width} x "
                                                    f"{height} x {spp} x {bits[0]}) need {need}")
