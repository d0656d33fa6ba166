"""Header fuzzing of the 3D readers (NIfTI, NRRD, MetaImage): a valid header, mutated one to three
times (zero, negative, NaN, infinite and huge spacings; zero-length, parallel, sheared and NaN
directions; dimensions that disagree with the payload; wrong data types; truncated files), must be
read exactly as it claims or refused in one line naming the file and a wrong field
(tests/dataset/fuzz_support.py). The oracle is written from the formats' specifications and,
for NIfTI orientation, nibabel; never from selfconfig's own parser."""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib

import nibabel as nib
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from selfconfig.dataset.io import read_image

from .fuzz_support import FUZZ, Expect, check_read

LPS = np.diag([-1.0, -1.0, 1.0])
BAD_SPACINGS = [0.0, -0.0, -1.5, -1e30, float("nan"), float("inf"), float("-inf")]
ODD_GOOD_SPACINGS = [1e-6, 1e6, 1e30, 0.123456]
NUMPY_OF = {2: "u1", 4: "<i2", 8: "<i4", 16: "<f4", 64: "<f8", 256: "i1", 512: "<u2", 768: "<u4"}
BITS = {2: 8, 4: 16, 8: 32, 16: 32, 64: 64, 256: 8, 512: 16, 768: 32}


def rotation(draw) -> np.ndarray:
    q = np.array(draw(st.lists(st.floats(-1, 1), min_size=4, max_size=4)))
    if np.linalg.norm(q) < 0.1:
        q = np.array([1.0, 0, 0, 0])
    a, b, c, d = q / np.linalg.norm(q) * (1 if q[0] >= 0 else -1)
    return np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                     [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                     [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]])


def payload(draw, n: int, dtype: str) -> np.ndarray:
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).integers(0, 100, size=n)
    return values.astype(dtype)


TRUNCATED = ("truncated", "short", "header lies", "corrupt", "cannot read", "claims")


def _inflates_to(blob: bytes) -> int:
    try:
        return len(zlib.decompressobj(47).decompress(blob))
    except zlib.error:
        return -1


def truncate(draw, data: bytes, expect: Expect, keep_at_least: int = 0, stream_from: int | None = None,
             stream_size: int = 0, needed_end: int | None = None, judge: bool = True) -> bytes:
    """Cut the file short one time in ten. ``stream_from``: the data are a gzip/zlib stream from
    that byte on, ``stream_size`` bytes inflated; a cut that still inflates to all of them (only
    the end of the stream or its checksum lost) may be read or refused. ``needed_end``: raw data
    whose claim ends there; a cut after it loses nothing the header claims. ``judge=False``: the
    caller's oracle judges the cut file itself."""
    if draw(st.sampled_from([False] * 9 + [True])):
        cut = draw(st.integers(keep_at_least, max(keep_at_least, len(data) - 1)))
        if not judge or (needed_end is not None and cut >= needed_end):
            return data[:cut]
        if stream_from is not None and _inflates_to(data[stream_from:cut]) >= stream_size:
            expect.maybe["stream end"] = TRUNCATED
            return data[:cut]
        expect.bad("truncated", "truncated", "short", "header lies", "corrupt", "cannot read", "claims")
        return data[:cut]
    return data


# ---------------------------------------------------------------------------------------- NIfTI

def nifti_bytes(h: dict) -> bytes:
    b = bytearray(348)
    struct.pack_into("<i", b, 0, 348)
    struct.pack_into("<8h", b, 40, *h["dim"])
    struct.pack_into("<hh", b, 70, h["datatype"], h["bitpix"])
    struct.pack_into("<8f", b, 76, *h["pixdim"])
    struct.pack_into("<f", b, 108, h["vox_offset"])
    struct.pack_into("<2f", b, 112, *h["scl"])
    struct.pack_into("<hh", b, 252, h["qform_code"], h["sform_code"])
    struct.pack_into("<6f", b, 256, *h["quatern"], *h["qoffset"])
    struct.pack_into("<12f", b, 280, *np.asarray(h["srow"], dtype=np.float64).reshape(-1))
    b[344:348] = b"n+1\0"
    return bytes(b)


