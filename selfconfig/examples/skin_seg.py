"""SKIN_SEG: synthetic colour photographs of skin regions, segmented by body part.

Stands in for application 4 of Tajbakhsh et al. (ISBI 2019), where colourisation
(``SurrogateColor``) is the surrogate task: colour carries most of the signal for skin, so the
images are colour photographs of body parts at any orientation on varied backgrounds.

Each image is painted back to front: a procedural background (wall, wood, fabric, grass or
foliage, sky over ground, tiles), a few objects (some skin-coloured), then one to three body
parts, each drawn from signed-distance shapes with shading, texture, freckles or hair, some
partly covered by clothing. Labels:

* face (oval with darker eyes, brows and mouth; the eyes and mouth count as face), hand
  (palm, four fingers, thumb), foot (sole, heel, five toes), limb (tapered, sometimes bent
  arm or leg, also the forearm behind a hand), trunk (rounded torso with shoulders);
* scalp: skin visible through hair, either the top of a face's head (thinning hair or bald)
  or a head seen from above with hair strands radiating from the crown; where the hair is
  dense enough to hide the skin, the pixel is background;
* uncertain, where an annotator would be unsure: (1) a band of about +-1 blur width around a
  body part whose edge is blurred (defocus/motion; about 40 % of parts), and (2) objects of
  skin-like colour and weak texture (light wood, sand, cardboard, leather) -- the same kind
  of object in a colour far from skin stays background. dataset.json declares it as nnU-Net
  v2's ``ignore`` label (value 7, the highest): those pixels count neither in the loss nor in
  the Dice, and no prediction contains them.

Hair, clothing and everything else are background. Not real people.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

logger = logging.getLogger(__name__)

NAME = "SKIN_SEG"
PREFIX = "SKIN"
# "ignore": the uncertain pixels (nnU-Net v2's ignore label: the highest value, never trained or scored)
LABELS = {"background": 0, "face": 1, "hand": 2, "foot": 3, "limb": 4, "trunk": 5, "scalp": 6, "ignore": 7}
UNCERTAIN = LABELS["ignore"]
_SPLIT_CODE = {"Tr": 0, "Ts": 1, "Un": 2}
# skin tones from very light to very dark (sRGB, 0-1)
_TONES = np.array([[0.96, 0.83, 0.75], [0.90, 0.71, 0.59], [0.78, 0.56, 0.42],
                   [0.56, 0.37, 0.26], [0.31, 0.20, 0.15]], np.float32)
_HAIR = np.array([[0.06, 0.05, 0.04], [0.22, 0.14, 0.08], [0.45, 0.30, 0.16],
                  [0.78, 0.64, 0.40], [0.55, 0.24, 0.10], [0.70, 0.70, 0.70]], np.float32)


def case_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Per-case generator: case ``index`` of a split is the same however many cases are made."""
    return np.random.default_rng([seed, _SPLIT_CODE[split], index])


# ----------------------------------------------------------------------------- noise and shapes

def _smooth_noise(rng, size: int, cell: float, aspect: float = 1.0) -> np.ndarray:
    """Zero-mean smooth noise (std about 1), features ``cell`` pixels wide (x ``aspect`` along y)."""
    ny = max(int(round(size / (cell * aspect))), 2) + 1
    nx = max(int(round(size / cell)), 2) + 1
    small = rng.normal(0, 1, (ny, nx)).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((size, size), Image.BICUBIC)) * 1.4


def _local(yy, xx, cx, cy, ang):
    """Coordinates of every pixel in a part's frame (u across, v along; ang = rotation)."""
    c, s = np.cos(ang), np.sin(ang)
    dx, dy = xx - cx, yy - cy
    return c * dx + s * dy, -s * dx + c * dy


def _ellipse(u, v, a, b, cu=0.0, cv=0.0):
    """Approximate signed distance (pixels) to an ellipse with half-axes a, b."""
    return (np.hypot((u - cu) / a, (v - cv) / b) - 1) * min(a, b)


