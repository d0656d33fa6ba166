"""NODULE_FPR: a synthetic 3D nodule false-positive-reduction dataset (classification).

Why: the second application of Tajbakhsh et al. (ISBI 2019) classifies candidate patches from
chest CT as true nodule vs false candidate; real scans (LIDC/LUNA) cannot be downloaded here, so
this module renders small chest-CT-like volumes and writes only candidate patches, as a
candidate detector would hand them to a false-positive-reduction network.

Each scan (its own sub-seed) holds lung parenchyma, branching vessel trees, airways with walls,
fissure pieces, pleura / chest wall with ribs, and 1-4 true nodules (solid, part-solid, ground
glass; isolated, juxta-vascular, juxta-pleural; 3-15 mm). A simulated detector proposes most
nodules (some on purpose not, so FROC sensitivity stays below 1), often several times with small
offsets, plus about ``NEGATIVES_PER_POSITIVE`` false candidates on vessels, vessel
cross-sections, bifurcations, fissures, airway walls and pleura. A scan's candidates all go to
one split: imagesTr + labelsTr.csv, imagesTs + labelsTs.csv, or imagesUn (no labels).

Coordinates: positions are in mm in the scan frame, (z, y, x) order, scan origin at 0; a patch's
NIfTI origin (x, y, z, SimpleITK order) is its corner voxel's position in that frame.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from selfconfig.errors import ConfigurationError

logger = logging.getLogger(__name__)

NAME = "NODULE_FPR"
SCAN_SHAPE = (64, 96, 96)  # (z, y, x) voxels
NEGATIVES_PER_POSITIVE = 8
# false-candidate kinds and how often the simulated detector fires on each
NEGATIVE_KINDS = {"vessel": 0.28, "cross_section": 0.2, "bifurcation": 0.2,
                  "fissure": 0.1, "airway": 0.1, "pleura": 0.12}
_HITS_PER_NODULE = (1, 1, 1, 1, 2, 2, 3)
_FACE_MARGIN = 5.0  # mm; nodules and candidates keep this far from the scan faces
_MAX_VESSEL_SEGMENTS = 900
_IMAGE_DIRS = {"train": "imagesTr", "test": "imagesTs", "unlabeled": "imagesUn"}


@dataclass
class _Scan:
    """One rendered scan plus the structures a candidate detector can fire on (all in mm)."""

    volume: np.ndarray  # (Z, Y, X) float32 HU
    spacing: np.ndarray  # (z, y, x) mm
    sdf: np.ndarray | None = None  # signed distance to the pleura, mm, negative inside the lung
    vessels: list = field(default_factory=list)  # (a, b, ra, rb)
    bifurcations: list = field(default_factory=list)  # (point, radius, bulb radius or 0)
    airways: list = field(default_factory=list)  # (a, b, ra, rb, wall)
    fissure_points: np.ndarray | None = None
    pleura_points: np.ndarray | None = None  # (N, 2, 3): boundary point, inward normal
    nodules: list = field(default_factory=list)  # dicts

    @property
    def extent(self) -> np.ndarray:
        return np.asarray(self.volume.shape) * self.spacing


# ----------------------------------------------------------------------------- geometry helpers
def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _perpendicular(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    u = rng.normal(size=3)
    return _unit(u - (u @ d) * d)


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' rotation of ``v`` about unit ``axis``."""
    c, s = math.cos(angle), math.sin(angle)
    return v * c + np.cross(axis, v) * s + axis * (axis @ v) * (1 - c)


def _box(lo: np.ndarray, hi: np.ndarray, spacing: np.ndarray, shape: tuple):
    """Voxel slices and open mm grids covering the mm box [lo, hi]; None when it misses the scan."""
    i0 = np.maximum(np.floor(lo / spacing).astype(int), 0)
    i1 = np.minimum(np.ceil(hi / spacing).astype(int) + 1, shape)
    if np.any(i1 <= i0):
        return None
    sl = tuple(slice(a, b) for a, b in zip(i0, i1))
    grids = np.ix_(*(np.arange(a, b) * s for a, b, s in zip(i0, i1, spacing)))
    return sl, [g.astype(np.float32) for g in grids]


