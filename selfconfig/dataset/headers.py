"""Check what a file's header claims before anything is allocated for it.

A reader (SimpleITK, nibabel) allocates the voxel buffer that the header announces before it
notices that the file is short: a 56-byte ``.nii.gz`` that claims 1000 x 1000 x 2000 int16 voxels
makes it allocate 4 GB. Here the header alone is parsed (a few hundred bytes; for gzip at most
that much is inflated), and the claim is compared with

* the payload the file really holds: the file size for uncompressed data; for gzip the trailer's
  ISIZE (uncompressed size mod 2^32, 4 bytes at the end), and only when that disagrees (bgzip,
  several members, damage) a streamed count that stops as soon as the claim is met;
* the memory available now (``MemAvailable`` in /proc/meminfo), counting the float32 copy that
  reading makes.

A file this module does not understand is left to the reader (which reports it).
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from selfconfig.errors import InputSizeError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass
class Claim:
    """What a header promises: ``nbytes`` of voxel data (``voxels`` values of ``itemsize`` bytes)
    stored in ``data_file`` from byte ``start`` on, "raw" or compressed ("gzip"/"zlib"); the
    uncompressed stream holds ``prefix`` bytes (e.g. a NIfTI header) before the voxels."""

    voxels: int
    itemsize: int
    data_file: Path
    start: int
    encoding: str = "raw"
    prefix: int = 0
    fields: str = ""  # the header fields the claim comes from, for the refusal

    @property
    def nbytes(self) -> int:
        return self.voxels * self.itemsize


# ---------------------------------------------------------------------------------------- NIfTI

_NIFTI_ITEMSIZE = {2: 1, 4: 2, 8: 4, 16: 4, 32: 8, 64: 8, 128: 3, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8,
                   1536: 16, 1792: 16, 2048: 32, 2304: 4}


def _nifti_claim(path: Path, compressed: bool) -> Claim | None:
    try:
        opener = gzip.open if compressed else open
        with opener(path, "rb") as f:
            head = f.read(540)
    except (EOFError, OSError, zlib.error) as e:
        raise InputSizeError(f"Cannot read image {path}: the file is truncated or corrupt before the end of its "
                             f"header ({type(e).__name__}). Re-export or copy the file again.") from None
    if len(head) < 348:
        raise InputSizeError(f"Cannot read image {path}: the file is truncated ({len(head)} bytes, shorter than a "
                             f"NIfTI header). Re-export or copy the file again.")
    for endian in "<>":
        size = struct.unpack(endian + "i", head[:4])[0]
        if size == 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            datatype = struct.unpack(endian + "h", head[70:72])[0]
            offset_f = struct.unpack(endian + "f", head[108:112])[0]
            offset = int(offset_f) if math.isfinite(offset_f) else 0  # a NaN is refused by header_checks
            break
        if size == 540 and len(head) >= 540:
            datatype = struct.unpack(endian + "h", head[12:14])[0]
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = int(struct.unpack(endian + "q", head[168:176])[0])
            break
    else:
        return None  # not a NIfTI header: SimpleITK reports it
    n = dims[0]
    if not 1 <= n <= 7 or datatype not in _NIFTI_ITEMSIZE:
        return None
    voxels = 1
    for d in dims[1:n + 1]:
        if d < 0:
            return None
        voxels *= max(int(d), 1)
    offset = max(offset, 352 if size == 348 else 544)
    if compressed:
        return Claim(voxels, _NIFTI_ITEMSIZE[datatype], path, 0, "gzip", prefix=offset, fields="dim, datatype")
    return Claim(voxels, _NIFTI_ITEMSIZE[datatype], path, offset, fields="dim, datatype, vox_offset")


# ---------------------------------------------------------------------------------- NRRD, MHA

_NRRD_TYPES = {1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"),
               2: ("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                   "unsigned short", "unsigned short int", "uint16", "uint16_t"),
               4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
               8: ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
                   "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t",
                   "double")}
_NRRD_ITEMSIZE = {name: size for size, names in _NRRD_TYPES.items() for name in names}
_MET_ITEMSIZE = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                 "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                 "MET_DOUBLE": 8}


def _text_header(path: Path, limit: int = 64 * 1024) -> tuple[list[str], int]:
    """Header lines up to the blank line (NRRD) or ``ElementDataFile`` (MetaImage), and the byte
    offset where the data starts."""
    with open(path, "rb") as f:
        blob = f.read(limit)
    lines, pos = [], 0
    while pos < len(blob):
        end = blob.find(b"\n", pos)
        if end < 0:
            break
        line = blob[pos:end].decode("latin-1").rstrip("\r")
        pos = end + 1
        if line == "":
            break  # NRRD: a blank line ends the header
        lines.append(line)
        if line.replace(" ", "").lower().startswith("elementdatafile="):
            break  # MetaImage: the last header line
    return lines, pos


def _nrrd_claim(path: Path) -> Claim | None:
    lines, offset = _text_header(path)
    if not lines or not lines[0].startswith("NRRD"):
        return None
    fields = {}
    for line in lines[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.lstrip("=").strip()
    try:
        sizes = [int(v) for v in fields["sizes"].split()]
        itemsize = _NRRD_ITEMSIZE[fields["type"].lower()]
    except (KeyError, ValueError):
        return None
    encoding = fields.get("encoding", "raw").lower()
    if encoding in ("gz", "gzip"):
        encoding = "gzip"
    elif encoding != "raw":
        return None  # ascii / bzip2: not checked here
    data_file = fields.get("data file", fields.get("datafile"))
    if data_file:
        if data_file.startswith("LIST") or "%" in data_file or " " in data_file:
            return None
        path, offset = path.parent / data_file, 0
    try:
        skip = max(int(fields.get("byte skip", fields.get("byteskip", "0")) or 0), 0)
    except ValueError:
        return None
    voxels = 1
    for s in sizes:
        voxels *= max(s, 1)
    if encoding == "raw":
        return Claim(voxels, itemsize, path, offset + skip, fields="sizes, type")
    return Claim(voxels, itemsize, path, offset, encoding, prefix=skip, fields="sizes, type")


def _mha_claim(path: Path) -> Claim | None:
    lines, offset = _text_header(path)
    fields = {}
    for line in lines:
        key, eq, value = line.partition("=")
        if eq:
            fields[key.strip().lower()] = value.strip()
    try:
        dims = [int(v) for v in fields["dimsize"].split()]
        itemsize = _MET_ITEMSIZE[fields["elementtype"].upper()]
        channels = int(fields.get("elementnumberofchannels", "1"))
    except (KeyError, ValueError):
        return None
    data_file = fields.get("elementdatafile", "LOCAL")
    if data_file.upper() != "LOCAL":
        if data_file.upper().startswith("LIST") or "%" in data_file or " " in data_file:
            return None
        path, offset = path.parent / data_file, 0
    compressed = fields.get("compresseddata", "false").lower() == "true"
    voxels = channels
    for d in dims:
        voxels *= max(d, 1)
    return Claim(voxels, itemsize, path, offset, "zlib" if compressed else "raw",
                 fields="DimSize, ElementType, ElementNumberOfChannels")


# ----------------------------------------------------------------------------------- payload

def _inflated_at_least(path: Path, offset: int, needed: int, gzip_wrapped: bool) -> int:
    """Inflate from ``offset`` on, counting output without keeping it, until ``needed`` bytes are
    reached or the stream ends; returns the count (memory stays at one chunk)."""
    wbits = 47  # zlib or gzip header, detected
    total = 0
    d = zlib.decompressobj(wbits)
    with open(path, "rb") as f:
        f.seek(offset)
        pending = b""
        while total < needed:
            if not pending:
                pending = f.read(_CHUNK)
                if not pending:
                    break
            out = d.decompress(pending, _CHUNK)
            total += len(out)
            pending = d.unconsumed_tail
            if d.eof:
                rest = d.unused_data + pending
                if not gzip_wrapped or not rest.strip(b"\0"):
                    break
                d, pending = zlib.decompressobj(wbits), rest  # next gzip member (bgzip)
    return total


def payload_bytes(claim: Claim) -> int:
    """Bytes of voxel data the file really holds; for compressed data counted without keeping
    them and without inflating more than the claim (so a lying header costs nothing)."""
    path = claim.data_file
    if not path.is_file():
        raise InputSizeError(f"Cannot read image: its data file {path} does not exist; copy it next to the header.")
    size = path.stat().st_size
    if claim.encoding == "raw":
        return max(size - claim.start, 0)
    needed = claim.prefix + claim.nbytes  # the uncompressed stream
    if claim.encoding == "gzip" and size - claim.start >= 18:
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            isize = int.from_bytes(f.read(4), "little")
        if needed < 2 ** 32 and isize == needed:
            return claim.nbytes  # the gzip trailer agrees: nothing inflated at all
    try:
        got = _inflated_at_least(path, claim.start, needed, gzip_wrapped=claim.encoding == "gzip")
    except zlib.error as e:
        raise InputSizeError(f"Cannot read image {path}: the compressed data are corrupt ({e}); "
                             "re-export or copy the file again.") from None
    return got - claim.prefix


# ------------------------------------------------------------------------------------ memory

def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux MemAvailable), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # optional

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no way to tell: skip the memory check
        return None


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**28 else f"{n / 2**20:.1f} MB"


def claim_for(path: Path, ending: str) -> Claim | None:
    ending = ending.lower()
    if ending in (".nii", ".nii.gz"):
        return _nifti_claim(path, ending == ".nii.gz")
    if ending == ".nrrd":
        return _nrrd_claim(path)
    if ending in (".mha", ".mhd"):
        return _mha_claim(path)
    return None


def check_claimed_size(path: Path, ending: str) -> Claim | None:
    """Refuse (one line) a file whose header claims more voxel data than it holds, or more than
    the memory available; called before the reader allocates anything."""
    path = Path(path)
    claim = claim_for(path, ending)
    if claim is None:
        return None
    have = payload_bytes(claim)
    if have < claim.nbytes:
        raise InputSizeError(
            f"Cannot read image {path}: the file is truncated, or its header lies: it claims {claim.voxels} voxels "
            f"({_gb(claim.nbytes)}; header fields {claim.fields}) but holds {_gb(max(have, 0))} of voxel data; nothing was allocated. "
            "Re-export or copy the file again.")
    need = claim.nbytes + claim.voxels * 4  # the raw buffer plus its float32 copy
    free = available_memory()
    if free is not None and need > free:
        raise InputSizeError(
            f"Cannot read image {path}: it needs about {_gb(need)} of memory ({claim.voxels} voxels) and "
            f"{_gb(free)} is available; nothing was allocated. Crop or downsample the scan, or use a machine "
            "with more memory.")
    return claim