def _capsule(u, v, a, b, r0, r1=None):
    """Signed distance to a segment a->b with radius tapering r0 -> r1."""
    r1 = r0 if r1 is None else r1
    (au, av), (bu, bv) = a, b
    du, dv = bu - au, bv - av
    h = np.clip(((u - au) * du + (v - av) * dv) / (du * du + dv * dv + 1e-9), 0, 1)
    return np.hypot(u - au - h * du, v - av - h * dv) - (r0 + h * (r1 - r0))


def _rbox(u, v, hw, hh, r):
    """Signed distance to a box of half sizes hw, hh with corner radius r."""
    qu, qv = np.abs(u) - hw + r, np.abs(v) - hh + r
    return np.hypot(np.maximum(qu, 0), np.maximum(qv, 0)) + np.minimum(np.maximum(qu, qv), 0) - r


# ----------------------------------------------------------------------------- textures

def _fabric(rng, yy, xx, size) -> np.ndarray:
    """Cloth: solid, stripes, checks or knit, with folds."""
    col = rng.uniform(0.05, 0.95, 3).astype(np.float32)
    ang = rng.uniform(0, np.pi)
    u, v = _local(yy, xx, 0, 0, ang)
    kind = rng.integers(0, 4)
    period = rng.uniform(3, 12) * size / 128
    if kind == 1:
        pat = (np.sin(2 * np.pi * u / period) > 0)[..., None]
        img = np.where(pat, col, rng.uniform(0.05, 0.95, 3).astype(np.float32))
    elif kind == 2:
        pat = ((np.sin(2 * np.pi * u / period) > 0) ^ (np.sin(2 * np.pi * v / period) > 0))[..., None]
        img = np.where(pat, col, col * rng.uniform(0.4, 0.8))
    else:
        img = np.broadcast_to(col, yy.shape + (3,)).copy()
    weave = 1 + (0.06 if kind == 3 else 0.025) * np.sin(2.2 * u) * np.sin(2.2 * v)
    folds = 1 + 0.12 * _smooth_noise(rng, size, size / 5, rng.uniform(0.3, 3))
    return img * (weave * folds)[..., None]


def _wood(rng, yy, xx, size, col) -> np.ndarray:
    u, v = _local(yy, xx, 0, 0, rng.uniform(0, np.pi))
    warp = _smooth_noise(rng, size, size / 3) * rng.uniform(2, 6)
    grain = np.sin(2 * np.pi * (u + warp) / rng.uniform(3, 9)) * 0.5 + 0.5
    fine = _smooth_noise(rng, size, 2, 6)
    contrast = rng.uniform(0.08, 0.25)
    return col * (1 - contrast * grain - 0.03 * fine)[..., None]


