"""FUNDUS_DR: synthetic colour fundus-like photographs graded for diabetic retinopathy (0-4).

Stands in for application 3 of Tajbakhsh et al. (ISBI 2019), where rotation prediction is the
surrogate task. Rotation is only informative when the anatomy has a fixed layout, so every
image has one: a circular field of view on black, the optic disc on the nasal side, the fovea
about 2.7 disc diameters temporal of it, and vessel arcades that leave the disc upwards and
downwards and arch around the macula. Left eyes are mirror images of right eyes (right eye:
disc on the right of the image). The grade follows the kind and number of lesions, loosely
after the ICDR scale:

0  none
1  a few microaneurysms
2  more microaneurysms plus dot/blot haemorrhages and/or hard exudates
3  many haemorrhages in all four quadrants, venous beading, cotton-wool spots
4  neovascularisation (at the disc or elsewhere) and/or a pre-retinal haemorrhage

Colours and proportions were read off ``skimage.data.retina()``; the images are drawn from
scratch. Per-image variation (brightness, colour balance, vignetting, blur, noise, dust spots,
light reflexes) is larger than what lesions change in the image mean, so the grade cannot be
read from one global statistic. Not real patients.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

logger = logging.getLogger(__name__)

NAME = "FUNDUS_DR"
PREFIX = "FUNDUS"
GRADES = (0, 1, 2, 3, 4)
_SPLIT_CODE = {"Tr": 0, "Ts": 1, "Un": 2}
# A block of 20 consecutive cases of a split holds every grade, skewed like screening data.
_GRADE_BLOCK = (0,) * 9 + (1,) * 3 + (2,) * 4 + (3,) * 2 + (4,) * 2
_SS = 2  # supersampling factor: draw at 2x, then average 2x2 blocks (anti-aliasing)

# colours as fractions of 255, read off skimage.data.retina()
_RETINA_RGB = np.array([0.88, 0.35, 0.24], np.float32)
_DISC_RGB = np.array([0.98, 0.70, 0.45], np.float32)
_CUP_RGB = np.array([1.00, 0.85, 0.62], np.float32)
_EXUDATE_RGB = np.array([0.98, 0.86, 0.42], np.float32)
_COTTON_RGB = np.array([0.95, 0.82, 0.70], np.float32)
# multiplicative darkening at a vessel / red-lesion centre
# (real vessels darken green most and red least: ratios measured on skimage.data.retina())
_VEIN_F = np.array([0.80, 0.42, 0.58], np.float32)
_ARTERY_F = np.array([0.90, 0.62, 0.74], np.float32)
_NEO_F = np.array([0.78, 0.42, 0.55], np.float32)
_HAEM_F = np.array([0.68, 0.34, 0.45], np.float32)
_PRERET_F = np.array([0.50, 0.18, 0.25], np.float32)
_VESSEL_F = np.stack([_ARTERY_F, _VEIN_F, _NEO_F]).astype(np.float32)  # indexed by _Vessel.kind


@dataclass
class _Vessel:
    points: np.ndarray  # (N, 2) x, y in canonical frame (pixels of the supersampled canvas)
    widths: np.ndarray  # (N,)
    kind: int  # 0 artery, 1 vein, 2 new vessel


def case_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Per-case generator: case ``index`` of a split is the same however many cases are made."""
    return np.random.default_rng([seed, _SPLIT_CODE[split], index])


def case_grade(seed: int, split: str, index: int) -> int:
    """Grade of one case: a seeded shuffle of ``_GRADE_BLOCK`` per block of 20 cases."""
    block = index // len(_GRADE_BLOCK)
    perm = np.random.default_rng([seed, _SPLIT_CODE[split], 1_000_003, block]).permutation(len(_GRADE_BLOCK))
    return _GRADE_BLOCK[perm[index % len(_GRADE_BLOCK)]]


# ----------------------------------------------------------------------------- geometry helpers

def _turtle(rng, start, heading, length, step, curl, drift=0.0) -> np.ndarray:
    """A random-walk path: heading diffuses with ``curl`` (radians per sqrt(pixel))."""
    n = max(int(length / step), 2)
    dh = rng.normal(drift * step, curl * np.sqrt(step), n)
    dh[0] = 0.0
    h = heading + np.cumsum(dh)
    steps = np.stack([np.cos(h), np.sin(h)], 1) * step
    return np.asarray(start, float) + np.cumsum(steps, 0) - steps[0]