def _capsule_distance(grids, a, b, ra, rb):
    """Distance of each box voxel to segment a-b and the radius interpolated at its foot point."""
    ab = b - a
    length2 = max(float(ab @ ab), 1e-9)
    q = [g - c for g, c in zip(grids, a)]
    t = np.clip((q[0] * ab[0] + q[1] * ab[1] + q[2] * ab[2]) / length2, 0.0, 1.0)
    d2 = sum((qi - t * abi) ** 2 for qi, abi in zip(q, ab))
    return np.sqrt(d2), ra + t * (rb - ra)


def _draw_tube(occ: np.ndarray, spacing, a, b, ra, rb, edge: float = 0.7, grow: float = 0.0) -> None:
    """Max-composite a soft tube (radius + ``grow``) into ``occ``; only its bounding box is touched."""
    pad = max(ra, rb) + grow + 2 * edge
    hit = _box(np.minimum(a, b) - pad, np.maximum(a, b) + pad, spacing, occ.shape)
    if hit is None:
        return
    sl, grids = hit
    d, r = _capsule_distance(grids, a, b, ra, rb)
    np.maximum(occ[sl], np.clip(0.5 + (r + grow - d) / edge, 0.0, 1.0), out=occ[sl])


def _smooth_noise(rng, shape, sigma: float) -> np.ndarray:
    """Unit-variance correlated noise; wide kernels are filtered on a coarse grid, then upsampled."""
    f = max(1, int(sigma // 2))
    small = tuple(math.ceil(s / f) + 1 for s in shape) if f > 1 else tuple(shape)
    n = ndimage.gaussian_filter(rng.normal(size=small).astype(np.float32), sigma / f)
    for axis in range(3 if f > 1 else 0):  # separable linear upsampling by f (cheaper than zoom)
        x = np.arange(shape[axis]) / f
        i0 = np.floor(x).astype(int)
        w = (x - i0).astype(np.float32).reshape([-1 if k == axis else 1 for k in range(3)])
        n = np.take(n, i0, axis=axis) * (1 - w) + np.take(n, i0 + 1, axis=axis) * w
    return n / max(float(n.std()), 1e-6)


# ----------------------------------------------------------------------------- anatomy
def _grow_tree(rng, start, direction, radius, r_min, max_depth, inside, segments, bifurcations,
               max_segments, curl=0.12):
    """Grow a branching tube tree: calibre falls at each bifurcation, branches curve slightly."""
    stack = [(np.asarray(start, float), _unit(np.asarray(direction, float)), radius, 0)]
    while stack and len(segments) < max_segments:
        p, d, r, depth = stack.pop()
        length = float(np.clip(r * rng.uniform(5.0, 9.0), 6.0, 28.0))
        n = max(1, math.ceil(length / 4.0))
        r_end, alive = r * 0.92, True
        for k in range(n):
            d = _unit(d + rng.normal(0, curl, 3))
            q = p + d * (length / n)
            segments.append((p, q, r + (r_end - r) * k / n, r + (r_end - r) * (k + 1) / n))
            p = q
            if not inside(p):
                alive = False
                break
        if not alive or depth >= max_depth or r_end * 0.8 < r_min:
            continue
        # some branch points swell into a round bulb: the blob-like false positives detectors love
        bulb = r_end * rng.uniform(1.15, 1.5) if rng.random() < 0.35 else 0.0
        bifurcations.append((p.copy(), r_end, bulb))
        axis = _perpendicular(rng, d)
        r1, r2 = r_end * rng.uniform(0.72, 0.86), r_end * rng.uniform(0.55, 0.75)
        stack.append((p, _rotate(d, axis, -math.radians(rng.uniform(25, 50))), r2, depth + 1))
        stack.append((p, _rotate(d, axis, math.radians(rng.uniform(15, 35))), r1, depth + 1))


def _lung_sdf(grids, c, ax, ay, wobble):
    """Approximate signed distance (mm, negative inside) to an elliptic lung outline."""
    z, y, x = grids
    u, v = (x - c[2]) / ax, (y - c[1]) / ay
    g = np.sqrt(u * u + v * v) + 1e-6
    grad = np.sqrt((u / ax) ** 2 + (v / ay) ** 2) / g
    sdf = (g - 1.0) / grad
    return sdf + wobble[0] * np.sin(z / wobble[1] + wobble[2]) * np.cos(y / wobble[3])


def _render_scan(rng: np.random.Generator) -> _Scan:
    shape = SCAN_SHAPE
    spacing = np.array([rng.uniform(1.0, 1.5), *([rng.uniform(0.9, 1.2)] * 2)])
    ext = np.asarray(shape) * spacing
    grids = [g.astype(np.float32) for g in np.ix_(*(np.arange(n) * s for n, s in zip(shape, spacing)))]
    scan = _Scan(volume=np.zeros(shape, np.float32), spacing=spacing)

    # lung outline: lateral wall near the high-x face, posterior wall near (or beyond) the high-y face
    ax, ay = rng.uniform(90, 130), rng.uniform(80, 120)
    c = np.array([0.0, ext[1] - rng.uniform(-5, 20) - ay, ext[2] - rng.uniform(6, 22) - ax])
    wobble = (rng.uniform(1, 3), rng.uniform(8, 15), rng.uniform(0, 6), rng.uniform(10, 20))
    sdf = scan.sdf = _lung_sdf(grids, c, ax, ay, wobble)
    lung = 1.0 / (1.0 + np.exp(np.clip(sdf / 0.5, -30, 30)))

    def inside(p):
        sd = _lung_sdf([np.float32(v) for v in p], c, ax, ay, wobble)
        return bool(np.all(p > -25) and np.all(p < ext + 25) and sd < 2.0)

    # parenchyma: -850 HU, denser in the dependent (high-y) part, mottled texture
    vol = (-860 + rng.uniform(15, 45) * grids[1] / ext[1]
           + 14 * _smooth_noise(rng, shape, 5.0) + 10 * _smooth_noise(rng, shape, 1.2)).astype(np.float32)

    # fissures: thin bright, gently curved sheets, often incomplete
    fis_occ = np.zeros(shape, np.float32)
    for _ in range(rng.integers(1, 3)):
        n = _unit(np.array([rng.uniform(0.5, 1.0), rng.uniform(-0.8, 0.8), rng.uniform(-0.5, 0.5)]))
        u = _perpendicular(rng, n)
        v = np.cross(n, u)
        p0 = ext * rng.uniform(0.25, 0.75, 3)
        q = [g - p for g, p in zip(grids, p0)]
        qu, qv = sum(a * b for a, b in zip(q, u)), sum(a * b for a, b in zip(q, v))
        k1, k2 = rng.uniform(-0.006, 0.006, 2)
        f = sum(a * b for a, b in zip(q, n)) + k1 * qu * qu + k2 * qv * qv
        d = f / np.sqrt(1 + (2 * k1 * qu) ** 2 + (2 * k2 * qv) ** 2)
        present = 1.0 / (1.0 + np.exp(-3.0 * (_smooth_noise(rng, shape, 6.0) + 0.6)))
        np.maximum(fis_occ, np.exp(-0.5 * (d / rng.uniform(0.45, 0.7)) ** 2) * present, out=fis_occ)
    fis_occ *= lung
    vol += (rng.uniform(-250, -100) - vol) * fis_occ * 0.8
    scan.fissure_points = np.argwhere((fis_occ > 0.5) & (sdf < -3)) * spacing

    # airways: dark lumen, bright wall; a few trees entering from the hilum (low-x) side
    wall_occ, lumen_occ = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    air_segments: list = []
    for _ in range(rng.integers(1, 3)):
        start = np.array([rng.uniform(0.2, 0.8) * ext[0], rng.uniform(0.2, 0.8) * ext[1], -rng.uniform(2, 10)])
        _grow_tree(rng, start, [rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 1.0], rng.uniform(2.5, 4.0),
                   1.0, 3, inside, air_segments, [], 80, curl=0.06)
    for a, b, ra, rb in air_segments:
        wall = 0.2 * (ra + rb) / 2 + 0.4
        _draw_tube(wall_occ, spacing, a, b, ra, rb, grow=wall)
        _draw_tube(lumen_occ, spacing, a, b, ra, rb)
        scan.airways.append((a, b, ra, rb, wall))
    vol += (rng.uniform(-120, 0) - vol) * wall_occ * lung
    vol += (-1000 - vol) * lumen_occ * lung

    # vessels: trees from the hilum and from the cranial / caudal faces (those run along z)
    ves_occ = np.zeros(shape, np.float32)
    for _ in range(rng.integers(4, 7)):
        if rng.random() < 0.5:
            start = np.array([rng.uniform(0.1, 0.9) * ext[0], rng.uniform(0.1, 0.9) * ext[1], -rng.uniform(8, 22)])
            direction = [rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), 1.0]
        else:
            top = rng.random() < 0.5
            out = rng.uniform(8, 22)
            start = np.array([-out if top else ext[0] + out, *(rng.uniform(0.15, 0.85, 2) * ext[1:])])
            direction = [1.0 if top else -1.0, rng.uniform(-0.4, 0.4), rng.uniform(-0.2, 0.6)]
        _grow_tree(rng, start, direction, rng.uniform(2.6, 4.4), 0.35, 7, inside, scan.vessels,
                   scan.bifurcations, _MAX_VESSEL_SEGMENTS)
    for a, b, ra, rb in scan.vessels:
        _draw_tube(ves_occ, spacing, a, b, ra, rb)
    for p, _, bulb in scan.bifurcations:
        if bulb > 0:
            _draw_tube(ves_occ, spacing, p, p, bulb, bulb)
    vessel_hu = rng.uniform(20, 60)
    vol += (vessel_hu - vol) * ves_occ * lung

    # chest wall: muscle, then fat; ribs as bright tubes a few mm outside the pleura
    wall_hu = np.where(sdf < rng.uniform(9, 15), rng.uniform(30, 60), rng.uniform(-110, -80))
    wall_hu = wall_hu + 12 * _smooth_noise(rng, shape, 1.5)
    vol = vol * lung + wall_hu.astype(np.float32) * (1 - lung)
    away_from_faces = np.zeros(shape, bool)
    m = np.ceil(4.0 / spacing).astype(int)
    away_from_faces[m[0]:-m[0], m[1]:-m[1], m[2]:-m[2]] = True
    boundary = np.argwhere((np.abs(sdf) < 1.0) & away_from_faces)
    if len(boundary):
        pts = boundary * spacing
        sd0 = _lung_sdf([np.float32(v) for v in pts.T], c, ax, ay, wobble)
        eps = 0.5
        normals = np.stack([(_lung_sdf([np.float32(v) for v in (pts + eps * e).T], c, ax, ay, wobble) - sd0) / eps
                            for e in np.eye(3)], axis=1)
        normals = -normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-6)
        scan.pleura_points = np.stack([pts, normals], axis=1)
        rib_occ = np.zeros(shape, np.float32)
        for _ in range(rng.integers(1, 3)):
            p, nrm = scan.pleura_points[rng.integers(len(pts))]
            centre = p - nrm * rng.uniform(6, 9)
            along = _unit(np.cross(nrm, [1.0, 0.0, 0.0]) + rng.normal(0, 0.2, 3))  # around the chest, roughly axial
            _draw_tube(rib_occ, spacing, centre - 80 * along, centre + 80 * along, 4.5, 4.5)
        vol += (rng.uniform(250, 450) - vol) * rib_occ * (1 - lung)

    _add_nodules(rng, scan, vol, sdf)
    vol = ndimage.gaussian_filter(vol, 0.6 / (spacing / spacing.min()))
    vol += rng.uniform(12, 30) * _smooth_noise(rng, shape, 0.6)
    scan.volume = np.clip(vol, -1024, 3071)
    return scan