def _background(rng, yy, xx, size) -> np.ndarray:
    """A random indoor or outdoor scene behind the people."""
    kind = rng.choice(["wall", "wood", "fabric", "grass", "sky", "tiles"])
    fine = rng.normal(0, 1, yy.shape).astype(np.float32)
    if kind == "wall":
        col = rng.uniform(0.3, 0.95, 3).astype(np.float32)
        img = col * (1 + 0.04 * _smooth_noise(rng, size, size / 6) + 0.02 * fine)[..., None]
    elif kind == "wood":  # darker, redder or greyer woods; skin-like wood comes as uncertain objects
        col = np.array(rng.choice([[0.35, 0.2, 0.1], [0.5, 0.25, 0.12], [0.45, 0.4, 0.35], [0.25, 0.15, 0.1]]))
        img = _wood(rng, yy, xx, size, (col * rng.uniform(0.8, 1.2)).astype(np.float32))
    elif kind == "fabric":
        img = _fabric(rng, yy, xx, size)
    elif kind == "grass":  # grass blades / foliage: vertical streaks at two scales, greens
        g = _smooth_noise(rng, size, rng.uniform(1.0, 2.0), rng.uniform(3, 8)) + 0.35 * _smooth_noise(rng, size, 10)
        dark = np.array([0.05, 0.18, 0.04]) * rng.uniform(0.7, 1.3)
        light = np.array([0.35, 0.6, 0.15]) * rng.uniform(0.8, 1.2)
        t = np.clip(0.5 + 0.3 * g, 0, 1)[..., None]
        img = (dark * (1 - t) + light * t).astype(np.float32)
    elif kind == "sky":  # sky gradient with clouds, over grass, water or a wall
        u, v = _local(yy, xx, size / 2, size * rng.uniform(0.4, 1.1), rng.normal(0, 0.1))
        top = np.array([0.25, 0.45, 0.85]) * rng.uniform(0.8, 1.1)
        hor = np.array([0.75, 0.85, 0.95])
        t = np.clip(1 + v / size, 0, 1)[..., None]
        img = (top * (1 - t) + hor * t).astype(np.float32)
        cloud = np.clip(_smooth_noise(rng, size, size / 4) - rng.uniform(0.2, 1.2), 0, 1)[..., None]
        img = img * (1 - cloud) + 0.95 * cloud
        ground = np.clip(v + 0.5, 0, 1)[..., None]
        low = np.array(rng.choice([[0.15, 0.35, 0.1], [0.1, 0.25, 0.4], [0.4, 0.4, 0.42]]), np.float32)
        img = img * (1 - ground) + ground * low * (1 + 0.1 * _smooth_noise(rng, size, 3, 0.3))[..., None]
    else:  # tiles with grout
        u, v = _local(yy, xx, 0, 0, rng.uniform(0, np.pi / 2))
        p = rng.uniform(10, 30) * size / 128
        col = rng.uniform(0.2, 0.95, 3).astype(np.float32)
        grout = ((np.mod(u, p) < 1.2) | (np.mod(v, p) < 1.2))[..., None]
        tile_var = 1 + 0.06 * np.sin(np.floor(u / p) * 12.9898 + np.floor(v / p) * 78.233)[..., None]
        img = np.where(grout, 0.6 * col + 0.2, col * tile_var) * (1 + 0.015 * fine)[..., None]
    # a shadow or light gradient across the scene
    u, _ = _local(yy, xx, size / 2, size / 2, rng.uniform(0, 2 * np.pi))
    return img * (1 + rng.uniform(0, 0.3) * u / size)[..., None]


def _skin_tone(rng, darkness: float | None = None) -> np.ndarray:
    t = rng.uniform(0, 1) if darkness is None else darkness
    i = min(int(t * 4), 3)
    f = t * 4 - i
    tone = _TONES[i] * (1 - f) + _TONES[i + 1] * f
    return (tone + rng.normal(0, [0.02, 0.02, 0.03])).astype(np.float32)  # undertone


# ----------------------------------------------------------------------------- scene