def _truncate(points: np.ndarray, fovea: np.ndarray, faz: float, radius: float) -> int:
    """Number of leading points outside the foveal avascular zone and inside the field of view."""
    bad = (np.hypot(*(points - fovea).T) < faz) | (np.hypot(*points.T) > radius)
    return int(np.argmax(bad)) if bad.any() else len(points)


def _tangent(points: np.ndarray, i: int) -> float:
    a, b = points[max(i - 2, 0)], points[min(i + 2, len(points) - 1)]
    return float(np.arctan2(b[1] - a[1], b[0] - a[0]))


def _vessel_tree(rng, disc, fovea, dd, radius, beading: bool) -> list[_Vessel]:
    """Arcades around the macula, nasal vessels, and two generations of branches.

    The four arcade vessels (superior vein, artery, inferior vein, artery) come first.
    """
    vessels: list[_Vessel] = []
    nasal: list[_Vessel] = []
    w_vein, w_art = dd / 7.0, dd / 9.5
    a0 = (fovea[0] - disc[0]) * rng.uniform(0.9, 1.0)
    for sgn in (-1.0, 1.0):  # superior (up, y < 0), inferior
        b0 = a0 * rng.uniform(0.5, 0.62)
        for kind, w0, db in ((1, w_vein, rng.uniform(0.0, 0.08)), (0, w_art, rng.uniform(-0.08, 0.0))):
            th_end = rng.uniform(0.05, 0.15) * np.pi
            th = np.linspace(np.pi, th_end, 200)
            t = (np.pi - th) / np.pi
            g = 1.0 + rng.uniform(0.9, 1.3) * t ** 1.5
            wob = 0.025 * radius * np.sin(2 * np.pi * (rng.uniform(1, 2.5) * t + rng.uniform()))
            x = disc[0] + a0 - (a0 * g + wob * t) * np.cos(np.pi - th)
            y = disc[1] + sgn * ((b0 * (1 + db)) * g + wob * t) * np.sin(th)
            vessels.append(_Vessel(np.stack([x, y], 1), w0 * (1 - 0.5 * t), kind))
        for kind, w0 in ((1, w_vein * 0.7), (0, w_art * 0.7)):  # nasal
            head = np.pi + sgn * rng.uniform(0.35, 0.9)
            p = _turtle(rng, disc, head, rng.uniform(0.5, 0.8) * radius, 2.0, 0.04, -sgn * 0.002)
            nasal.append(_Vessel(p, w0 * np.linspace(1, 0.45, len(p)), kind))
    vessels += nasal
    for kind, w0 in ((1, w_vein * 0.5), (0, w_art * 0.5)):  # small temporal vessels to the macula
        for sgn in (-1.0, 1.0):
            p = _turtle(rng, disc, sgn * rng.uniform(0.15, 0.4), rng.uniform(0.4, 0.7) * a0, 2.0, 0.05)
            vessels.append(_Vessel(p, w0 * np.linspace(1, 0.4, len(p)), kind))

    faz = 0.3 * dd
    parents = list(vessels)
    for generation in range(2):
        children = []
        for v in parents:
            nb = rng.integers(3, 7) if generation == 0 else rng.integers(0, 3)
            if len(v.points) < 12:
                continue
            for i in rng.integers(int(0.12 * len(v.points)), len(v.points) - 4, nb):
                head = _tangent(v.points, i) + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
                w = v.widths[i] * rng.uniform(0.6, 0.8)
                p = _turtle(rng, v.points[i], head, rng.uniform(0.15, 0.45) * radius, 1.0, 0.06)
                children.append(_Vessel(p, w * np.linspace(1, 0.5, len(p)), v.kind))
        vessels += children
        parents = children

    out = []
    for v in vessels:
        n = _truncate(v.points, fovea, faz, radius * 1.02)
        if n < 3:
            continue
        w = v.widths[:n]
        if beading and v.kind == 1 and w[0] > 0.5 * w_vein:
            s = np.arange(n) * np.hypot(*np.diff(v.points[:2], axis=0)[0])
            w = w * (1 + 0.55 * np.clip(np.sin(2 * np.pi * s / (4.0 * w_vein)), 0, None))
        out.append(_Vessel(v.points[:n], w, v.kind))
    return out


def _new_vessels(rng, centre, spread, dd, count) -> list[_Vessel]:
    """Fine tortuous loops (neovascularisation) around ``centre``."""
    out = []
    for _ in range(count):
        start = centre + rng.normal(0, spread, 2)
        p = _turtle(rng, start, rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 1.0) * dd, 1.0, 0.45)
        out.append(_Vessel(p, np.full(len(p), dd / 12.0), 2))
    return out