def f32(v: float) -> float:
    return float(np.float32(v)) if math.isfinite(v) and abs(v) < 3e38 else (v if not math.isfinite(v) else math.inf)


@st.composite
def nifti_cases(draw):
    nx, ny, nz = (draw(st.integers(1, 4)) for _ in range(3))
    datatype = draw(st.sampled_from(sorted(NUMPY_OF)))
    spacing = [draw(st.floats(0.3, 5.0)) for _ in range(3)]
    r = rotation(draw)
    qfac = draw(st.sampled_from([1.0, -1.0]))
    if qfac < 0:
        r[:, 2] *= -1
    offset = [draw(st.floats(-200, 200)) for _ in range(3)]
    img = nib.Nifti1Image(np.zeros((1, 1, 1), np.int16), np.eye(4))
    aff = np.eye(4)
    aff[:3, :3] = r * spacing
    aff[:3, 3] = offset
    hdr = img.header
    hdr.set_qform(aff, code=1)  # nibabel works out the quaternion
    h = {"dim": [3, nx, ny, nz, 1, 1, 1, 1], "datatype": datatype, "bitpix": BITS[datatype],
         "pixdim": [float(v) for v in hdr["pixdim"]], "vox_offset": 352.0, "scl": [1.0, 0.0],
         "qform_code": 1, "sform_code": draw(st.sampled_from([0, 1, 2])),
         "quatern": [float(hdr["quatern_b"]), float(hdr["quatern_c"]), float(hdr["quatern_d"])],
         "qoffset": [float(hdr["qoffset_x"]), float(hdr["qoffset_y"]), float(hdr["qoffset_z"])],
         "srow": [list(aff[0]), list(aff[1]), list(aff[2])]}
    values = payload(draw, nx * ny * nz, NUMPY_OF[datatype])
    pad = b""
    expect = Expect()
    for kind in draw(st.lists(st.sampled_from(["spacing", "spacing_both", "srow_axis", "srow_shear", "quatern",
                                               "qoffset", "dims", "dim0", "datatype", "bitpix", "vox_offset",
                                               "scl", "codes", "sform_disagrees"]), max_size=3)):
        i = draw(st.integers(1, 3))
        if kind == "spacing":
            h["pixdim"][i] = draw(st.sampled_from(BAD_SPACINGS + ODD_GOOD_SPACINGS))
        elif kind == "spacing_both":  # pixdim and sform scaled together: valid unless the value is
            v = draw(st.sampled_from(BAD_SPACINGS + ODD_GOOD_SPACINGS))
            h["pixdim"][i] = v
            col = np.array([row[i - 1] for row in h["srow"]])
            col = col / np.linalg.norm(col) * (v if math.isfinite(v) else 1.0)
            for k in range(3):
                h["srow"][k][i - 1] = float(col[k]) if math.isfinite(v) else v
        elif kind == "srow_axis":
            val = draw(st.sampled_from([0.0, float("nan"), float("inf")]))
            for k in range(3):
                h["srow"][k][i - 1] = val
            h["sform_code"] = max(h["sform_code"], 1)
        elif kind == "srow_shear":
            j = i % 3
            col = np.array([row[j] for row in h["srow"]]) + draw(st.sampled_from([0.3, 1.0, -2.0])) * \
                np.array([row[i - 1] for row in h["srow"]])
            for k in range(3):
                h["srow"][k][j] = float(col[k])
            h["sform_code"] = max(h["sform_code"], 1)
        elif kind == "quatern":
            h["quatern"][i - 1] = draw(st.sampled_from([float("nan"), 1.5, -3.0, float("inf")]))
        elif kind == "qoffset":
            h["qoffset"][i - 1] = draw(st.sampled_from([float("nan"), float("inf"), 1e30]))
        elif kind == "dims":
            h["dim"][i] = draw(st.sampled_from([0, -1, h["dim"][i] + 1, max(1, h["dim"][i] - 1), 30000]))
        elif kind == "dim0":
            h["dim"][0] = draw(st.sampled_from([0, -3, 8, 2, 4]))
        elif kind == "datatype":
            new = draw(st.sampled_from(sorted(NUMPY_OF) + [0, 3, 17, 9999]))
            h["datatype"] = new
            if draw(st.booleans()) and new in BITS:
                h["bitpix"] = BITS[new]
        elif kind == "bitpix":
            h["bitpix"] = draw(st.sampled_from([0, 1, 8, 16, 32, 64, 12]))
        elif kind == "vox_offset":
            v = draw(st.sampled_from([0.0, 348.0, 351.0, float("nan"), 352.5, 368.0, 1e9]))
            h["vox_offset"] = v
            if v == 368.0:
                pad = b"\0" * 16
        elif kind == "scl":
            h["scl"][draw(st.integers(0, 1))] = draw(st.sampled_from([float("nan"), float("inf"), 2.0, 0.0]))
        elif kind == "codes":
            h["qform_code"] = draw(st.sampled_from([0, 1, 4]))
            h["sform_code"] = draw(st.sampled_from([0, 1, 4]))
        elif kind == "sform_disagrees":
            h["srow"][0][3] += draw(st.sampled_from([5.0, -40.0]))
            h["sform_code"] = 1
    data = nifti_bytes(h) + b"\0" * 4 + pad + values.tobytes()
    data = truncate(draw, data, expect, judge=False)  # nifti_oracle judges the length itself
    compressed = draw(st.booleans())
    return h, data, compressed, expect