class _Scene:
    """Canvas and label map painted back to front."""

    def __init__(self, rng: np.random.Generator, size: int):
        self.rng, self.size = rng, size
        self.yy, self.xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
        self.img = _background(rng, self.yy, self.xx, size)
        self.label = np.zeros((size, size), np.uint8)
        u, _ = _local(self.yy, self.xx, size / 2, size / 2, rng.uniform(0, 2 * np.pi))
        self.light = 1 + rng.uniform(0.1, 0.35) * u / size  # key light from one side
        self.skin_tex = (0.035 * _smooth_noise(rng, size, size / 10) + 0.025 * _smooth_noise(rng, size, 1.5))

    def paint(self, sdf, colour, label=None, soft=0.5, band=False, alpha_scale=None):
        """Alpha-composite a shape; set its label inside; optionally mark its blurred edge uncertain."""
        a = 0.5 - 0.5 * np.tanh(sdf / soft)
        if alpha_scale is not None:
            a = a * alpha_scale
        self.img = self.img * (1 - a[..., None]) + a[..., None] * colour
        if label is not None:
            self.label[sdf < 0] = label
            if band:
                self.label[np.abs(sdf) < 1.1 * soft] = UNCERTAIN

    def skin(self, sdf, tone, thickness, spots=True):
        """Skin colour over a shape: rounded shading, key light, blotches, freckles or hair."""
        depth = np.clip(-sdf / thickness, 0, 1)
        shade = (0.7 + 0.3 * np.sqrt(depth)) * self.light * (1 + self.skin_tex)
        col = tone * shade[..., None]
        rng = self.rng
        if spots and rng.uniform() < 0.35:  # freckles / moles, or short body hairs
            dots = (rng.uniform(size=sdf.shape) < rng.uniform(0.005, 0.03)).astype(np.float32)
            if rng.uniform() < 0.5:
                dots = ndimage.gaussian_filter(dots, 0.6) * 3
                col = col * (1 - 0.35 * np.clip(dots, 0, 1)[..., None] * np.array([0.6, 0.8, 0.9], np.float32))
            else:
                hair = ndimage.uniform_filter1d(dots, 4, axis=rng.integers(0, 2)) * 2
                col = col * (1 - 0.35 * np.clip(hair, 0, 1))[..., None]
        if rng.uniform() < 0.3:  # sheen on the lit side
            col = col + 0.12 * (depth ** 2 * np.clip(self.light - 1, 0, 1) * 3)[..., None]
        return col

    def part_edge(self):
        """Edge softness of a part: sharp, or blurred (then its border band is uncertain)."""
        if self.rng.uniform() < 0.4:
            return float(self.rng.uniform(1.2, 2.5)) * self.size / 128, True
        return 0.5, False

    def clothing(self, sdf_part, u, v, start, direction=1.0, margin=1.5):
        """Cloth over the part beyond ``v * direction > start`` (sleeve, trouser leg, shirt)."""
        sdf = np.maximum(sdf_part - margin * self.size / 128, start - direction * v)
        self.paint(sdf, _fabric(self.rng, self.yy, self.xx, self.size), label=0, soft=0.6)


# ----------------------------------------------------------------------------- body parts

def _face(sc: _Scene, cx, cy, ang, s, tone):
    rng = sc.rng
    u, v = _local(sc.yy, sc.xx, cx, cy, ang)
    a, b = 0.36 * s, 0.48 * s
    soft, band = sc.part_edge()
    head = np.minimum(_ellipse(u, v, a, b), _ellipse(u, v, a * 1.05, b * 0.8, cv=-0.25 * b))
    hair_col = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.8, 1.2)
    hair_style = rng.choice(["full", "thin", "bald"], p=[0.55, 0.3, 0.15])
    if hair_style == "full":  # hair volume behind and around the head
        sc.paint(_ellipse(u, v, a * 1.25, b * 0.95, cv=-0.3 * b), hair_col * (1 + 0.3 * sc.skin_tex[..., None] * 4),
                 label=0, soft=0.8)
    sc.paint(head, sc.skin(head, tone, 0.5 * a), LABELS["face"], soft, band)
    # features: eyes, brows, mouth (part of the face region), nose shadow
    for side in (-1, 1):
        sc.paint(_ellipse(u, v, 0.17 * a, 0.07 * b, side * 0.38 * a, -0.08 * b), np.float32([0.92, 0.9, 0.88]), soft=0.5)
        sc.paint(_ellipse(u, v, 0.08 * a, 0.06 * b, side * 0.38 * a, -0.08 * b), hair_col * 0.5 + 0.02, soft=0.5)
        sc.paint(_capsule(u, v, (side * 0.2 * a, -0.22 * b), (side * 0.58 * a, -0.2 * b), 0.035 * b),
                 hair_col, soft=0.6)
    sc.paint(_ellipse(u, v, 0.3 * a, 0.075 * b, 0, 0.5 * b), tone * np.float32([0.75, 0.45, 0.45]), soft=0.6)
    sc.paint(_ellipse(u, v, 0.12 * a, 0.22 * b, 0, 0.15 * b), tone * 0.82, soft=1.5, alpha_scale=0.5)
    # hair cap over the top of the head; hairline lower at the temples
    hairline = -0.45 * b + 0.35 * b * (u / a) ** 2 + rng.normal(0, 0.04 * b)
    cap = np.maximum(_ellipse(u, v, a * 1.12, b * 0.9, cv=-0.3 * b), v - hairline)
    scalp = np.maximum(cap, head)
    if hair_style == "full":
        sc.paint(cap, hair_col * (1 + 0.25 * _smooth_noise(rng, sc.size, 1.5, 4))[..., None], label=0, soft=0.7)
    else:
        sc.paint(scalp, sc.skin(scalp, tone, 0.5 * a, spots=False), LABELS["scalp"], soft, band)
        if hair_style == "thin":
            strands = np.clip(_smooth_noise(rng, sc.size, 1.2, 5) * 0.6 + 0.2, 0, 1) * 0.8
            sc.paint(cap, hair_col, soft=0.7, alpha_scale=strands)


