"""LUNG_LOBES example dataset: SYNTHETIC low-resolution chest CT with the five lung lobes labelled.

Why: the first application of Tajbakhsh et al. (ISBI 2019, "Surrogate supervision for medical image
analysis") is 3D lung-lobe segmentation in chest CT. Real scans cannot ship with selfconfig, so this
module draws phantoms that behave like chest CT for a network (these are not real patients): a body
with subcutaneous fat and muscle, ribs, sternum and spine, a heart on the patient's left, aorta,
trachea and main bronchi, diaphragm domes (right higher, liver below), and two lungs whose
parenchyma carries a branching vessel tree per lobe and faint fissures. Left/right, head/feet and
anterior/posterior can all be told apart, so flipping a scan is detectable (the SurrogateFlip task).

Orientation convention (arrays are ``(Z, Y, X)``)
    * Z: axial slice index, increasing toward the head (superior); slice 0 lies in the upper abdomen.
    * Y: anterior -> posterior (row 0 is in front of the chest; the table lies at high Y).
    * X: patient right -> patient left (radiological display: the patient's right is at low X).
Files are written with SimpleITK: spacing ``(x, y, z)`` in mm, origin ``(0, 0, 0)``, identity
direction. In ITK's LPS world frame identity means +x = Left, +y = Posterior, +z = Superior, which is
exactly the anatomy drawn, so viewers show the phantoms the right way round.

Labels: 0 background, 1 left upper lobe, 2 left lower lobe, 3 right upper lobe, 4 right middle lobe,
5 right lower lobe. Images are int16 Hounsfield units: air -1000, lung about -850, fat about -100,
soft tissue 30-60, bone 200-700, plus a calibration offset of up to +-20 HU and correlated noise.
Every case is drawn from its own seed ``(seed, case_index)``, so case i does not depend on how many
cases are generated.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from selfconfig.errors import ConfigurationError

logger = logging.getLogger(__name__)

DATASET_NAME = "LUNG_LOBES"
CASE_PREFIX = "LOBES"
LABELS = {
    "background": 0,
    "left_upper_lobe": 1,
    "left_lower_lobe": 2,
    "right_upper_lobe": 3,
    "right_middle_lobe": 4,
    "right_lower_lobe": 5,
}
# share of each lung given to the lower lobe, and of the right upper+middle region to the middle lobe
_LEFT_LOWER_SHARE = (0.44, 0.54)
_RIGHT_LOWER_SHARE = (0.42, 0.52)
_MIDDLE_SHARE = (0.25, 0.36)
_VOLUME_PER_TREE_POINT = 2500.0  # mm^3 of lung served by one attractor point of the vessel tree


@dataclass
class SyntheticCT:
    """One phantom: ``image`` int16 HU and ``label`` uint8 lobes, both (Z, Y, X); spacing (z, y, x) mm."""

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]


def case_id(index: int) -> str:
    return f"{CASE_PREFIX}_{index:03d}"


def synthesize_case(index: int, seed: int = 0, shape_scale: float = 1.0) -> SyntheticCT:
    """Draw case ``index`` of the dataset with ``seed``; identical whatever else is generated."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    for _ in range(5):
        case = _draw_phantom(rng, shape_scale)
        counts = np.bincount(case.label.ravel(), minlength=6)[1:]
        if counts.min() >= 0.02 * counts.sum():
            return case
        logger.debug("case %d: a lobe came out too small (%s); drawing again", index, counts.tolist())
    raise RuntimeError(f"could not draw case {index} with five reasonable lobes")  # a bug, not user error