def nifti_oracle(h: dict, data: bytes, expect: Expect) -> None:
    """The specification's rules, written out; for a valid header what a read must return."""
    if len(data) < 352:
        expect.bad("truncated", "truncated", "claims", "header lies", "cannot read", "short")
        return
    dim, pix = h["dim"], [f32(v) for v in h["pixdim"]]
    nd = dim[0]
    if not 1 <= nd <= 7:
        expect.bad("dim[0]", "dim[0]")
        return
    if any(d < 1 for d in dim[1:nd + 1]):
        expect.bad("dim", "dim[")
    if h["datatype"] not in BITS:
        expect.bad("datatype")
    elif h["bitpix"] != BITS[h["datatype"]]:
        expect.bad("bitpix")
    off = f32(h["vox_offset"])
    if not math.isfinite(off) or off != int(off) or off < 352:
        expect.bad("vox_offset")
    if "dim" not in expect.problems and h["datatype"] in BITS:  # the size claim is checked before the fields
        nvox = int(np.prod([max(d, 1) for d in dim[1:nd + 1]]))
        start = max(int(off) if math.isfinite(off) else 0, 352)
        if len(data) < start + nvox * BITS[h["datatype"]] // 8:
            expect.bad("truncated", "truncated", "claims", "header lies", "cannot read")
    if not all(math.isfinite(f32(v)) for v in h["scl"]) or (f32(h["scl"][0]) == 0 and f32(h["scl"][1]) != 0):
        expect.bad("scl", "scl_slope", "scl_inter")
    n = min(nd, 3)
    if any(not math.isfinite(v) or v <= 0 for v in pix[1:n + 1]):
        expect.bad("pixdim", "pixdim[")
    q = None
    if h["qform_code"] > 0:
        b, c, d = (f32(v) for v in h["quatern"])
        if not all(math.isfinite(v) for v in (b, c, d)) or b * b + c * c + d * d > 1 + 1e-4:
            expect.bad("quatern", "quatern")
        elif not all(math.isfinite(f32(v)) for v in h["qoffset"]):
            expect.bad("qoffset", "qoffset")
    s = None
    if h["sform_code"] > 0:
        m = np.array([[f32(v) for v in row] for row in h["srow"]])
        if not np.all(np.isfinite(m)):
            expect.bad("srow", "srow")
        else:
            cols = m[:, :n]
            norms = np.linalg.norm(cols, axis=0)
            if np.any(norms < 1e-12):
                expect.bad("srow", "srow")
            else:
                u = m[:, :3] / np.maximum(np.linalg.norm(m[:, :3], axis=0), 1e-30)
                if np.max(np.abs(u[:, :n].T @ u[:, :n] - np.eye(n))) > 1e-3:
                    expect.bad("srow", "srow")
                elif not expect.problems.get("pixdim") and np.any(
                        np.abs(norms - np.array(pix[1:n + 1])) > 1e-3 * np.array(pix[1:n + 1])):
                    expect.bad("srow", "srow", "pixdim")
                else:
                    s = m
    if expect.problems:
        expect.bad("any", "pixdim", "srow", "dim", "datatype", "bitpix", "vox_offset", "scl", "quatern", "qoffset",
                   "sform", "truncated", "claims")
        return
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(nifti_bytes(h) + b"\0" * 4), check=False)
    if h["qform_code"] > 0:
        q = hdr.get_qform()
    if s is not None and q is not None:
        if np.max(np.abs(q[:3, :3] / np.linalg.norm(q[:3, :3], axis=0) - s[:, :3] / np.linalg.norm(s[:, :3], axis=0))
                  ) > 1e-2 or np.max(np.abs(q[:3, 3] - s[:, 3])) > 1e-2 + 1e-4 * np.max(np.abs(s[:, 3])):
            expect.bad("sform/qform", "sform/qform", "srow", "qoffset")
            return
    aff = s if s is not None else (q[:3] if q is not None else None)
    if nd == 2 and aff is not None:  # a 2D image keeps its axes in the x-y plane, or is refused
        m = LPS @ np.asarray(aff)[:, :3]
        plane = (m / np.linalg.norm(m, axis=0))[:2, :2]
        if np.max(np.abs(plane.T @ plane - np.eye(2))) > 1e-3:
            expect.bad("2D orientation", "srow", "quatern")
            return
    itemsize = BITS[h["datatype"]] // 8
    nvox = int(np.prod([max(d, 1) for d in dim[1:nd + 1]]))
    start = int(off)
    if len(data) < start + nvox * itemsize:
        expect.bad("truncated", "truncated", "claims", "header lies", "cannot read")
        return
    raw = np.frombuffer(data[start:start + nvox * itemsize], dtype=NUMPY_OF[h["datatype"]]).astype(np.float64)
    slope, inter = (f32(v) for v in h["scl"])
    if slope != 0 and (slope, inter) != (1.0, 0.0):
        raw = raw * slope + inter
    if nd <= 3:
        shape = [max(d, 1) for d in dim[1:4]] + [1] * (3 - min(nd, 3))
        expect.array = raw.reshape(shape[::-1])[None] if nd == 3 else raw.reshape(1, 1, *shape[:2][::-1]) \
            if nd == 2 else raw.reshape(1, 1, 1, shape[0])
    else:
        expect.array = None  # 4D+: the extra axes become channels; the array is not compared here
    if nd >= 3:
        expect.spacing = (pix[3], pix[2], pix[1])
        if aff is not None:
            m = LPS @ np.asarray(aff)[:, :3]
            expect.direction = m / np.linalg.norm(m, axis=0)
            expect.origin = tuple(LPS @ np.asarray(aff)[:, 3])
        else:
            expect.direction, expect.origin = np.eye(3), (0.0, 0.0, 0.0)
    else:
        expect.spacing = None
    if nd == 1:
        expect.array = None