# ----------------------------------------------------------------------------- nodules
def _nodule_occupancy(grids, centre, radius, lobes, bumps, shape_matrix):
    """Soft occupancy of a lobulated ellipsoidal blob: union of offset spheres with a bumpy radius,
    seen through ``shape_matrix`` (a symmetric stretch; identity for a round nodule)."""
    occ = None
    for off, rad in [(np.zeros(3), radius)] + lobes:
        q0 = [g - c for g, c in zip(grids, centre + off)]
        q = [sum(shape_matrix[i, j] * q0[j] for j in range(3)) for i in range(3)]
        dist = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2) + 1e-6
        rr = np.full_like(dist, rad)
        for direction, amp in bumps:
            cosang = (q[0] * direction[0] + q[1] * direction[1] + q[2] * direction[2]) / dist
            rr = rr * (1 + amp * np.exp((cosang - 1) / 0.25))
        o = np.clip(0.5 + (rr - dist) / 0.7, 0.0, 1.0)
        occ = o if occ is None else np.maximum(occ, o)
    return occ


def _place_nodule(rng, scan: _Scan, sdf, radius):
    """Pick a centre and attachment; None when no valid place is found."""
    ext, sp = scan.extent, scan.spacing
    for _ in range(50):
        kind = rng.choice(["isolated", "juxta_vascular", "juxta_pleural"], p=[0.55, 0.25, 0.2])
        if kind == "juxta_pleural" and scan.pleura_points is not None:
            p, nrm = scan.pleura_points[rng.integers(len(scan.pleura_points))]
            centre = p + nrm * radius * rng.uniform(0.5, 0.95)
        elif kind == "juxta_vascular":
            cands = [s for s in scan.vessels if 0.6 < s[2] < 3.0]
            if not cands:
                continue
            a, b, ra, _ = cands[rng.integers(len(cands))]
            centre = a + rng.random() * (b - a)
            centre = centre + _perpendicular(rng, _unit(b - a)) * (ra + radius * rng.uniform(0.5, 0.9))
        else:
            kind = "isolated"
            centre = rng.uniform(_FACE_MARGIN, ext - _FACE_MARGIN)
        idx = np.clip(np.round(centre / sp).astype(int), 0, np.asarray(sdf.shape) - 1)
        inside = np.all(centre > _FACE_MARGIN) and np.all(centre < ext - _FACE_MARGIN)
        limit = radius * 0.2 if kind == "juxta_pleural" else -radius - 1.0
        if inside and sdf[tuple(idx)] < limit and all(
                np.linalg.norm(centre - m["centre"]) > radius + m["diameter"] / 2 + 3 for m in scan.nodules):
            return centre, str(kind)
    return None