# ----------------------------------------------------------------------------- rasterisation

def _to_image(points: np.ndarray, eye: str, angle: float, centre: np.ndarray) -> np.ndarray:
    """Canonical frame (left eye: disc left, temporal = +x; origin at the field centre) -> pixels."""
    p = np.array(points, float).reshape(-1, 2)
    if eye == "right":
        p[:, 0] = -p[:, 0]
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], 1) + centre


def _vessel_darkening(vessels: list[_Vessel], size: int, to_img) -> np.ndarray:
    """Multiplicative factor (size, size, 3) of all vessels, drawn at ``_SS`` x and averaged down.

    Each pixel takes the profile of its nearest centreline point (a Euclidean feature transform):
    one pass for all vessels, where a crossing shows the wider vessel.
    """
    shape = (size * _SS, size * _SS)
    pts, wid, knd = [], [], []
    for v in vessels:  # resample so that consecutive points are under a (supersampled) pixel apart
        seg = np.hypot(*np.diff(v.points, axis=0).T)
        s = np.concatenate([[0], np.cumsum(seg)])
        ss = np.arange(0, s[-1], 0.35)
        pts.append(np.stack([np.interp(ss, s, v.points[:, 0]), np.interp(ss, s, v.points[:, 1])], 1))
        wid.append(np.interp(ss, s, v.widths))
        knd.append(np.full(len(ss), v.kind))
    p = to_img(np.concatenate(pts)) * _SS
    w, k = np.concatenate(wid) * _SS, np.concatenate(knd)
    ix, iy = p[:, 0].astype(int), p[:, 1].astype(int)
    ok = (ix >= 0) & (iy >= 0) & (ix < shape[1]) & (iy < shape[0])
    order = np.argsort(w[ok])  # the widest vessel through a pixel is written last and wins
    ix, iy, w, k = ix[ok][order], iy[ok][order], w[ok][order], k[ok][order]
    fac = np.ones(shape + (3,), np.float32)
    if len(w):
        wmap = np.zeros(shape, np.float32)
        kmap = np.zeros(shape, np.int8)
        wmap[iy, ix] = w
        kmap[iy, ix] = k
        dist, (ny, nx) = ndimage.distance_transform_edt(wmap == 0, return_indices=True)
        near = np.nonzero(dist < 1.4 * w.max() + 1.5)  # only pixels a vessel can reach
        wn, kn, dn = wmap[ny[near], nx[near]], kmap[ny[near], nx[near]], dist[near].astype(np.float32)
        sigma = np.maximum(wn / 2.5, 0.5)
        amp = np.clip(wn / 2.0, 0.45, 1.0) * np.exp(-0.5 * (dn / sigma) ** 2)
        fac[near] = 1 - amp[:, None] * (1 - _VESSEL_F[kn])
    return fac.reshape(size, _SS, size, _SS, 3).mean((1, 3))


def _stamp(layer, cx, cy, rx, ry, ang, soft=0.7, gauss=False, amp=1.0, flat_top=None):
    """Max-composite one anti-aliased (or Gaussian) ellipse into ``layer`` inside its box."""
    r = max(rx, ry) * (2.5 if gauss else 1.0) + 2
    y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, layer.shape[0])
    x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, layer.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    c, s = np.cos(ang), np.sin(ang)
    u = (c * (xx - cx) + s * (yy - cy)) / rx
    v = (-s * (xx - cx) + c * (yy - cy)) / ry
    d = np.hypot(u, v)
    if gauss:
        a = np.exp(-0.5 * (d * 1.6) ** 2)
    else:
        a = np.clip((1 - d) * min(rx, ry) / soft + 0.5, 0, 1)
    if flat_top is not None:  # boat shape: blood settles below a horizontal level
        a = a * np.clip(yy - flat_top + 0.5, 0, 1)
    np.maximum(layer[y0:y1, x0:x1], amp * a, out=layer[y0:y1, x0:x1])


def _smooth_noise(rng, shape, cell: float) -> np.ndarray:
    """Zero-mean smooth noise (std about 1) with features about ``cell`` pixels wide."""
    n = max(int(round(shape[0] / cell)), 2) + 1
    small = rng.normal(0, 1, (n, n)).astype(np.float32)
    big = Image.fromarray(small, mode="F").resize((shape[1], shape[0]), Image.BICUBIC)
    return np.asarray(big) * 1.4


# ----------------------------------------------------------------------------- one image