@FUZZ
@given(nifti_cases())
def test_nifti_headers(tmp_path_factory, case):
    h, data, compressed, expect = case
    folder = tmp_path_factory.mktemp("nii")
    path = folder / ("case.nii.gz" if compressed else "case.nii")
    path.write_bytes(gzip.compress(data, mtime=0) if compressed else data)
    if "truncated" not in expect.problems:
        nifti_oracle(h, data, expect)
    check_read("nifti", read_image, path, expect)


# ----------------------------------------------------------------------------------------- NRRD

NRRD_TYPES = {"short": "<i2", "unsigned char": "u1", "float": "<f4", "int": "<i4", "double": "<f8"}


def fmt(v: float) -> str:
    return repr(float(v))


@st.composite
def nrrd_cases(draw):
    sizes = [draw(st.integers(1, 4)) for _ in range(3)]
    typ = draw(st.sampled_from(sorted(NRRD_TYPES)))
    r = rotation(draw)
    spacing = [draw(st.floats(0.3, 5.0)) for _ in range(3)]
    vecs = [list(r[:, i] * spacing[i]) for i in range(3)]
    origin = [draw(st.floats(-200, 200)) for _ in range(3)]
    space = draw(st.sampled_from(["left-posterior-superior", "right-anterior-superior", "left-anterior-superior"]))
    encoding = draw(st.sampled_from(["raw", "gzip"]))
    values = payload(draw, int(np.prod(sizes)), NRRD_TYPES[typ])
    expect = Expect()
    use_spacings = draw(st.integers(0, 5)) == 0
    spacings = list(spacing)
    for kind in draw(st.lists(st.sampled_from(["zero", "nan", "parallel", "shear", "huge", "origin", "sizes",
                                               "type", "spacings"]), max_size=3)):
        i = draw(st.integers(0, 2))
        if kind == "zero":
            vecs[i] = [0.0, 0.0, 0.0]
        elif kind == "nan":
            vecs[i][draw(st.integers(0, 2))] = draw(st.sampled_from([float("nan"), float("inf")]))
        elif kind == "parallel":
            vecs[i] = [v * 2 for v in vecs[(i + 1) % 3]]
        elif kind == "shear":
            vecs[i] = [a + 0.5 * b for a, b in zip(vecs[i], vecs[(i + 1) % 3])]
        elif kind == "huge":
            scale = draw(st.sampled_from([1e30, 1e-6, 1e6]))
            vecs[i] = [v * scale for v in vecs[i]]
        elif kind == "origin":
            origin[i] = draw(st.sampled_from([float("nan"), float("inf"), 1e30]))
        elif kind == "sizes":
            sizes[i] = draw(st.sampled_from([0, sizes[i] + 1, max(1, sizes[i] - 1)]))
        elif kind == "type":
            typ = draw(st.sampled_from(sorted(NRRD_TYPES) + ["complex", "bogus"]))
        elif kind == "spacings":
            use_spacings = True
            spacings[i] = draw(st.sampled_from(BAD_SPACINGS + ODD_GOOD_SPACINGS))
    head = f"NRRD0004\ntype: {typ}\ndimension: 3\nsizes: {' '.join(map(str, sizes))}\nencoding: {encoding}\n" \
           f"endian: little\n"
    if use_spacings:
        head += f"spacings: {' '.join(fmt(v) for v in spacings)}\n"
    else:
        head += f"space: {space}\nspace directions: {' '.join('(' + ','.join(fmt(v) for v in vec) + ')' for vec in vecs)}\n" \
                f"space origin: ({','.join(fmt(v) for v in origin)})\n"
    body = values.tobytes()
    data = head.encode() + b"\n" + (gzip.compress(body, mtime=0) if encoding == "gzip" else body)
    item = np.dtype(NRRD_TYPES[typ]).itemsize if typ in NRRD_TYPES else 1
    data = truncate(draw, data, expect, keep_at_least=len(head) + 1,
                    stream_from=len(head) + 1 if encoding == "gzip" else None,
                    stream_size=min(len(body), int(np.prod([max(v, 0) for v in sizes])) * item),
                    needed_end=len(head) + 1 + int(np.prod([max(v, 0) for v in sizes])) * item
                    if encoding == "raw" else None)
    if expect.problems:
        return data, expect
    # the oracle
    if typ not in NRRD_TYPES:
        expect.bad("type")
    if any(s < 1 for s in sizes):
        expect.bad("sizes")
    elif typ in NRRD_TYPES and len(body) < int(np.prod(sizes)) * np.dtype(NRRD_TYPES[typ]).itemsize:
        expect.bad("payload", "truncated", "claims", "header lies", "cannot read")
    flip = {"left-posterior-superior": np.eye(3), "right-anterior-superior": LPS,
            "left-anterior-superior": np.diag([1.0, -1.0, 1.0])}[space]
    if use_spacings:
        if any(not math.isfinite(v) or v <= 0 for v in spacings):
            expect.bad("spacings")
        sp, direction, org = spacings, np.eye(3), (0.0, 0.0, 0.0)
    else:
        m = np.array(vecs).T
        norms = np.linalg.norm(m, axis=0) if np.all(np.isfinite(m)) else None
        if norms is None or np.any(norms < 1e-12):
            expect.bad("space directions")
        else:
            u = m / norms
            if np.max(np.abs(u.T @ u - np.eye(3))) > 1e-3:
                expect.bad("space directions")
        if not all(math.isfinite(v) for v in origin):
            expect.bad("space origin")
        if expect.problems:
            return data, expect
        sp, direction, org = list(norms), flip @ (m / norms), tuple(flip @ np.array(origin))
    if expect.problems:
        return data, expect
    n = int(np.prod(sizes))
    if len(body) < n * np.dtype(NRRD_TYPES[typ]).itemsize:
        expect.bad("payload", "truncated", "claims", "header lies", "cannot read")
        return data, expect
    expect.array = np.frombuffer(body[:n * np.dtype(NRRD_TYPES[typ]).itemsize],
                                 NRRD_TYPES[typ]).astype(np.float64).reshape(sizes[::-1])[None]
    expect.spacing, expect.direction, expect.origin = (sp[2], sp[1], sp[0]), direction, org
    return data, expect


