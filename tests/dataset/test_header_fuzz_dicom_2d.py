"""Header fuzzing of the DICOM series reader and the 2D readers (PNG, TIFF): valid files, mutated
one to three times, must be read exactly as they claim or refused in one line naming the file
and a wrong field (tests/dataset/fuzz_support.py). The oracles follow DICOM PS3.3 (the image
plane and pixel modules), the PNG specification (with a small reference decoder written here)
and TIFF 6.0 baseline."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from selfconfig.dataset.io import read_image

from .fuzz_support import FUZZ, Expect, check_claimed_size_only, check_read
from .test_header_fuzz import BAD_SPACINGS, ODD_GOOD_SPACINGS, rotation

TRUNCATED = ("truncated", "cannot read", "pixeldata", "pixel data", "claims")


# ---------------------------------------------------------------------------------------- DICOM

def dicom_dataset(pixels: np.ndarray, position, orientation, spacing, thickness, instance: int, uid: str):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"{uid}.{instance}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = uid
    ds.StudyInstanceUID = uid + ".9"
    ds.Modality = "CT"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in spacing]
    if thickness is not None:
        ds.SliceThickness = thickness
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, -10.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = pixels.astype("<i2").tobytes()
    return ds


def ds_value(v):
    """A DS (decimal string) value pydicom stores without complaint, NaN and Inf included."""
    from pydicom.valuerep import DSfloat

    return DSfloat(v, auto_format=True) if math.isfinite(v) else DSfloat(v)


@st.composite
def dicom_cases(draw):
    import warnings

    n = draw(st.sampled_from([1, 3]))
    rows, cols = draw(st.integers(2, 5)), draw(st.integers(2, 5))
    r = rotation(draw)
    row, col = r[:, 0], r[:, 1]
    spacing = [draw(st.floats(0.3, 3.0)), draw(st.floats(0.3, 3.0))]
    dz = draw(st.floats(0.5, 4.0))
    thickness = draw(st.sampled_from([None, 2.0]))
    origin = np.array([draw(st.floats(-100, 100)) for _ in range(3)])
    seed = draw(st.integers(0, 2**16))
    pixels = [np.random.default_rng(seed + k).integers(-500, 500, size=(rows, cols)) for k in range(n)]
    normal = np.cross(row, col)
    sets = [dicom_dataset(pixels[k], origin + k * dz * normal, list(row) + list(col), spacing, thickness, k + 1,
                          f"1.2.3.{seed}") for k in range(n)]
    expect = Expect()
    victim = draw(st.integers(0, n - 1))
    ds = sets[victim]
    slope = 1.0
    kind_list = draw(st.lists(st.sampled_from(["PixelSpacing", "PixelSpacing_count", "no_PixelSpacing",
                                               "IOP_degenerate", "IOP_scaled", "IOP_shear", "IOP_nan", "IPP_nan",
                                               "IPP_same", "SliceThickness", "Rows", "Columns", "BitsAllocated",
                                               "BitsStored", "PixelRepresentation", "SamplesPerPixel",
                                               "RescaleSlope", "PixelData_short"]), max_size=3, unique=True))
    cut = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about values it is given on purpose
        for kind in kind_list:
            targets = sets if kind in ("PixelSpacing", "PixelSpacing_count", "no_PixelSpacing", "IOP_degenerate",
                                       "IOP_scaled", "IOP_shear", "IOP_nan", "SliceThickness", "RescaleSlope") else [ds]
            if kind == "PixelSpacing":
                v = draw(st.sampled_from(BAD_SPACINGS + ODD_GOOD_SPACINGS))
                i = draw(st.integers(0, 1))
                for t in targets:
                    if "PixelSpacing" not in t or not hasattr(t.PixelSpacing, "__len__") or len(t.PixelSpacing) != 2:
                        continue
                    ps = [float(x) for x in t.PixelSpacing]
                    ps[i] = v
                    t.PixelSpacing = [ds_value(x) for x in ps]
            elif kind == "PixelSpacing_count":
                for t in targets:
                    t.PixelSpacing = [ds_value(1.0)] * draw(st.sampled_from([1, 3]))
            elif kind == "no_PixelSpacing":
                for t in targets:
                    del t.PixelSpacing
            elif kind.startswith("IOP"):
                iop = [float(x) for x in targets[0].ImageOrientationPatient]
                if kind == "IOP_degenerate":
                    iop[3:] = iop[:3] if draw(st.booleans()) else [0.0, 0.0, 0.0]
                elif kind == "IOP_scaled":
                    iop[:3] = [v * draw(st.sampled_from([2.0, 0.5, 1.001])) for v in iop[:3]]
                elif kind == "IOP_shear":
                    c = np.array(iop[3:]) + draw(st.sampled_from([0.3, 0.004])) * np.array(iop[:3])
                    iop[3:] = list(c / np.linalg.norm(c))
                else:
                    iop[draw(st.integers(0, 5))] = draw(st.sampled_from([float("nan"), float("inf")]))
                for t in targets:
                    t.ImageOrientationPatient = [ds_value(x) for x in iop]
            elif kind == "IPP_nan":
                ipp = [float(x) for x in ds.ImagePositionPatient]
                ipp[draw(st.integers(0, 2))] = float("nan")
                ds.ImagePositionPatient = [ds_value(x) for x in ipp]
            elif kind == "IPP_same" and n > 1:
                ds.ImagePositionPatient = sets[(victim + 1) % n].ImagePositionPatient
            elif kind == "SliceThickness":
                for t in targets:
                    t.SliceThickness = ds_value(draw(st.sampled_from([0.0, -2.0, float("nan"), 1e6])))
            elif kind in ("Rows", "Columns"):
                setattr(ds, kind, draw(st.sampled_from([0, getattr(ds, kind) + 1, getattr(ds, kind) - 1])))
            elif kind == "BitsAllocated":
                ds.BitsAllocated = draw(st.sampled_from([0, 8, 12, 32]))
            elif kind == "BitsStored":
                ds.BitsStored = draw(st.sampled_from([0, 12, 17]))
                if draw(st.booleans()) and 1 <= ds.BitsStored <= 16:
                    ds.HighBit = ds.BitsStored - 1  # consistent: only the stored bits count
            elif kind == "PixelRepresentation":
                ds.PixelRepresentation = draw(st.sampled_from([0, 2]))
            elif kind == "SamplesPerPixel":
                ds.SamplesPerPixel = draw(st.sampled_from([0, 2, 3]))
            elif kind == "RescaleSlope":
                slope = draw(st.sampled_from([0.0, float("nan"), 2.5]))
                for t in targets:
                    t.RescaleSlope = ds_value(slope)
            elif kind == "PixelData_short":
                ds.PixelData = ds.PixelData[: draw(st.integers(0, len(ds.PixelData) - 2)) // 2 * 2]
    if draw(st.sampled_from([False] * 11 + [True])):
        cut = draw(st.floats(0.05, 0.98))
    dicom_oracle(sets, victim, expect, pixels, cut)
    return sets, victim, cut, expect


def _numbers(ds, tag, count):
    v = ds.get(tag)
    if v is None:
        return None
    vals = [float(x) for x in (v if isinstance(v, (list, tuple)) or hasattr(v, "__len__") and not isinstance(v, str)
                               else [v])]
    return vals if len(vals) == count and all(math.isfinite(x) for x in vals) else "bad"


def dicom_oracle(sets, victim, expect: Expect, pixels, cut) -> None:
    if cut is not None:
        expect.bad("truncated file", *TRUNCATED)
        return
    n = len(sets)
    ds = sets[victim]
    ps = _numbers(sets[0], "PixelSpacing", 2)
    if ps == "bad" or (ps is not None and min(ps) <= 0):
        expect.bad("PixelSpacing")
    iop = _numbers(sets[0], "ImageOrientationPatient", 6)
    if iop == "bad":
        expect.bad("ImageOrientationPatient")
    else:
        row, col = np.array(iop[:3]), np.array(iop[3:])
        if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2 or \
                abs(row @ col) / max(np.linalg.norm(row) * np.linalg.norm(col), 1e-9) > 1e-2:
            expect.bad("ImageOrientationPatient")
    ipps = [_numbers(s, "ImagePositionPatient", 3) for s in sets]
    if any(p == "bad" for p in ipps):
        expect.bad("ImagePositionPatient")
    elif n > 1 and len({tuple(p) for p in ipps}) < n:
        expect.bad("same position", "same position", "ImagePositionPatient")
    if n == 1:
        th = _numbers(ds, "SliceThickness", 1)
        if th == "bad" or (th is not None and th[0] <= 0):
            expect.bad("SliceThickness")
    for tag in ("Rows", "Columns"):
        if int(ds.get(tag)) < 1:
            expect.bad(tag)
    if int(ds.BitsAllocated) not in (1, 8, 16, 32, 64):
        expect.bad("BitsAllocated")
    elif not 1 <= int(ds.BitsStored) <= int(ds.BitsAllocated):
        expect.bad("BitsStored")
    elif int(ds.get("HighBit", int(ds.BitsStored) - 1)) != int(ds.BitsStored) - 1:
        expect.bad("HighBit", "HighBit", "BitsStored")
    if int(ds.SamplesPerPixel) not in (1, 3):
        expect.bad("SamplesPerPixel")
    if int(ds.PixelRepresentation) not in (0, 1):
        expect.bad("PixelRepresentation")
    slope = _numbers(ds, "RescaleSlope", 1)
    if slope == "bad" or (slope is not None and slope[0] == 0):
        expect.bad("RescaleSlope")
    if expect.problems:
        expect.bad("any", "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient", "SliceThickness", "Rows",
                   "Columns", "BitsAllocated", "BitsStored", "SamplesPerPixel", "PixelRepresentation",
                   "RescaleSlope", "PixelData")
        return
    rows, cols, spp, bits = int(ds.Rows), int(ds.Columns), int(ds.SamplesPerPixel), int(ds.BitsAllocated)
    if len(ds.PixelData) < rows * cols * spp * bits // 8:
        expect.bad("PixelData")
        return
    if len(ds.PixelData) > rows * cols * spp * bits // 8 + 1:  # more than one pad byte: Rows/Columns wrong
        expect.bad("PixelData", "PixelData", "Rows", "Columns")
        return
    if (rows, cols) != (int(sets[0].Rows), int(sets[0].Columns)) or (n > 1 and (rows, cols) != pixels[0].shape) or \
            spp != 1 or bits != 16:
        # another grid in one slice (refused: mixed sizes), or the same bytes read another way: the
        # oracle does not decode those; a read of them is checked for its shape only
        expect.maybe["reinterpreted"] = ("sizes", "Rows", "Columns", "PixelData", "pixel", "BitsStored",
                                         "SamplesPerPixel", "shape", "same position")
        expect.array = None
        expect.spacing = None
        return
    row, col = np.array(iop[:3]), np.array(iop[3:])
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    order = sorted(range(n), key=lambda k: float(np.dot(ipps[k], normal)))
    proj = [float(np.dot(ipps[k], normal)) for k in order]
    if n > 1 and min(np.diff(proj)) <= 1e-3:
        expect.bad("same position", "same position", "ImagePositionPatient")
        return
    planes = []
    for k in order:  # each file is decoded as it says (a slice may say unsigned where the others say signed)
        signed = int(sets[k].PixelRepresentation) == 1
        stored = int(sets[k].BitsStored)
        raw = np.frombuffer(sets[k].PixelData[: rows * cols * 2], "<u2").reshape(rows, cols).astype(np.int64)
        raw &= (1 << stored) - 1  # only the stored bits count (PS3.5 8.1.1)
        if signed:
            raw = np.where(raw >= 1 << (stored - 1), raw - (1 << stored), raw)
        s = _numbers(sets[k], "RescaleSlope", 1)
        planes.append(raw.astype(np.float64) * (s[0] if s else 1.0) + float(sets[k].RescaleIntercept))
    expect.array = np.stack(planes)[None]
    sy, sx = (ps if ps is not None else (1.0, 1.0))
    dz = float(np.median(np.diff(proj))) if n > 1 else (float(ds.SliceThickness) if "SliceThickness" in ds else 1.0)
    expect.spacing = (dz, sy, sx)
    expect.direction = np.stack([row, col, normal], axis=1)
    expect.origin = tuple(ipps[order[0]])


@FUZZ
@given(dicom_cases())
def test_dicom_headers(tmp_path_factory, case):
    import warnings

    sets, victim, cut, expect = case
    folder = tmp_path_factory.mktemp("dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, ds in enumerate(sets):
            ds.save_as(folder / f"slice{k}.dcm", enforce_file_format=True)
    if cut is not None:
        p = folder / f"slice{victim}.dcm"
        data = p.read_bytes()
        p.write_bytes(data[: max(1, int(len(data) * cut))])
    check_read("dicom", read_image, folder, expect)


# ------------------------------------------------------------------------------------------ PNG

def png_chunk(kind: bytes, data: bytes, good_crc: bool = True) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc if good_crc else crc ^ 1)


def png_reference(blob: bytes):
    """A minimal decoder: non-interlaced 8/16-bit gray and 8-bit RGB. -> (h, w, values) or an
    exception for anything the file gets wrong (CRC, lengths, filters, zlib)."""
    if blob[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("signature")
    pos, chunks = 8, []
    while pos < len(blob):
        if pos + 12 > len(blob):
            raise ValueError("truncated chunk")
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        kind, data = blob[pos + 4:pos + 8], blob[pos + 8:pos + 8 + length]
        if len(data) != length or pos + 12 + length > len(blob):
            raise ValueError("truncated chunk")
        if zlib.crc32(kind + data) & 0xFFFFFFFF != struct.unpack(">I", blob[pos + 8 + length:pos + 12 + length])[0]:
            raise ValueError("crc")
        chunks.append((kind, data))
        pos += 12 + length
        if kind == b"IEND":
            break
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise ValueError("structure")
    w, h, depth, ctype, comp, filt, inter = struct.unpack(">IIBBBBB", chunks[0][1])
    valid = {0: (1, 2, 4, 8, 16), 2: (8, 16), 4: (8, 16), 6: (8, 16)}  # colour type 3 needs a PLTE: none here
    if w < 1 or h < 1 or w >= 2**31 or h >= 2**31 or comp or filt or inter not in (0, 1) or \
            depth not in valid.get(ctype, ()):
        raise ValueError("header")
    if inter or (depth, ctype) not in ((8, 0), (16, 0), (8, 2)):
        raise NotImplementedError("a valid layout this decoder does not decode")
    ch = 3 if ctype == 2 else 1
    bpp = ch * depth // 8
    stride = w * bpp
    raw = zlib.decompress(b"".join(d for k, d in chunks if k == b"IDAT"))
    if len(raw) < h * (stride + 1):
        raise ValueError("short data")
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)], np.uint8).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for x in range(stride):
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 0:
                p = 0
            elif f == 1:
                p = a
            elif f == 2:
                p = b
            elif f == 3:
                p = (a + b) // 2
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            else:
                raise ValueError("filter")
            cur[x] = (line[x] + p) & 0xFF
        out[y] = cur
        prev = cur
    if depth == 16:
        values = out.view(">u2").reshape(h, w).astype(np.float64)[None]
    else:
        values = out.reshape(h, w, ch).transpose(2, 0, 1).astype(np.float64)
    return h, w, values


@st.composite
def png_cases(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    depth, ctype = draw(st.sampled_from([(8, 0), (16, 0), (8, 2)]))
    ch = 3 if ctype == 2 else 1
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).integers(0, 2 ** depth, size=(h, w, ch))
    raw = b"".join(b"\0" + (values[y].astype(">u2" if depth == 16 else "u1").tobytes()) for y in range(h))
    ihdr = [w, h, depth, ctype, 0, 0, 0]
    idat = zlib.compress(raw, draw(st.sampled_from([0, 6])))
    crc_ok = True
    for kind in draw(st.lists(st.sampled_from(["width", "height", "depth", "ctype", "interlace", "idat_byte",
                                               "crc", "filter"]), max_size=3)):
        if kind == "width":
            ihdr[0] = draw(st.sampled_from([0, w + 1, max(1, w - 1), 2**31 - 1]))
        elif kind == "height":
            ihdr[1] = draw(st.sampled_from([0, h + 1, max(1, h - 1), 2**31 - 1]))
        elif kind == "depth":
            ihdr[2] = draw(st.sampled_from([1, 2, 4, 8, 16, 3, 0]))
        elif kind == "ctype":
            ihdr[3] = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]))
        elif kind == "interlace":
            ihdr[6] = draw(st.sampled_from([1, 2]))
        elif kind == "idat_byte":
            i = draw(st.integers(0, len(idat) - 1))
            idat = idat[:i] + bytes([idat[i] ^ draw(st.integers(1, 255))]) + idat[i + 1:]
        elif kind == "crc":
            crc_ok = False
        elif kind == "filter":
            raw = bytes([draw(st.sampled_from([5, 9, 255]))]) + raw[1:]
            idat = zlib.compress(raw)
    blob = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", *ihdr))
            + png_chunk(b"IDAT", idat, good_crc=crc_ok) + png_chunk(b"IEND", b""))
    if draw(st.sampled_from([False] * 9 + [True])):
        blob = blob[: draw(st.integers(0, len(blob) - 1))]
    expect = Expect()
    try:
        rh, rw, ref = png_reference(blob)
    except NotImplementedError:  # valid, not decoded here: a refusal or a read of the claimed size
        expect.maybe["layout"] = ("interlace",)
        expect.spacing = None
        return blob, expect, (ihdr[1], ihdr[0])
    except (ValueError, zlib.error, struct.error, IndexError):
        expect.bad("png", "truncated", "crc", "checksum", "broken", "cannot read", "IHDR", "IDAT", "filter",
                   "decod", "size", "mode", "bit depth", "color type", "chunk", "not a", "cannot identify",
                   "interlace")
        return blob, expect, None
    expect.array = ref[:, None] if ref.shape[0] == 1 else ref[:, None]
    return blob, expect, (rh, rw)


@FUZZ
@given(png_cases())
def test_png_headers(tmp_path_factory, case):
    blob, expect, size = case
    path = tmp_path_factory.mktemp("png") / "case.png"
    path.write_bytes(blob)
    if expect.maybe and not expect.problems and size is not None:
        check_claimed_size_only("png", read_image, path, size)
        return
    check_read("png", read_image, path, expect)


# ----------------------------------------------------------------------------------------- TIFF

def tiff_bytes(values: np.ndarray, tags: dict[int, tuple[int, list[int]]], data_at_end: bool = False) -> bytes:
    """Little-endian baseline TIFF, one strip; ``tags``: tag -> (type, values) overriding the defaults."""
    data = values.tobytes()
    ifd_offset = 8 + len(data)
    entries = dict(tags)
    n = len(entries)
    ifd = struct.pack("<H", n)
    extra = b""
    extra_at = ifd_offset + 2 + 12 * n + 4
    for tag in sorted(entries):
        typ, vals = entries[tag]
        fmt = {3: "H", 4: "I"}[typ]
        size = struct.calcsize(fmt) * len(vals)
        if size <= 4:
            ifd += struct.pack("<HHI", tag, typ, len(vals)) + struct.pack("<" + fmt * len(vals), *vals).ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, typ, len(vals), extra_at + len(extra))
            extra += struct.pack("<" + fmt * len(vals), *vals)
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_offset) + data + ifd + extra


@st.composite
def tiff_cases(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    bits, spp = draw(st.sampled_from([(8, 1), (16, 1), (8, 3)]))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).integers(0, 2 ** bits, size=(h, w, spp)).astype("<u2" if bits == 16 else "u1")
    nbytes = values.nbytes
    tags = {256: (4, [w]), 257: (4, [h]), 258: (3, [bits] * spp), 259: (3, [1]), 262: (3, [2 if spp == 3 else 1]),
            273: (4, [8]), 277: (3, [spp]), 278: (4, [h]), 279: (4, [nbytes])}
    expect = Expect()
    kinds = draw(st.lists(st.sampled_from(["width", "height", "bits", "spp", "bytecount", "offset", "compression",
                                           "photometric"]), max_size=3, unique=True))
    for kind in kinds:
        if kind == "width":
            tags[256] = (4, [draw(st.sampled_from([0, w + 1, max(1, w - 1), 2**31]))])
        elif kind == "height":
            v = draw(st.sampled_from([0, h + 1, max(1, h - 1), 2**31]))
            tags[257] = (4, [v])
            tags[278] = (4, [max(v, 1)])
        elif kind == "bits":
            tags[258] = (3, [draw(st.sampled_from([0, 1, 4, 12, 16, 32, 8]))] * spp)
        elif kind == "spp":
            tags[277] = (3, [draw(st.sampled_from([0, 2, 3, 4, 1]))])
        elif kind == "bytecount":
            tags[279] = (4, [draw(st.sampled_from([0, max(0, nbytes - 1), nbytes * 2 + 100]))])
        elif kind == "offset":
            tags[273] = (4, [draw(st.sampled_from([0, 10**6, 9]))])
        elif kind == "compression":
            tags[259] = (3, [draw(st.sampled_from([2, 5, 7, 99, 32773]))])
        elif kind == "photometric":
            tags[262] = (3, [draw(st.sampled_from([0, 3, 5, 99]))])
    blob = tiff_bytes(values, tags)
    cut = None
    if draw(st.sampled_from([False] * 9 + [True])):
        cut = draw(st.integers(0, len(blob) - 1))
        blob = blob[:cut]
    # the oracle: TIFF 6.0 baseline, uncompressed, one strip
    W, H = tags[256][1][0], tags[257][1][0]
    B, S = tags[258][1], tags[277][1][0]
    comp, photo, off, cnt = tags[259][1][0], tags[262][1][0], tags[273][1][0], tags[279][1][0]
    if cut is not None or kinds and set(kinds) - {"width", "height", "bytecount"}:
        if cut is not None or any(k in kinds for k in ("bits", "spp", "offset", "compression", "photometric")):
            same = (B == tags[258][1] and B[0] == bits and S == spp and off == 8 and comp == 1
                    and photo == (2 if spp == 3 else 1) and cut is None)
            if not same:
                # another layout or codec: a refusal, or a read whose size is the claimed one
                expect.maybe["layout"] = ("cannot read", "truncated", "tiff", "mode", "bits", "sample", "compression",
                                          "photometric", "strip", "decod", "not", "size", "layout", "channels",
                                          "unknown", "unsupported", "broken", "tile", "image file")
                return blob, expect, (H, W) if W and H else None
    need = W * H * spp * bits // 8
    if W < 1 or H < 1 or W > 2**30 or H > 2**30:
        expect.bad("size", "size", "width", "height", "cannot read", "decompression bomb", "exceeds", "too large",
                   "truncated", "image file", "dimension")
        return blob, expect, None
    if cnt < need or off + cnt > len(blob):
        expect.bad("strip", "truncated", "cannot read", "strip", "image file", "short", "bytes")
        return blob, expect, None
    # what the strip holds, by the tags (a strip that runs over the directory is read as it says)
    flat = np.frombuffer(blob[off:off + need], "<u2" if bits == 16 else "u1")
    expect.array = flat.reshape(H, W, spp).transpose(2, 0, 1)[:, None].astype(np.float64)
    return blob, expect, (H, W)


@FUZZ
@given(tiff_cases())
def test_tiff_headers(tmp_path_factory, case):
    blob, expect, size = case
    path = tmp_path_factory.mktemp("tif") / "case.tif"
    path.write_bytes(blob)
    if expect.maybe and not expect.problems:
        check_claimed_size_only("tiff", read_image, path, size)
        return
    check_read("tiff", read_image, path, expect)