def _add_nodules(rng, scan: _Scan, vol: np.ndarray, sdf: np.ndarray) -> None:
    sp = scan.spacing
    for _ in range(rng.choice([1, 1, 2, 2, 2, 3, 3, 4])):
        texture = str(rng.choice(["solid", "part_solid", "ground_glass"], p=[0.7, 0.15, 0.15]))
        smallest = 3.0 if texture == "solid" else 5.0  # sub-5 mm ground glass is invisible at this noise
        diameter = float(np.exp(rng.uniform(math.log(smallest), math.log(15.0))))
        radius = diameter / 2
        placed = _place_nodule(rng, scan, sdf, radius)
        if placed is None:
            continue
        centre, attachment = placed
        lobes = [(_unit(rng.normal(size=3)) * radius * rng.uniform(0.3, 0.6), radius * rng.uniform(0.45, 0.75))
                 for _ in range(rng.integers(0, 4) if diameter > 5 else 0)]
        bumps = [(_unit(rng.normal(size=3)), rng.uniform(-0.15, 0.25)) for _ in range(rng.integers(2, 6))]
        pad = radius * 1.9 + 2
        hit = _box(centre - pad, centre + pad, sp, vol.shape)
        if hit is None:
            continue
        sl, grids = hit
        rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        stretch = rot @ np.diag(1 / np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(0.6, 1.0)])) @ rot.T
        occ = _nodule_occupancy(grids, centre, radius, lobes, bumps, stretch)
        if texture == "solid":
            hu = rng.uniform(-100, 100) + 15 * rng.normal(size=occ.shape)
            if diameter >= 7 and rng.random() < 0.4:  # spiculae: thin tapered spikes
                spikes = np.zeros(vol.shape, np.float32)
                for _ in range(rng.integers(3, 8)):
                    d = _unit(rng.normal(size=3))
                    _draw_tube(spikes, sp, centre + d * radius * 0.8, centre + d * radius * rng.uniform(1.4, 1.8),
                               0.7, 0.25)
                occ = np.maximum(occ, spikes[sl])
        else:
            hu = rng.uniform(-650, -350) + 60 * rng.normal(size=occ.shape)
            if texture == "part_solid":
                core = _nodule_occupancy(grids, centre, radius * rng.uniform(0.3, 0.5), [], bumps, stretch)
                hu = hu * (1 - core) + rng.uniform(-80, 60) * core
        region = vol[sl]
        np.maximum(region, region * (1 - occ) + hu * occ, out=region)
        scan.nodules.append({"centre": centre, "diameter": diameter, "texture": texture,
                             "attachment": attachment})