def _scalp(sc: _Scene, cx, cy, ang, s, tone):
    """Head seen from above: hair radiating from the crown, thin enough to show the scalp."""
    rng = sc.rng
    u, v = _local(sc.yy, sc.xx, cx, cy, ang)
    a, b = 0.38 * s, 0.48 * s
    soft, band = sc.part_edge()
    head = _ellipse(u, v, a, b)
    crown = (rng.normal(0, 0.15 * a), rng.uniform(0, 0.4) * b)
    r = np.hypot((u - crown[0]) / a, (v - crown[1]) / b)
    theta = np.arctan2(v - crown[1], u - crown[0])
    # hair density: sparse at the crown and along a parting, dense towards the rim
    density = rng.uniform(0.0, 0.35) + rng.uniform(0.4, 0.9) * r ** 2
    if rng.uniform() < 0.5:
        density = density * np.clip(np.abs(u - crown[0]) / (0.12 * a), 0.2, 1)
    sc.paint(head, sc.skin(head, tone, 0.5 * a, spots=False), LABELS["scalp"], soft, band)
    hair_col = _HAIR[rng.choice(len(_HAIR), p=[0.35, 0.3, 0.15, 0.08, 0.05, 0.07])]
    swirl = rng.uniform(-8, 8) * r + 0.8 * _smooth_noise(rng, sc.size, 4)
    strands = np.maximum(np.sin(rng.integers(60, 120) * theta + swirl), np.sin(rng.integers(60, 120) * theta - swirl))
    strands = np.clip(0.5 + 0.5 * strands, 0, 1) ** 2
    sc.paint(head, hair_col * (0.8 + 0.4 * strands)[..., None], soft=soft,
             alpha_scale=np.clip(density * 1.4, 0, 1) * (0.3 + 0.7 * strands))
    sc.label[(head < 0) & (density > 0.75)] = 0  # skin hidden under dense hair
    rim = _ellipse(u, v, a * 1.12, b * 1.1)  # hair lying beyond the skull
    sc.paint(np.maximum(rim, -head), hair_col, label=0, soft=0.7, alpha_scale=strands * 0.5 + 0.5)