def _sample_retina_point(rng, n, radius, disc, fovea, dd, spread=None):
    """Lesion positions: uniform in the field (or Gaussian around the fovea), off the disc."""
    out = []
    while len(out) < n:
        if spread is None:
            r, t = radius * 0.88 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
            p = np.array([r * np.cos(t), r * np.sin(t)])
        else:
            p = fovea + rng.normal(0, spread, 2)
        if np.hypot(*p) < 0.9 * radius and np.hypot(*(p - disc)) > 0.75 * dd:
            out.append(p)
    return np.array(out).reshape(-1, 2)


def render_fundus(rng: np.random.Generator, grade: int, eye: str, size: int = 128) -> np.ndarray:
    """One synthetic fundus photograph, (size, size, 3) uint8."""
    h = size
    shape = (h, h)
    centre = h / 2 + rng.normal(0, 0.01 * h, 2)
    radius = h * rng.uniform(0.455, 0.485)
    angle = np.deg2rad(rng.normal(0, 3.0))
    dd = radius * rng.uniform(0.19, 0.23)  # disc diameter
    fovea = np.array([0.08 * radius, rng.normal(0, 0.02 * radius)])  # canonical: left eye
    disc = fovea - np.array([2.7 * dd * rng.uniform(0.92, 1.08), rng.uniform(0.0, 0.12) * dd])

    def to_img(p):
        return _to_image(p, eye, angle, centre)

    yy, xx = np.mgrid[0:h, 0:h].astype(np.float32) + 0.5
    disc_i, fovea_i = to_img(disc)[0], to_img(fovea)[0]
    rr = np.hypot(xx - centre[0], yy - centre[1])

    # background: pigment colour varies between people, choroidal mottling
    base = _RETINA_RGB * np.array([rng.uniform(0.92, 1.05), rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)])
    tex = 1 + 0.02 * _smooth_noise(rng, shape, h / 8) + 0.012 * _smooth_noise(rng, shape, h / 40)
    img = base.astype(np.float32) * tex[..., None]
    # macula and fovea: darker, redder
    dfv = np.hypot(xx - fovea_i[0], yy - fovea_i[1])
    mac = np.float32(1) - rng.uniform(0.1, 0.2) * np.exp(-0.5 * (dfv / (0.9 * dd)) ** 2) \
        - rng.uniform(0.1, 0.2) * np.exp(-0.5 * (dfv / (0.22 * dd)) ** 2)
    img *= mac[..., None] ** np.float32([0.7, 1.4, 1.6])
    # optic disc: bright yellowish, slightly taller than wide, pale cup towards the temporal side
    disc_layer = np.zeros(shape, np.float32)
    rx = dd / 2 * rng.uniform(0.9, 1.0)
    _stamp(disc_layer, *disc_i, rx, rx * rng.uniform(1.05, 1.2), angle, soft=0.06 * dd)
    cup_layer = np.zeros(shape, np.float32)
    cup_c = to_img(disc + np.array([0.08 * dd, 0]))[0]
    cr = rx * rng.uniform(0.3, 0.55)
    _stamp(cup_layer, *cup_c, cr, cr * 1.1, angle, gauss=True)
    disc_rgb = _DISC_RGB * (1 - 0.08 * _smooth_noise(rng, shape, dd / 2)[..., None])
    img = img * (1 - disc_layer[..., None]) + disc_layer[..., None] * disc_rgb
    img = img * (1 - cup_layer[..., None]) + cup_layer[..., None] * _CUP_RGB

    # vessels (with new vessels for grade 4)
    vessels = _vessel_tree(rng, disc, fovea, dd, radius, beading=grade >= 3)
    preretinal = False
    if grade == 4:
        kind = rng.choice(["nvd", "nve", "both", "preretinal"], p=[0.4, 0.25, 0.2, 0.15])
        if kind in ("nvd", "both", "preretinal"):
            vessels += _new_vessels(rng, disc, 0.4 * dd, dd, rng.integers(14, 26))
        if kind in ("nve", "both"):
            for _ in range(rng.integers(1, 3)):
                main = vessels[rng.integers(0, 4)]
                vessels += _new_vessels(rng, main.points[rng.integers(len(main.points) // 3, len(main.points))],
                                        0.3 * dd, dd * 0.8, rng.integers(8, 16))
        preretinal = kind == "preretinal" or rng.uniform() < 0.2
    img *= _vessel_darkening(vessels, size, to_img)

    # lesions: red (microaneurysms, haemorrhages), yellow (exudates), white (cotton wool)
    red, yellow, white, pre = (np.zeros(shape, np.float32) for _ in range(4))
    base_grade = rng.choice([2, 3]) if grade == 4 else grade
    n_ma = {0: 0, 1: rng.integers(1, 5), 2: rng.integers(4, 14), 3: rng.integers(10, 26)}[base_grade]
    for p in to_img(_sample_retina_point(rng, n_ma, radius, disc, fovea, dd, spread=1.6 * dd)):
        r = dd * rng.uniform(0.06, 0.09)
        _stamp(red, *p, r, r, 0.0, amp=rng.uniform(0.85, 1.0))
    n_haem, n_exu_clusters, n_cws = 0, 0, 0
    if base_grade == 2:
        n_haem, n_exu_clusters = rng.integers(0, 6), rng.integers(0, 3)
        if n_haem + n_exu_clusters == 0:
            n_haem = 2
        n_cws = int(rng.uniform() < 0.2)
    elif base_grade == 3:
        n_haem, n_exu_clusters, n_cws = rng.integers(8, 14), rng.integers(0, 3), rng.integers(2, 6)
    if n_haem:
        pts = _sample_retina_point(rng, 4 * n_haem if base_grade == 3 else n_haem, radius, disc, fovea, dd)
        if base_grade == 3:  # all four quadrants
            quad = (pts[:, 0] > fovea[0]).astype(int) * 2 + (pts[:, 1] > 0)
            pts = np.concatenate([pts[quad == q][:n_haem] for q in range(4)])
        for p in to_img(pts):
            if rng.uniform() < 0.25:  # flame: elongated along the nerve fibres (radial to the disc)
                ang = np.arctan2(p[1] - disc_i[1], p[0] - disc_i[0])
                _stamp(red, *p, dd * rng.uniform(0.2, 0.35), dd * rng.uniform(0.06, 0.1), ang, amp=0.85)
            else:  # dot / blot: a few overlapping ellipses
                for _ in range(rng.integers(1, 4)):
                    q = p + rng.normal(0, 0.06 * dd, 2)
                    _stamp(red, *q, dd * rng.uniform(0.06, 0.14), dd * rng.uniform(0.06, 0.14),
                           rng.uniform(0, np.pi), amp=rng.uniform(0.75, 0.95))
    for c in _sample_retina_point(rng, n_exu_clusters, radius, disc, fovea, dd, spread=1.3 * dd):
        for p in to_img(c + rng.normal(0, 0.25 * dd, (rng.integers(3, 12), 2))):
            r = dd * rng.uniform(0.04, 0.1)
            _stamp(yellow, *p, r, r * rng.uniform(0.7, 1.3), rng.uniform(0, np.pi), soft=0.5)
    for _ in range(n_cws):  # near the arcades
        v = vessels[rng.integers(0, 4)]
        p = to_img(v.points[rng.integers(len(v.points) // 5, len(v.points))] + rng.normal(0, 0.3 * dd, 2))[0]
        _stamp(white, *p, dd * rng.uniform(0.2, 0.35), dd * rng.uniform(0.15, 0.25), rng.uniform(0, np.pi),
               gauss=True, amp=rng.uniform(0.55, 0.8))
    if preretinal:
        v = vessels[rng.integers(0, 4)]
        p = to_img(v.points[rng.integers(len(v.points) // 4, len(v.points) // 2)])[0]
        r = dd * rng.uniform(0.5, 0.9)
        _stamp(pre, *p, r, r * 0.9, 0.0, soft=1.0, flat_top=p[1] - r * rng.uniform(0.1, 0.5))
    img *= 1 - red[..., None] * (1 - _HAEM_F)
    img = img * (1 - yellow[..., None]) + yellow[..., None] * _EXUDATE_RGB * tex[..., None]
    img = img * (1 - white[..., None]) + white[..., None] * _COTTON_RGB
    img *= 1 - pre[..., None] * (1 - _PRERET_F)

    # confounders seen in any grade: nerve-fibre light reflex, dust on the lens
    if rng.uniform() < 0.5:
        sheen = np.zeros(shape, np.float32)
        for v in vessels[:4]:
            p = to_img(v.points[len(v.points) // 3])[0]
            _stamp(sheen, *p, dd * 0.7, dd * 0.35, rng.uniform(0, np.pi), gauss=True, amp=rng.uniform(0.1, 0.25))
        img = img + sheen[..., None] * (1 - img) * 0.6
    for _ in range(rng.poisson(0.6)):
        dust = np.zeros(shape, np.float32)
        p = centre + rng.uniform(-0.6, 0.6, 2) * radius
        _stamp(dust, *p, dd * rng.uniform(0.2, 0.45), dd * rng.uniform(0.2, 0.45), 0.0, gauss=True)
        img *= 1 - rng.uniform(0.1, 0.25) * dust[..., None]

    # camera: uneven illumination (vignetting), exposure, colour balance, gamma, focus, noise
    off = rng.normal(0, 0.12 * radius, 2)
    rv = np.hypot(xx - centre[0] - off[0], yy - centre[1] - off[1]) / radius
    img *= (1 - rng.uniform(0.1, 0.45) * np.clip(rv, 0, 1.3) ** 2.5)[..., None]
    if rng.uniform() < 0.5:  # haze (media opacity): lowers contrast
        haze = rng.uniform(0.05, 0.35)
        img = img * (1 - haze) + haze * img.mean((0, 1)) * np.float32(1.1)
    img *= np.float32(rng.uniform(0.72, 1.12) * np.array([1, rng.normal(1, 0.06), rng.normal(1, 0.06)]))
    img = np.clip(img, 0, 1) ** np.float32(rng.uniform(0.85, 1.18))
    img *= np.clip(radius - rr + 0.5, 0, 1)[..., None]  # circular field of view on black
    sigma = rng.uniform(0.1, 0.6) * size / 128
    img = ndimage.gaussian_filter(img, (sigma, sigma, 0))
    img += rng.standard_normal(img.shape, np.float32) * np.float32(rng.uniform(0.004, 0.015))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_case(seed: int, split: str, index: int, size: int = 128) -> tuple[np.ndarray, int, str]:
    """(image, grade, eye) of case ``index`` of ``split`` ("Tr", "Ts", "Un")."""
    grade = case_grade(seed, split, index)
    rng = case_rng(seed, split, index)
    eye = "right" if rng.uniform() < 0.5 else "left"
    return render_fundus(rng, grade, eye, size), grade, eye


# ----------------------------------------------------------------------------- dataset

def generate(out_dir: Path, n_train: int = 300, n_test: int = 100, n_unlabeled: int = 600,
             seed: int = 0, size: int = 128) -> Path:
    """Write the FUNDUS_DR raw dataset into ``out_dir`` (the dataset folder) and return it.

    Case ids run on across splits (training 0.., test after them, unlabeled last) so they stay
    unique; the content of case i of a split depends only on (seed, split, i). Grades come in
    shuffled blocks of 20 cases (9 x 0, 3 x 1, 4 x 2, 2 x 3, 2 x 4), so every grade is present
    in any split of 20 or more cases.
    """
    out = Path(out_dir)
    counts = {"Tr": n_train, "Ts": n_test, "Un": n_unlabeled}
    first = 0
    for split, n in counts.items():
        folder = out / f"images{split}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(n):
            case = f"{PREFIX}_{first + i:04d}"
            img, grade, eye = make_case(seed, split, i, size)
            Image.fromarray(img, mode="RGB").save(folder / f"{case}_0000.png", compress_level=1)
            rows.append((case, grade, eye))
        if split != "Un":
            with open(out / f"labels{split}.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["case", "label", "eye"])
                w.writerows(rows)
        first += n
        logger.info("%s: wrote %d %s cases", NAME, n, split)
    meta = {
        "name": NAME,
        "description": (
            "SYNTHETIC fundus-like colour photographs (not real patients) with diabetic-retinopathy "
            "grades 0-4 set by procedurally drawn lesions (microaneurysms, haemorrhages, exudates, "
            "cotton-wool spots, venous beading, neovascularisation). Fixed anatomy (disc nasal, "
            "fovea temporal, vessel arcades) so rotation prediction is informative. Generated by "
            "selfconfig.examples.fundus_dr."
        ),
        "synthetic": True,
        "task": "classification",
        "dimensionality": 2,
        "channel_names": {"0": "RGB"},
        "labels": {f"grade_{g}": g for g in GRADES},
        "file_ending": ".png",
        "labels_file": "labelsTr.csv",
        "test_labels_file": "labelsTs.csv",
        "numTraining": n_train,
        "numTest": n_test,
        "numUnlabeled": n_unlabeled,
        "reference": "Tajbakhsh et al., Surrogate supervision for medical image analysis, ISBI 2019",
        "surrogate_task": "SurrogateRotation",
        "metric": "quadratic_weighted_kappa",
        "generator": {"seed": seed, "size": size},
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out