@FUZZ
@given(nrrd_cases())
def test_nrrd_headers(tmp_path_factory, case):
    data, expect = case
    path = tmp_path_factory.mktemp("nrrd") / "case.nrrd"
    path.write_bytes(data)
    check_read("nrrd", read_image, path, expect)


# ------------------------------------------------------------------------------------ MetaImage

MET_TYPES = {"MET_SHORT": "<i2", "MET_UCHAR": "u1", "MET_FLOAT": "<f4", "MET_INT": "<i4", "MET_DOUBLE": "<f8"}


@st.composite
def mha_cases(draw):
    dims = [draw(st.integers(1, 4)) for _ in range(3)]
    typ = draw(st.sampled_from(sorted(MET_TYPES)))
    r = rotation(draw)
    spacing = [draw(st.floats(0.3, 5.0)) for _ in range(3)]
    offset = [draw(st.floats(-200, 200)) for _ in range(3)]
    matrix = [float(v) for v in r.T.reshape(-1)]  # column by column
    compressed = draw(st.booleans())
    detached = draw(st.integers(0, 4)) == 0
    values = payload(draw, int(np.prod(dims)), MET_TYPES[typ])
    expect = Expect()
    for kind in draw(st.lists(st.sampled_from(["spacing", "matrix_zero", "matrix_nan", "matrix_parallel",
                                               "matrix_shear", "matrix_scaled", "offset", "dims", "type", "ndims"]),
                              max_size=3)):
        i = draw(st.integers(0, 2))
        if kind == "spacing":
            spacing[i] = draw(st.sampled_from(BAD_SPACINGS + ODD_GOOD_SPACINGS))
        elif kind == "matrix_zero":
            matrix[3 * i:3 * i + 3] = [0.0, 0.0, 0.0]
        elif kind == "matrix_nan":
            matrix[3 * i] = float("nan")
        elif kind == "matrix_parallel":
            j = (i + 1) % 3
            matrix[3 * i:3 * i + 3] = matrix[3 * j:3 * j + 3]
        elif kind == "matrix_shear":
            j = (i + 1) % 3
            c = np.array(matrix[3 * i:3 * i + 3]) + 0.5 * np.array(matrix[3 * j:3 * j + 3])
            matrix[3 * i:3 * i + 3] = list(c / np.linalg.norm(c)) if np.linalg.norm(c) > 0 else [0, 0, 0]
        elif kind == "matrix_scaled":
            matrix[3 * i:3 * i + 3] = [v * 2 for v in matrix[3 * i:3 * i + 3]]
        elif kind == "offset":
            offset[i] = draw(st.sampled_from([float("nan"), float("inf"), 1e30]))
        elif kind == "dims":
            dims[i] = draw(st.sampled_from([0, dims[i] + 1, max(1, dims[i] - 1)]))
        elif kind == "type":
            typ = draw(st.sampled_from(sorted(MET_TYPES) + ["MET_BOGUS"]))
        elif kind == "ndims":
            expect.bad("NDims", "NDims", "DimSize", "ElementSpacing", "Offset", "TransformMatrix")
    ndims = 3 if "NDims" not in expect.problems else draw(st.sampled_from([2, 4]))
    body = values.tobytes()
    stored = zlib.compress(body) if compressed else body
    head = (f"ObjectType = Image\nNDims = {ndims}\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
            f"CompressedData = {'True' if compressed else 'False'}\n"
            + (f"CompressedDataSize = {len(stored)}\n" if compressed else "")
            + f"TransformMatrix = {' '.join(fmt(v) for v in matrix)}\nOffset = {' '.join(fmt(v) for v in offset)}\n"
            f"ElementSpacing = {' '.join(fmt(v) for v in spacing)}\nDimSize = {' '.join(map(str, dims))}\n"
            f"ElementType = {typ}\n")
    if expect.problems:
        return head, stored, detached, expect
    if typ not in MET_TYPES:
        expect.bad("ElementType")
    if any(d < 1 for d in dims):
        expect.bad("DimSize")
    elif typ in MET_TYPES and len(body) < int(np.prod(dims)) * np.dtype(MET_TYPES[typ]).itemsize:
        expect.bad("payload", "truncated", "claims", "header lies", "cannot read", "corrupt")
    if any(not math.isfinite(v) or v <= 0 for v in spacing):
        expect.bad("ElementSpacing")
    if not all(math.isfinite(v) for v in offset):
        expect.bad("Offset")
    m = np.array(matrix).reshape(3, 3).T
    if not np.all(np.isfinite(m)) or np.any(np.abs(np.linalg.norm(m, axis=0) - 1) > 1e-3) or \
            np.max(np.abs(m.T @ m - np.eye(3))) > 1e-3:
        expect.bad("TransformMatrix")
    if expect.problems:
        return head, stored, detached, expect
    n = int(np.prod(dims))
    if len(body) < n * np.dtype(MET_TYPES[typ]).itemsize:
        expect.bad("payload", "truncated", "claims", "header lies", "cannot read", "corrupt")
        return head, stored, detached, expect
    expect.array = np.frombuffer(body[:n * np.dtype(MET_TYPES[typ]).itemsize],
                                 MET_TYPES[typ]).astype(np.float64).reshape(dims[::-1])[None]
    expect.spacing, expect.direction, expect.origin = (spacing[2], spacing[1], spacing[0]), m, tuple(offset)
    return head, stored, detached, expect