def _hand(sc: _Scene, cx, cy, ang, s, tone):
    rng = sc.rng
    u, v = _local(sc.yy, sc.xx, cx, cy, ang)
    if rng.uniform() < 0.5:
        u = -u  # left or right hand
    w = 0.42 * s
    soft, band = sc.part_edge()
    palm_tone = tone * 0.75 + 0.25 * np.float32([0.88, 0.68, 0.58])
    if rng.uniform() < 0.7:  # forearm behind the wrist
        fa = _capsule(u, v, (0, 0.4 * w), (rng.normal(0, 0.3) * w, 3.0 * w), 0.42 * w, 0.5 * w)
        sc.paint(fa, sc.skin(fa, tone, 0.4 * w), LABELS["limb"], soft, band)
        if rng.uniform() < 0.6:
            sc.clothing(fa, u, v, rng.uniform(1.0, 2.0) * w)
    sdf = _rbox(u, v, 0.5 * w, 0.55 * w, 0.25 * w)
    spread = rng.uniform(0.0, 0.25)
    for k, (length, off) in enumerate(zip((0.85, 0.95, 0.9, 0.7), (-0.36, -0.12, 0.12, 0.36))):
        phi = (k - 1.5) * spread + rng.normal(0, 0.05)
        base = (off * w, -0.45 * w)
        tip = (base[0] + np.sin(phi) * length * w, base[1] - np.cos(phi) * length * w)
        sdf = np.minimum(sdf, _capsule(u, v, base, tip, 0.12 * w, 0.1 * w))
    phi = rng.uniform(0.5, 1.2)
    sdf = np.minimum(sdf, _capsule(u, v, (0.4 * w, 0.15 * w), (0.4 * w + np.sin(phi) * 0.65 * w,
                                                               0.15 * w - np.cos(phi) * 0.65 * w), 0.15 * w, 0.12 * w))
    sc.paint(sdf, sc.skin(sdf, palm_tone if rng.uniform() < 0.5 else tone, 0.25 * w), LABELS["hand"], soft, band)


def _foot(sc: _Scene, cx, cy, ang, s, tone):
    rng = sc.rng
    u, v = _local(sc.yy, sc.xx, cx, cy, ang)
    if rng.uniform() < 0.5:
        u = -u
    L = 0.8 * s
    soft, band = sc.part_edge()
    sdf = np.minimum(_ellipse(u, v, 0.2 * L, 0.28 * L, 0.02 * L, -0.12 * L),
                     _capsule(u, v, (0.02 * L, -0.1 * L), (-0.01 * L, 0.3 * L), 0.15 * L, 0.13 * L))
    toes = ((0.13, -0.44, 0.075), (0.03, -0.45, 0.05), (-0.05, -0.43, 0.045), (-0.11, -0.4, 0.04), (-0.16, -0.35, 0.035))
    for tu, tv, tr in toes:
        sdf = np.minimum(sdf, _capsule(u, v, (tu * L, (tv + 0.08) * L), (tu * L, tv * L), tr * L))
    if rng.uniform() < 0.5:  # leg above the ankle
        leg = _capsule(u, v, (0, 0.25 * L), (rng.normal(0, 0.2) * L, 1.4 * L), 0.14 * L, 0.17 * L)
        sc.paint(leg, sc.skin(leg, tone, 0.14 * L), LABELS["limb"], soft, band)
        if rng.uniform() < 0.6:
            sc.clothing(leg, u, v, rng.uniform(0.45, 0.9) * L)
    sole_tone = tone * 0.7 + 0.3 * np.float32([0.88, 0.7, 0.6])
    sc.paint(sdf, sc.skin(sdf, sole_tone, 0.12 * L), LABELS["foot"], soft, band)
    for tu, tv, tr in toes:  # toenails
        sc.paint(_ellipse(u, v, 0.6 * tr * L, 0.5 * tr * L, tu * L, (tv + 0.01) * L), sole_tone * 1.1 + 0.05, soft=0.6)