# ----------------------------------------------------------------------------- candidates
def _negative_position(rng, scan: _Scan, kind: str):
    """One false-candidate position (mm) of ``kind``, or None when the scan has no such structure."""
    jitter = rng.normal(0, 0.6, 3)
    if kind in ("vessel", "cross_section"):
        segs = [s for s in scan.vessels if 0.7 < max(s[2], s[3]) < 4.0]
        if kind == "cross_section":
            segs = [s for s in segs if abs(_unit(s[1] - s[0])[0]) > 0.8]
        if not segs:
            return None
        w = np.array([max(s[2], s[3]) for s in segs]) ** 2  # detectors fire on the thicker vessels
        a, b, _, _ = segs[rng.choice(len(segs), p=w / w.sum())]
        return a + rng.random() * (b - a) + jitter
    if kind == "bifurcation":
        bifs = [(p, 1.0 + 3.0 * (bulb > 0)) for p, r, bulb in scan.bifurcations if 0.6 < r < 4.0]
        if not bifs:
            return None
        w = np.array([b[1] for b in bifs])
        return bifs[rng.choice(len(bifs), p=w / w.sum())][0] + jitter
    if kind == "fissure":
        pts = scan.fissure_points
        return pts[rng.integers(len(pts))] + jitter if pts is not None and len(pts) else None
    if kind == "airway":
        if not scan.airways:
            return None
        a, b, ra, rb, wall = scan.airways[rng.integers(len(scan.airways))]
        d = _unit(b - a)
        return a + rng.random() * (b - a) + _perpendicular(rng, d) * ((ra + rb) / 2 + wall / 2) + jitter
    if kind == "pleura":
        if scan.pleura_points is None:
            return None
        p, nrm = scan.pleura_points[rng.integers(len(scan.pleura_points))]
        return p + nrm * rng.uniform(1.0, 4.0) + jitter
    raise ValueError(kind)