def generate(out_dir: Path, n_train: int = 16, n_test: int = 6, n_unlabeled: int = 24, seed: int = 0,
             shape_scale: float = 1.0) -> Path:
    """Write the raw LUNG_LOBES dataset (dataset.json, imagesTr/labelsTr, imagesTs/labelsTs, imagesUn).

    Cases are numbered train, then test, then unlabeled (LOBES_000 ...). ``shape_scale`` < 1 draws
    the same anatomy on fewer, larger voxels (0.5 gives about 20 x 48 x 48) for quick tests. Old
    ``LOBES_*`` files in the sub-folders are removed first so the folder matches dataset.json.
    """
    for name, n in (("n_train", n_train), ("n_test", n_test), ("n_unlabeled", n_unlabeled)):
        if int(n) != n or n < 0:
            raise ConfigurationError(f"{name} is {n!r}; give a whole number >= 0 of cases to generate")
    if int(seed) != seed or seed < 0:
        raise ConfigurationError(f"seed is {seed!r}; give a whole number >= 0")
    if not 0.2 <= shape_scale <= 1.0:
        raise ConfigurationError(f"shape_scale is {shape_scale!r}; use a value between 0.2 and 1.0")
    n_train, n_test, n_unlabeled, seed = int(n_train), int(n_test), int(n_unlabeled), int(seed)
    out_dir = Path(out_dir)
    folders = {k: out_dir / k for k in ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "imagesUn")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"{CASE_PREFIX}_*"):
            old.unlink()
    plan = [("Tr", i) for i in range(n_train)] + [("Ts", n_train + i) for i in range(n_test)]
    plan += [("Un", n_train + n_test + i) for i in range(n_unlabeled)]
    for part, index in plan:
        case = synthesize_case(index, seed=seed, shape_scale=shape_scale)
        cid = case_id(index)
        _write(case.image, case.spacing, folders[f"images{part}"] / f"{cid}_0000.nii.gz")
        if part != "Un":
            _write(case.label, case.spacing, folders[f"labels{part}"] / f"{cid}.nii.gz")
    meta = {
        "name": DATASET_NAME,
        "description": "SYNTHETIC chest-CT phantoms (not real patients) with the five lung lobes labelled: "
                       "body, ribs, spine, heart on the left, aorta, airways, diaphragm with liver, lungs "
                       "with per-lobe vessel trees and fissures; low resolution (~5 mm slices, ~3.5 mm "
                       "pixels). Arrays (Z, Y, X): Z superior, Y posterior, X toward the patient's left.",
        "synthetic": True,
        "task": "segmentation",
        "dimensionality": 3,
        "channel_names": {"0": "CT"},
        "labels": dict(LABELS),
        "file_ending": ".nii.gz",
        "numTraining": int(n_train),
        "numTest": int(n_test),
        "numUnlabeled": int(n_unlabeled),
        "reference": "Tajbakhsh et al., Surrogate supervision for medical image analysis, ISBI 2019",
        "surrogate_task": "SurrogateFlip",
    }
    (out_dir / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    logger.info("wrote %d LUNG_LOBES cases to %s", len(plan), out_dir)
    return out_dir


def _write(array: np.ndarray, spacing_zyx: tuple[float, float, float], path: Path) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    img.SetOrigin((0.0, 0.0, 0.0))
    img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(img, str(path), useCompression=True)


# ---------------------------------------------------------------------------------------------
# drawing; all lengths in mm in the anatomical frame u (toward patient left), v (posterior),
# w (superior), with u = v = 0 at the centre of the chest and w = 0 at the deepest lung recess
# ---------------------------------------------------------------------------------------------

def _sample_params(rng: np.random.Generator, scale: float) -> SimpleNamespace:
    """Per-case anatomy and scanner settings."""
    U = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    p = SimpleNamespace()
    p.sz, p.sxy = U(4.5, 5.5) / scale, U(3.2, 3.8) / scale
    p.a_c, p.bc_ant, p.bc_post = U(110, 128), U(60, 75), U(65, 80)  # thoracic cavity half-axes
    p.t_fat, p.t_mus, p.t_rib, p.t_para = U(6, 26), U(8, 14), U(8, 11), U(12, 20)
    p.p_body, p.p_cav = U(2.2, 2.7), U(2.0, 2.4)
    p.a_b = p.a_c + p.t_fat + p.t_mus + p.t_rib
    nxy = int(np.clip(round(max(U(340, 370), 2 * p.a_b + 24) / p.sxy), 8, int(112 * scale)))
    fov = nxy * p.sxy
    excess = max(0.0, (2 * p.a_b + 16 - fov) / 2)  # body must fit the field of view
    p.a_c, p.a_b = p.a_c - excess, p.a_b - excess
    p.b_ant = p.bc_ant + 0.7 * (p.t_fat + p.t_mus) + p.t_rib
    p.b_post = p.bc_post + p.t_fat + p.t_mus + p.t_rib + p.t_para
    nz = int(np.clip(round(U(205, 235) / p.sz), 6, int(48 * scale)))
    p.shape = (nz, nxy, nxy)
    p.spacing = (p.sz, p.sxy, p.sxy)
    # where the anatomical origin sits in the array (x, y, z mm), and a small rotation
    slack = max(0.0, fov / 2 - p.a_b - 6)
    p.centre = np.array([fov / 2 + U(-1, 1) * min(12, slack),
                         fov / 2 - (p.b_post - p.b_ant) / 2 - U(5, 18),
                         U(32, 45)])
    p.height = float(min(U(165, 190), nz * p.sz - p.centre[2] - 14))
    ang = np.deg2rad([U(-2.5, 2.5), U(-2, 2), U(-4, 4)])  # about x, y, z
    cx, cy, cz = np.cos(ang)
    sx, sy, sz = np.sin(ang)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    p.rot = rz @ ry @ rx
    # spine, mediastinum, airways, vessels of the mediastinum
    p.r_vb = U(15, 19)
    p.v_vb = p.bc_post - 0.5 * p.r_vb
    p.vert_pitch, p.vert_phase = U(23, 27), U(0, 25)
    p.u_med, p.m_half = U(2, 8), U(20, 26)
    p.u_tr, p.v_tr, p.r_tr = U(-8, -3), p.v_vb - p.r_vb - U(14, 20), U(8, 10)
    p.w_car = U(0.58, 0.66) * p.height
    p.v_hil, p.w_hil = U(0, 15), p.w_car - U(15, 25)
    p.r_ao = U(11, 14)
    p.u_aa, p.v_aa = U(-2, 6), U(-15, -5)
    p.u_da, p.v_da = p.r_vb + 0.85 * p.r_ao + U(5, 8), p.v_vb - U(0, 6)
    p.w_arch = U(0.62, 0.70) * p.height
    # diaphragm (right dome higher), heart on the left
    p.dome_r = U(0.36, 0.45) * p.height
    p.dome_l = p.dome_r - U(10, 22)
    p.k_r, p.k_l = p.dome_r / U(1.3, 1.5), p.dome_l / U(1.3, 1.5)
    p.heart_c = [U(0.2, 0.3) * p.a_c, -U(0.25, 0.4) * p.bc_ant, 0.0]
    p.heart_r = [U(47, 57), U(36, 44), U(40, 48)]
    p.heart_c[2] = 0.9 * p.dome_l + 0.6 * p.heart_r[2]
    p.heart_phi = float(np.deg2rad(U(-45, -25)))
    p.apex = (p.height + U(-6, 3), p.height + U(-6, 3))  # right, left
    p.liver_u = U(0.0, 0.15) * p.a_c
    # ribs
    p.rib_pitch, p.rib_drop, p.rib_phase, p.rib_half = U(22, 27), U(50, 75), U(0, 25), U(4, 5.5)
    # lobes (fissure tilt in the sagittal plane, lateral tilt, curvature) and vessels
    p.obl = [(float(np.tan(np.deg2rad(U(45, 65)))), U(-0.4, 0.4), U(-1, 1), U(-1, 1)) for _ in range(2)]
    p.hor = (float(np.tan(np.deg2rad(U(-8, 8)))), U(-0.1, 0.1))
    p.share = (U(*_LEFT_LOWER_SHARE), U(*_RIGHT_LOWER_SHARE), U(*_MIDDLE_SHARE))
    p.k_vessel = U(0.055, 0.07)
    p.fissure_integral = U(350, 500)  # HU x mm: about 0.5 mm of pleura
    # intensities
    p.hu_fat, p.hu_mus, p.hu_medfat = U(-115, -90), U(35, 55), U(-95, -70)
    p.hu_liver, p.hu_blood, p.hu_lung = U(50, 68), U(35, 50), U(-875, -835)
    p.offset, p.noise, p.texture = U(-20, 20), U(12, 35), U(8, 18)
    for key, value in vars(p).items():  # python floats keep the float32 volumes float32 (NEP 50)
        if isinstance(value, np.floating):
            setattr(p, key, float(value))
    return p


def _superellipse(u, v, a, b_ant, b_post, power):
    """Normalised radius (<1 inside) of a superellipse with different front and back half-depths."""
    b = np.where(v < 0, np.float32(b_ant), np.float32(b_post))
    return np.abs(u / np.float32(a)) ** power + np.abs(v / b) ** power


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """A lung is one piece: drop slivers cut off between heart, aorta and chest wall."""
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    return lab == (int(np.argmax(np.bincount(lab.ravel())[1:])) + 1)


def _segment_distance(u, v, w, a, b):
    """Distance from every point to the segment a-b (anatomical mm)."""
    d = np.asarray(b, np.float32) - np.asarray(a, np.float32)
    pu, pv, pw = u - a[0], v - a[1], w - a[2]
    t = np.clip((pu * d[0] + pv * d[1] + pw * d[2]) / float(d @ d), 0, 1)
    return np.sqrt((pu - t * d[0]) ** 2 + (pv - t * d[1]) ** 2 + (pw - t * d[2]) ** 2)


def _draw_phantom(rng: np.random.Generator, scale: float) -> SyntheticCT:
    p = _sample_params(rng, scale)
    nz, ny, nx = p.shape
    z = (np.arange(nz) * p.sz - p.centre[2]).astype(np.float32)[:, None, None]
    y = (np.arange(ny) * p.sxy - p.centre[1]).astype(np.float32)[None, :, None]
    x = (np.arange(nx) * p.sxy - p.centre[0]).astype(np.float32)[None, None, :]
    R = p.rot.astype(np.float32)
    u, v, w = (R[i, 0] * x + R[i, 1] * y + R[i, 2] * z for i in range(3))
    f32 = np.float32
    hu = np.full(p.shape, -1000.0, f32)

    # body wall: fat, muscle, ribs, sternum
    body = _superellipse(u, v, p.a_b, p.b_ant, p.b_post, p.p_body) < 1
    hu[body] = p.hu_fat
    t = p.t_fat
    muscle = _superellipse(u, v, p.a_b - t, p.b_ant - 0.7 * t, p.b_post - t, p.p_body) < 1
    hu[muscle] = p.hu_mus
    cav_r = _superellipse(u, v, p.a_c, p.bc_ant, p.bc_post, p.p_cav)
    cavity = cav_r < 1
    t = p.t_rib
    wall = (_superellipse(u, v, p.a_c + t, p.bc_ant + t, p.bc_post + t, p.p_cav) < 1) & ~cavity
    iw = np.flatnonzero(wall)
    uw, vw, ww = u.ravel()[iw], v.ravel()[iw], w.ravel()[iw]
    f_ant = 0.5 - np.arctan2(vw, np.abs(uw)) / np.pi  # 0 at the back, 1 at the front: ribs run down
    phase = (ww + p.rib_drop * f_ant - p.rib_phase) / p.rib_pitch
    rib = (np.abs(phase - np.round(phase)) * p.rib_pitch < p.rib_half) & (ww < p.height + 15)
    rib &= ~((np.abs(uw) < 0.18 * p.a_c) & (vw < 0)) & ~((np.abs(uw) < p.r_vb + 8) & (vw > 0))
    sternum = (np.abs(uw - p.u_med * 0.3) < 14) & (vw < 0) & (ww > 0.15 * p.height) & (ww < p.height - 5)
    hu.ravel()[iw] = np.where(sternum, 380.0, np.where(rib, 650.0, p.hu_mus))

    # thoracic content: soft tissue, mediastinal fat, abdomen below the diaphragm
    hu[cavity] = p.hu_mus
    m_half = p.m_half * (0.5 + 0.5 * np.clip((v + p.bc_ant) / (0.5 * p.bc_ant), 0, 1))
    band = cavity & (np.abs(u - p.u_med) < m_half) & (v < p.v_vb - 0.2 * p.r_vb)
    hu[band] = p.hu_medfat
    vd = (v + 0.15 * p.bc_ant) / p.bc_post
    dome = np.maximum(p.dome_r - p.k_r * (((u + 0.45 * p.a_c) / (0.6 * p.a_c)) ** 2 + vd ** 2),
                      p.dome_l - p.k_l * (((u - 0.45 * p.a_c) / (0.6 * p.a_c)) ** 2 + vd ** 2))
    abdomen = cavity & (w < dome)
    liver = abdomen & (u < p.liver_u - 0.4 * v)
    stomach = abdomen & ~liver & (v < 0.15 * p.bc_post)
    hu[abdomen] = 45.0  # spleen and the rest
    hu[stomach] = 25.0
    bubble = ((u - 0.5 * p.a_c) / 30) ** 2 + ((v + 0.1 * p.bc_ant) / 25) ** 2 + ((w - p.dome_l + 8) / 14) ** 2
    hu[stomach & (bubble < 1)] = -1000.0  # gastric air bubble under the left dome
    hu[liver] = p.hu_liver

    # spine: vertebral bodies with discs, canal, arch and spinous process
    rr = u ** 2 + (v - p.v_vb) ** 2
    vb = body & (rr < p.r_vb ** 2)
    disc = ((w - p.vert_phase) % p.vert_pitch) < 5
    hu[vb] = np.where(rr[vb] > (p.r_vb - 2.5) ** 2, 900.0, np.where(disc[vb], 90.0, 230.0))
    v_can = p.v_vb + p.r_vb + 6
    rc = u ** 2 + (v - v_can) ** 2
    arch = body & (((rc < 144) & (v > v_can - 2)) | ((np.abs(u) < 4) & (v > v_can) & (v < v_can + 32)))
    hu[arch] = 700.0
    hu[body & (rc < 49)] = 15.0

    # heart (with epicardial fat), aorta, hilar vessels, airways
    c, s = math.cos(p.heart_phi), math.sin(p.heart_phi)
    du, dv = u - p.heart_c[0], v - p.heart_c[1]
    qh = ((c * du + s * dv) / p.heart_r[0]) ** 2 + ((-s * du + c * dv) / p.heart_r[1]) ** 2 \
        + ((w - p.heart_c[2]) / p.heart_r[2]) ** 2
    above = cavity & (w > dome)
    hu[above & (qh < 1.18)] = p.hu_medfat
    heart = above & (qh < 1)
    hu[heart] = p.hu_blood
    ao = ((u - p.u_aa) ** 2 + (v - p.v_aa) ** 2 < p.r_ao ** 2) & (w > p.heart_c[2]) & (w < p.w_arch)
    ao |= ((u - p.u_da) ** 2 + (v - p.v_da) ** 2 < (0.85 * p.r_ao) ** 2) & (w < p.w_arch)
    mid = ((p.u_aa + p.u_da) / 2, (p.v_aa + p.v_da) / 2)
    big_r = math.hypot(p.u_da - p.u_aa, p.v_da - p.v_aa) / 2
    dvec = ((p.u_da - p.u_aa) / (2 * big_r), (p.v_da - p.v_aa) / (2 * big_r))
    along = (u - mid[0]) * dvec[0] + (v - mid[1]) * dvec[1]
    across = -(u - mid[0]) * dvec[1] + (v - mid[1]) * dvec[0]
    rho = np.sqrt(along ** 2 + (w - p.w_arch) ** 2)
    ao |= ((rho - big_r) ** 2 + across ** 2 < (0.92 * p.r_ao) ** 2) & (w >= p.w_arch)
    ao &= body
    hu[ao] = p.hu_blood
    hila = []
    for side in (-1, 1):
        h = (p.u_med + side * (p.m_half + 4), p.v_hil, p.w_hil)
        hila.append(h)
        hilum = ((u - h[0]) / 15) ** 2 + ((v - h[1]) / 20) ** 2 + ((w - h[2]) / 26) ** 2 < 1
        hu[hilum & cavity] = p.hu_blood
        ao |= hilum & cavity
    carina = (p.u_tr, p.v_tr, p.w_car)
    airway_d = np.sqrt((u - p.u_tr) ** 2 + (v - p.v_tr) ** 2) + np.where(w > p.w_car, 0, 1e4).astype(f32)
    airway_r = np.full_like(airway_d, p.r_tr)
    for h, r in zip(hila, (5.5, 5.0)):
        d = _segment_distance(u, v, w, carina, h)
        airway_r = np.where(d < airway_d, f32(r), airway_r)
        airway_d = np.minimum(airway_d, d)
    hu[body & (airway_d < airway_r + 2.5)] = 40.0
    hu[body & (airway_d < airway_r)] = -1000.0

    # lungs: the free part of the cavity above the diaphragm, narrowing to the apex
    occupied = (np.abs(u - p.u_med) < m_half + 3) & (v < p.v_vb - 0.2 * p.r_vb)
    occupied |= (qh < 1.3) | (rr < (p.r_vb + 4) ** 2) | (airway_d < airway_r + 5)
    occupied |= ndimage.binary_dilation(ao | heart, iterations=1)  # aorta, hila, heart
    free = cavity & (cav_r < 0.97) & (w > dome + 5) & ~occupied
    lungs = []
    for side, apex in zip((-1, 1), p.apex):
        wt = 0.4 * p.height  # above this the lung narrows into a rounded apex
        shrink2 = np.clip(1 - (np.maximum(w - wt, 0) / (apex - wt)) ** 2, 0, 1)
        taper = ((u - side * 0.45 * p.a_c) / (0.56 * p.a_c)) ** 2 + ((v - 0.15 * p.bc_post) / (
            0.6 * (p.bc_ant + p.bc_post))) ** 2 < shrink2
        lungs.append(_largest_component(free & taper & ((u - p.u_med) * side > 0)))
    lung_r, lung_l = lungs
    lung = lung_r | lung_l
    label, glow = _lobes(p, u, v, w, lung_l, lung_r)

    # lung parenchyma: gravity gradient, texture, vessels, fissures
    white = rng.standard_normal(p.shape, dtype=f32)
    tex = ndimage.gaussian_filter(white, (0.8 * 5 / p.sz, 1.5 * 3.5 / p.sxy, 1.5 * 3.5 / p.sxy))
    tex *= p.texture / max(float(tex.std()), 1e-6)
    vf = _vessel_fraction(rng, p, u, v, w, label, hila)
    par = p.hu_lung + 45 * np.clip(v / p.bc_post, -1, 1) + tex
    par += (p.hu_blood - par) * vf + glow
    hu[lung] = par[lung]

    # patient table (fixed in the scanner frame), blur, calibration offset, noise
    top = p.b_post + 14 - x ** 2 / 1200.0  # x, y: scanner frame relative to the body centre
    table = (y > top) & (y < top + 6) & (np.abs(x) < p.a_b + 40) & ~body
    hu[table] = 120.0
    psf = (0.35, 0.45, 0.45)
    hu = ndimage.gaussian_filter(hu, psf)
    noise = ndimage.gaussian_filter(rng.standard_normal(p.shape, dtype=f32), (0.3, 0.7, 0.7))
    hu += p.offset + noise * (p.noise / max(float(noise.std()), 1e-6))
    image = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return SyntheticCT(image=image, label=label, spacing=tuple(float(s) for s in p.spacing))


def _lobes(p, u, v, w, lung_l, lung_r) -> tuple[np.ndarray, np.ndarray]:
    """Partition each lung by its fissures and draw the fissures as thin brighter sheets.

    The cut heights come from volume shares, so no lobe can be empty whatever the lung shape.
    """
    label = np.zeros(lung_l.shape, np.uint8)
    glow = np.zeros(lung_l.shape, np.float32)

    def sheet(d, normal):
        # a thin sheet smeared over the voxel extent along its normal (partial volume)
        n = np.asarray(normal, np.float64) / np.linalg.norm(normal)
        sigma = math.sqrt(0.8 ** 2 + 0.16 * float(np.sum((n * (p.sxy, p.sxy, p.sz)) ** 2)))
        return p.fissure_integral / (2.5066 * sigma) * np.exp(-0.5 * (d / sigma) ** 2)

    for side, mask, (slope, lat, curv, curv_u), share in ((1, lung_l, p.obl[1], p.share[0]),
                                                  (-1, lung_r, p.obl[0], p.share[1])):
        idx = np.flatnonzero(mask)
        uu, vv, ww = u.ravel()[idx], v.ravel()[idx], w.ravel()[idx]
        # oblique fissure: rises from the front of the diaphragm to the back of the upper chest
        g = ww - slope * vv - lat * side * uu - curv * 20 * (vv / p.bc_post) ** 2 \
            - curv_u * 15 * ((uu - side * 0.5 * p.a_c) / (0.5 * p.a_c)) ** 2
        g = (g - np.quantile(g, share)) / np.sqrt(1 + slope ** 2 + lat ** 2)
        lower = g < 0
        fis = sheet(g, (lat * side, slope, 1.0))
        if side == 1:
            label.ravel()[idx] = np.where(lower, 2, 1)
        else:  # horizontal fissure, only in front of / above the oblique one
            h = ww + p.hor[0] * vv - p.hor[1] * uu
            h = (h - np.quantile(h[~lower], p.share[2])) / np.sqrt(1 + p.hor[0] ** 2 + p.hor[1] ** 2)
            middle = ~lower & (h < 0)
            label.ravel()[idx] = np.where(lower, 5, np.where(middle, 4, 3))
            fis = np.maximum(fis, np.where(lower, 0, sheet(h, (p.hor[1], p.hor[0], 1.0))))
        glow.ravel()[idx] = fis
    return label, glow


def _vessel_fraction(rng, p, u, v, w, label, hila) -> np.ndarray:
    """Blood fraction per voxel from one branching tree per lobe, grown from that lung's hilum.

    Trees stay inside their lobe, so fissures show as thin vessel-free gaps, as in real CT.
    """
    heads, tails, radii = [], [], []
    vox = p.sz * p.sxy * p.sxy
    flat_label = label.ravel()
    for lobe in range(1, 6):
        idx = np.flatnonzero(flat_label == lobe)
        n = int(np.clip(idx.size * vox / _VOLUME_PER_TREE_POINT, 8, 1500))
        pick = idx[rng.integers(0, idx.size, n)]
        pts = np.stack([u.ravel()[pick], v.ravel()[pick], w.ravel()[pick]], 1).astype(np.float64)
        pts += rng.uniform(-0.5, 0.5, pts.shape) * np.array([p.sxy, p.sxy, p.sz])
        _grow_tree(rng, hila[0 if lobe >= 3 else 1], pts, p.k_vessel, heads, tails, radii)
    a, b, r = np.array(heads), np.array(tails), np.array(radii)
    length = np.linalg.norm(b - a, axis=1)
    count = np.maximum(np.ceil(length / (0.5 * min(p.sxy, p.sz))).astype(int), 1)
    seg = np.repeat(np.arange(len(length)), count)
    t = (np.arange(seg.size) - np.repeat(np.cumsum(count) - count, count) + 0.5) / count[seg]
    pts = a[seg] + t[:, None] * (b - a)[seg]
    weight = np.pi * r[seg] ** 2 * (length / count)[seg] / vox  # tube volume in voxel units
    xyz = pts @ p.rot + p.centre  # anatomical -> array frame (x, y, z) mm
    ijk = np.rint(xyz[:, ::-1] / np.array(p.spacing)).astype(int)  # (z, y, x) voxel index
    box = ndimage.find_objects((label > 0).astype(np.uint8))[0]  # work in the lungs' bounding box
    start = np.array([max(sl.start - 3, 0) for sl in box])
    stop = np.array([min(sl.stop + 3, n) for sl, n in zip(box, p.shape)])
    crop = tuple(int(n) for n in stop - start)
    ijk -= start
    ok = np.all((ijk >= 0) & (ijk < np.array(crop)), axis=1)
    flat = np.ravel_multi_index(tuple(ijk[ok].T), crop)
    rs, weight = r[seg][ok], weight[ok]
    psf = np.array([0.45 * p.sz, 0.45 * p.sxy, 0.45 * p.sxy])
    part = np.zeros(crop, np.float32)
    size = int(np.prod(crop))
    for lo, hi in ((0.0, 1.1), (1.1, 1.8), (1.8, 3.0), (3.0, 1e9)):  # blur each calibre by its radius
        sel = (rs >= lo) & (rs < hi)
        if not sel.any():
            continue
        rg = float(np.average(rs[sel], weights=weight[sel]))
        vol = np.bincount(flat[sel], weights=weight[sel], minlength=size).reshape(crop)
        sigma = np.sqrt(psf ** 2 + rg ** 2 / 2) / np.array(p.spacing)
        part += ndimage.gaussian_filter(vol.astype(np.float32), sigma, truncate=3.0)
    out = np.zeros(p.shape, np.float32)
    out[tuple(slice(a, b) for a, b in zip(start, stop))] = np.clip(part, 0, 1)
    return out


def _grow_tree(rng, root, pts, k_radius, heads, tails, radii) -> None:
    """Volume-dividing tree: each branch heads for the centre of the points it serves, then splits
    them in half across their widest axis; radius follows Murray's law (cube root of served volume)."""
    stack = [(np.asarray(root, np.float64), pts)]
    while stack:
        start, q = stack.pop()
        n = len(q)
        centre = q.mean(axis=0)
        radius = k_radius * (n * _VOLUME_PER_TREE_POINT) ** (1 / 3)
        if n <= 2:
            heads.append(start), tails.append(centre), radii.append(radius)
            continue
        end = start + rng.uniform(0.35, 0.6) * (centre - start)
        heads.append(start), tails.append(end), radii.append(radius)
        axis = int(np.argmax(q.var(axis=0)))
        order = np.argpartition(q[:, axis], n // 2)
        stack.append((end, q[order[: n // 2]]))
        stack.append((end, q[order[n // 2:]]))