def _limb(sc: _Scene, cx, cy, ang, s, tone):
    rng = sc.rng
    u, v = _local(sc.yy, sc.xx, cx, cy, ang)
    L, r = rng.uniform(0.6, 1.0) * s, rng.uniform(0.08, 0.14) * s
    soft, band = sc.part_edge()
    bend = rng.normal(0, 0.5)
    mid = (np.sin(bend) * L * 0.5, 0.0)
    sdf = np.minimum(_capsule(u, v, (0, -L), mid, r * 0.75, r),
                     _capsule(u, v, mid, (mid[0] + np.sin(bend) * 0.3 * L, L), r, r * 1.2))
    sc.paint(sdf, sc.skin(sdf, tone, r), LABELS["limb"], soft, band)
    if rng.uniform() < 0.6:
        sc.clothing(sdf, u, v, rng.uniform(-0.3, 0.6) * L, direction=rng.choice([-1.0, 1.0]))


def _trunk(sc: _Scene, cx, cy, ang, s, tone):
    rng = sc.rng
    u, v = _local(sc.yy, sc.xx, cx, cy, ang)
    w, h = rng.uniform(0.3, 0.4) * s, 0.5 * s
    soft, band = sc.part_edge()
    sdf = np.minimum(_rbox(u, v, w, h, 0.35 * w), _capsule(u, v, (-1.15 * w, -0.8 * h), (1.15 * w, -0.8 * h), 0.25 * w))
    sc.paint(sdf, sc.skin(sdf, tone, 0.6 * w), LABELS["trunk"], soft, band)
    sc.paint(_ellipse(u, v, 0.04 * w, 0.06 * w, 0, 0.35 * h), tone * 0.6, soft=0.7)  # navel
    for side in (-1, 1):
        sc.paint(_ellipse(u, v, 0.05 * w, 0.05 * w, side * 0.5 * w, -0.45 * h), tone * np.float32([0.7, 0.55, 0.55]),
                 soft=0.7)
    if rng.uniform() < 0.7:  # trousers, or a shirt pulled up
        sc.clothing(sdf, u, v, rng.uniform(0.0, 0.7) * h, direction=1.0, margin=3)
    if rng.uniform() < 0.3:
        sc.clothing(sdf, u, v, rng.uniform(0.3, 0.7) * h, direction=-1.0, margin=3)


_PARTS = {"face": (_face, 0.4, 0.75), "scalp": (_scalp, 0.45, 0.8), "hand": (_hand, 0.45, 0.8),
          "foot": (_foot, 0.5, 0.9), "limb": (_limb, 0.6, 1.1), "trunk": (_trunk, 0.8, 1.4)}
_PART_P = np.array([0.22, 0.12, 0.22, 0.14, 0.18, 0.12])


def _object(sc: _Scene, skin_like: bool):
    """A non-body object; one of skin-like colour and weak texture is labelled uncertain."""
    rng, size = sc.rng, sc.size
    u, v = _local(sc.yy, sc.xx, *rng.uniform(0.1, 0.9, 2) * size, rng.uniform(0, np.pi))
    hw, hh = rng.uniform(0.12, 0.35, 2) * size
    sdf = _rbox(u, v, hw, hh, rng.uniform(0, min(hw, hh))) if rng.uniform() < 0.6 else _ellipse(u, v, hw, hh)
    if skin_like:
        col = _skin_tone(rng, rng.uniform(0.15, 0.75)) * np.float32([1.0, 1.0, rng.uniform(0.75, 1.0)])
        kind = rng.choice(["wood", "sand", "plain"])
    else:
        col = rng.uniform(0.05, 0.95, 3).astype(np.float32)
        kind = rng.choice(["wood", "sand", "plain", "fabric"])
    if kind == "wood":
        tex = _wood(rng, sc.yy, sc.xx, size, col)
    elif kind == "sand":
        tex = col * (1 + 0.06 * rng.normal(0, 1, sc.yy.shape) + 0.04 * _smooth_noise(rng, size, 6))[..., None]
    elif kind == "plain":
        tex = col * (1 + 0.03 * _smooth_noise(rng, size, size / 6))[..., None]
    else:
        tex = _fabric(rng, sc.yy, sc.xx, size)
    sc.paint(sdf, tex * sc.light[..., None], UNCERTAIN if skin_like else 0, soft=0.6)