def _candidates(rng, scan: _Scan) -> list[tuple[np.ndarray, int, str]]:
    """Simulated detector output: (position mm, nodule index or -1, kind); marks ``detected``."""
    out = []
    for i, nod in enumerate(scan.nodules):
        p_miss = 0.04 + 0.1 * (nod["diameter"] < 5) + 0.08 * (nod["texture"] != "solid")
        nod["detected"] = bool(rng.random() >= p_miss)
        if nod["detected"]:
            for _ in range(rng.choice(_HITS_PER_NODULE)):
                offset = _unit(rng.normal(size=3)) * rng.uniform(0, 0.25) * nod["diameter"]
                out.append((nod["centre"] + offset, i, "nodule"))
    n_pos = len(out)
    n_neg = int(round(NEGATIVES_PER_POSITIVE * max(n_pos, 1) * rng.uniform(0.85, 1.15)))
    kinds, probs = list(NEGATIVE_KINDS), np.array(list(NEGATIVE_KINDS.values()))
    ext = scan.extent
    tries = 0
    while len(out) < n_pos + n_neg and tries < 50 * n_neg:
        tries += 1
        kind = kinds[rng.choice(len(kinds), p=probs / probs.sum())]
        pos = _negative_position(rng, scan, kind)
        if pos is None or np.any(pos < _FACE_MARGIN) or np.any(pos > ext - _FACE_MARGIN):
            continue
        if scan.sdf[tuple(np.round(pos / scan.spacing).astype(int))] > -0.5:
            continue  # the detector only searches the lung
        if any(np.linalg.norm(pos - n["centre"]) < n["diameter"] / 2 + 3 for n in scan.nodules):
            continue  # a candidate on a nodule would count as a hit, not a false candidate
        out.append((pos, -1, kind))
    return out