@FUZZ
@given(mha_cases(), st.data())
def test_metaimage_headers(tmp_path_factory, case, data):
    head, stored, detached, expect = case
    compressed = "CompressedData = True" in head
    body = zlib.decompress(stored) if compressed else stored
    dims = [int(v) for v in head.split("DimSize = ")[1].split("\n")[0].split()]
    typ = head.split("ElementType = ")[1].split("\n")[0]
    need = int(np.prod([max(v, 0) for v in dims])) * (np.dtype(MET_TYPES[typ]).itemsize if typ in MET_TYPES else 1)
    folder = tmp_path_factory.mktemp("mha")
    if detached:
        path = folder / "case.mhd"
        (folder / "case.raw").write_bytes(truncate(data.draw, stored, expect, stream_from=0 if compressed else None,
                                                   stream_size=min(len(body), need),
                                                   needed_end=None if compressed else need))
        path.write_text(head + "ElementDataFile = case.raw\n")
    else:
        path = folder / "case.mha"
        blob = (head + "ElementDataFile = LOCAL\n").encode()
        path.write_bytes(truncate(data.draw, blob + stored, expect, keep_at_least=len(blob),
                                  stream_from=len(blob) if compressed else None, stream_size=min(len(body), need),
                                  needed_end=None if compressed else len(blob) + need))
    check_read("metaimage", read_image, path, expect)