def render_skin(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic photograph (size, size, 3) uint8 and its label map (size, size) uint8."""
    sc = _Scene(rng, size)
    for _ in range(rng.poisson(0.6)):
        _object(sc, skin_like=False)
    for _ in range(rng.binomial(2, 0.25)):
        _object(sc, skin_like=True)
    tones = [_skin_tone(rng) for _ in range(2)]
    for k in range(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15])):
        name = rng.choice(list(_PARTS), p=_PART_P)
        fn, lo, hi = _PARTS[name]
        centre = rng.uniform(0.15, 0.85, 2) * size
        fn(sc, centre[0], centre[1], rng.uniform(0, 2 * np.pi), rng.uniform(lo, hi) * size, tones[k % 2])
    # camera: white balance, exposure, slight defocus, sensor noise
    img = sc.img * rng.uniform(0.75, 1.15) * (1 + rng.normal(0, 0.04, 3)).astype(np.float32)
    img = ndimage.gaussian_filter(img, (rng.uniform(0.0, 0.6),) * 2 + (0,))
    img = img + rng.normal(0, rng.uniform(0.005, 0.02), img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), sc.label


def make_case(seed: int, split: str, index: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(image, label map) of case ``index`` of ``split`` ("Tr", "Ts", "Un")."""
    return render_skin(case_rng(seed, split, index), size)


def generate(out_dir: Path, n_train: int = 1000, n_test: int = 300, n_unlabeled: int = 2000,
             seed: int = 0, size: int = 128) -> Path:
    """Write the SKIN_SEG raw dataset into ``out_dir`` (the dataset folder) and return it.

    1,000 labeled training images by default, as the paper's skin set (1,435): with 200, Scratch
    learns its training images rather than the six parts (documentation/benchmarks.md, "SKIN_SEG:
    what Scratch needs"); test and unlabeled sets keep their proportions (0.3 and 2 per training
    image). ``selfconfig_make_example SKIN_SEG --cases N`` scales all three.

    Case ids run on across splits (training 0.., test after them, unlabeled last) so they stay
    unique; the content of case i of a split depends only on (seed, split, i).
    """
    out = Path(out_dir)
    first = 0
    for split, n in (("Tr", n_train), ("Ts", n_test), ("Un", n_unlabeled)):
        images = out / f"images{split}"
        images.mkdir(parents=True, exist_ok=True)
        labels = out / f"labels{split}"
        if split != "Un":
            labels.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            case = f"{PREFIX}_{first + i:04d}"
            img, lab = make_case(seed, split, i, size)
            Image.fromarray(img, mode="RGB").save(images / f"{case}_0000.png", compress_level=1)
            if split != "Un":
                Image.fromarray(lab, mode="L").save(labels / f"{case}.png", compress_level=1)
        first += n
        logger.info("%s: wrote %d %s cases", NAME, n, split)
    meta = {
        "name": NAME,
        "description": (
            "SYNTHETIC colour photographs (not real people) of skin regions of several body parts at "
            "any orientation on procedural indoor/outdoor backgrounds, with clothing, hair and "
            "skin-coloured objects; labels mark face, hand, foot, limb, trunk, scalp; 'ignore' marks "
            "uncertain pixels (blurred part edges and skin-coloured objects), left out of training and "
            "scoring. Generated by selfconfig.examples.skin_seg."
        ),
        "synthetic": True,
        "task": "segmentation",
        "dimensionality": 2,
        "channel_names": {"0": "RGB"},
        "labels": dict(LABELS),
        "file_ending": ".png",
        "numTraining": n_train,
        "numTest": n_test,
        "numUnlabeled": n_unlabeled,
        "reference": "Tajbakhsh et al., Surrogate supervision for medical image analysis, ISBI 2019",
        "surrogate_task": "SurrogateColor",
        "metric": "mean_dice",
        "generator": {"seed": seed, "size": size},
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out