def _extract_patch(rng, padded: np.ndarray, spacing, pos, patch: int):
    """Patch of ``patch``^3 voxels centred near ``pos``; returns (patch, corner index in the scan)."""
    centre = np.round(pos / spacing).astype(int) + rng.integers(-1, 2, 3)
    start = centre - patch // 2
    p0 = start + patch  # offset into the padded volume
    return padded[p0[0]:p0[0] + patch, p0[1]:p0[1] + patch, p0[2]:p0[2] + patch], start


def _write_patch(path: Path, arr: np.ndarray, spacing, start) -> None:
    img = sitk.GetImageFromArray(np.round(arr).astype(np.int16))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    img.SetOrigin(tuple(float(o) for o in (start * spacing)[::-1]))
    sitk.WriteImage(img, str(path), useCompression=True)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


# ----------------------------------------------------------------------------- entry point
def generate(out_dir: Path, n_train_scans: int = 24, n_test_scans: int = 8, n_unlabeled_scans: int = 24,
             seed: int = 0, patch_size: int = 32) -> Path:
    """Write the NODULE_FPR dataset into ``out_dir`` (the dataset folder) and return it.

    Deterministic from ``seed``; scan ``k`` is rendered from the k-th sub-seed, so a scan does not
    change when another scan's split changes. Stale ``NODULE_*`` patches in the image folders are
    removed so the tables and the folders always agree.
    """
    out_dir = Path(out_dir)
    splits = ["train"] * n_train_scans + ["test"] * n_test_scans + ["unlabeled"] * n_unlabeled_scans
    if n_train_scans < 1 or patch_size < 4:
        raise ConfigurationError(f"NODULE_FPR into {out_dir}: needs at least one training scan and a patch "
                                 f"size of at least 4 (got {n_train_scans} and {patch_size})")
    for sub in _IMAGE_DIRS.values():
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
        for pattern in ("NODULE_*.nii.gz", ".tmp_*.nii.gz"):
            for old in (out_dir / sub).glob(pattern):
                old.unlink()
    seeds = np.random.SeedSequence(seed).spawn(len(splits))
    per_split: dict[str, list] = {s: [] for s in _IMAGE_DIRS}
    nodule_rows, scan_rows, next_nodule = [], [], 0
    for scan_id, (split, ss) in enumerate(zip(splits, seeds)):
        rng = np.random.default_rng(ss)
        scan = _render_scan(rng)
        cands = _candidates(rng, scan)
        ids = list(range(next_nodule, next_nodule + len(scan.nodules)))
        next_nodule += len(scan.nodules)
        for nid, nod in zip(ids, scan.nodules):
            z, y, x = nod["centre"]
            nodule_rows.append([scan_id, nid, split, f"{z:.2f}", f"{y:.2f}", f"{x:.2f}", f"{nod['diameter']:.2f}",
                                nod["detected"], nod["texture"], nod["attachment"]])
        scan_rows.append([scan_id, split])
        padded = np.pad(scan.volume, patch_size, constant_values=-1000)
        for k, (pos, nod_idx, kind) in enumerate(cands):
            arr, start = _extract_patch(rng, padded, scan.spacing, pos, patch_size)
            tmp = out_dir / _IMAGE_DIRS[split] / f".tmp_{scan_id}_{k}.nii.gz"  # renamed once numbered
            _write_patch(tmp, arr, scan.spacing, start)
            per_split[split].append((tmp, scan_id, ids[nod_idx] if nod_idx >= 0 else -1, pos, kind))
        logger.debug("scan %d (%s): %d nodules, %d candidates", scan_id, split, len(scan.nodules), len(cands))

    # shuffle within each split so a case number says nothing about its label
    order_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(len(splits) + 1)[-1])
    counts, case_no = {}, 0
    for split, sub in _IMAGE_DIRS.items():
        items = per_split[split]
        rows = []
        for k in order_rng.permutation(len(items)):
            tmp, scan_id, nid, pos, kind = items[k]
            case = f"NODULE_{case_no:05d}"
            case_no += 1
            tmp.rename(out_dir / sub / f"{case}_0000.nii.gz")
            rows.append([case, int(nid >= 0), scan_id, nid, *(f"{v:.2f}" for v in pos), kind])
        counts[split] = len(rows)
        if split != "unlabeled":
            _write_csv(out_dir / ("labelsTr.csv" if split == "train" else "labelsTs.csv"),
                       ["case", "label", "scan_id", "nodule_id", "z", "y", "x", "candidate_kind"], rows)
    _write_csv(out_dir / "nodules.csv", ["scan_id", "nodule_id", "split", "z", "y", "x", "diameter_mm",
                                         "detected", "texture", "attachment"], nodule_rows)
    _write_csv(out_dir / "scans.csv", ["scan_id", "split"], scan_rows)
    meta = {
        "name": NAME,
        "description": ("SYNTHETIC chest-CT candidate patches for nodule false-positive reduction (not real "
                        "patients): rendered lung parenchyma, vessel trees, airways, fissures, pleura and "
                        "nodules; label 1 = true nodule, 0 = false candidate of a simulated detector. "
                        "Positions in mm, (z, y, x), scan frame; nodules.csv lists every nodule, "
                        "including those the detector missed."),
        "synthetic": True, "task": "classification", "dimensionality": 3, "channel_names": {"0": "CT"},
        "labels": {"false_candidate": 0, "nodule": 1}, "file_ending": ".nii.gz",
        "labels_file": "labelsTr.csv", "test_labels_file": "labelsTs.csv",
        "numTraining": counts["train"], "numTest": counts["test"], "numUnlabeled": counts["unlabeled"],
        "nodules_file": "nodules.csv", "scans_file": "scans.csv",
        "reference": "Tajbakhsh et al., Surrogate supervision for medical image analysis, ISBI 2019",
        "surrogate_task": "SurrogateWGAN", "metric": "froc_auc_3fp",
        "patch_size": patch_size, "negatives_per_positive": NEGATIVES_PER_POSITIVE, "seed": seed,
    }
    (out_dir / "dataset.json").write_text(json.dumps(meta, indent=2))
    logger.info("NODULE_FPR written to %s: %d train, %d test, %d unlabeled patches",
                out_dir, counts["train"], counts["test"], counts["unlabeled"])
    return out_dir
