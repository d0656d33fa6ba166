"""A real-anatomy check for the planner's rules: a tissue-segmentation dataset from the MNI152 template.

The bundled examples are synthetic; this script builds a 3D segmentation dataset from real brain
anatomy (the MNI152 T1 template at 2 mm and its tissue masks, shipped inside ``nilearn``: no
download) so that the planner's rules (``3d_lowres`` when the budget-limited patch covers too
little of the case, the crop, the schedule) can be checked on something that is not made up.
Labels: grey and white matter of each hemisphere (1 left grey, 2 right grey, 3 left white, 4 right
white matter; 0 elsewhere): telling left from right needs the midline in view, as telling lung
lobes apart needs the fissures. One template is one subject, so every case is the template under a
random smooth deformation (rotation up to 10 degrees about each axis, scaling 0.9-1.1, a shift,
a smooth displacement field of a few millimetres) with a random bias field, gain, gamma and
noise: the cases differ in pose, shape and intensity, not in anatomy.

    .venv/bin/pip install nilearn        # not a dependency of selfconfig; only this check needs it
    .venv/bin/python benchmarks/make_mni152_tissue.py --raw /tmp/mni/raw [--train 16 --test 4]
    .venv/bin/python benchmarks/bench_time_to_accuracy.py --dataset MNI152_TISSUE --workdir /tmp/mni \\
        --max-minutes 5 --snapshots 1 2 5 --compare-fullres

(``bench_time_to_accuracy.py`` uses the dataset it finds under ``WORKDIR/raw``.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

NAME = "MNI152_TISSUE"


def load_template():
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=2)
    brain = datasets.load_mni152_brain_mask(resolution=2).get_fdata() > 0.5
    gm = datasets.load_mni152_gm_mask(resolution=2).get_fdata() > 0.5
    wm = datasets.load_mni152_wm_mask(resolution=2).get_fdata() > 0.5
    # world x of every voxel (RAS: x < 0 is the left hemisphere)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in brain.shape], indexing="ij"), -1)
    left = (ijk @ t1.affine[:3, :3].T + t1.affine[:3, 3])[..., 0] < 0
    label = np.zeros(brain.shape, np.uint8)
    grey, white = brain & gm & ~wm, brain & wm
    label[grey & left], label[grey & ~left] = 1, 2
    label[white & left], label[white & ~left] = 3, 4
    image = t1.get_fdata().astype(np.float32)
    return image, label, t1.affine


def rotation(rng, max_deg: float) -> np.ndarray:
    r = np.eye(3)
    for axis in range(3):
        a = np.deg2rad(rng.uniform(-max_deg, max_deg))
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        m = np.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        r = r @ m
    return r


def deform(image: np.ndarray, label: np.ndarray, rng: np.random.Generator):
    from scipy import ndimage

    shape = np.array(image.shape)
    centre = (shape - 1) / 2
    m = rotation(rng, 10.0) / rng.uniform(0.9, 1.1)
    shift = rng.uniform(-4, 4, 3)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))
    coords = np.einsum("ij,j...->i...", m, grid - centre[:, None, None, None]) + (centre + shift)[:, None, None, None]
    for axis in range(3):  # a smooth displacement field, about +-2 voxels (4 mm)
        field = ndimage.gaussian_filter(rng.normal(0, 1, tuple(shape // 4 + 1)), 1.5)
        field = ndimage.zoom(field, np.array(shape) / np.array(field.shape), order=1)[: shape[0], : shape[1], : shape[2]]
        coords[axis] += 2.0 * field / (np.abs(field).max() + 1e-6)
    img = ndimage.map_coordinates(image, coords, order=1, mode="constant", cval=0.0)
    lab = ndimage.map_coordinates(label, coords, order=0, mode="constant", cval=0)
    bias = ndimage.zoom(rng.normal(0, 0.15, (4, 4, 4)), np.array(shape) / 4, order=3)[: shape[0], : shape[1], : shape[2]]
    img = np.clip(img / (image.max() + 1e-6), 0, None) ** rng.uniform(0.8, 1.25)
    img = img * np.exp(bias) * rng.uniform(0.8, 1.2) * 1000 + rng.normal(0, 15, img.shape)
    return img.astype(np.float32), lab.astype(np.uint8)


def write_cases(out: Path, prefix: str, image, label, affine, rng, n_train: int, n_test: int) -> None:
    """``n_train`` + ``n_test`` deformed copies of (image, label) as PREFIX_NNN cases in nnU-Net v2's layout."""
    import nibabel as nib

    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for split, n, offset in (("Tr", n_train, 0), ("Ts", n_test, n_train)):
        for k in range(n):
            case = f"{prefix}_{offset + k:03d}"
            img, lab = deform(image, label, rng)
            nib.save(nib.Nifti1Image(img, affine), out / f"images{split}" / f"{case}_0000.nii.gz")
            nib.save(nib.Nifti1Image(lab, affine), out / f"labels{split}" / f"{case}.nii.gz")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", required=True, help="raw root; the dataset goes to RAW/MNI152_TISSUE")
    ap.add_argument("--train", type=int, default=16)
    ap.add_argument("--test", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    out = Path(args.raw) / NAME
    image, label, affine = load_template()
    write_cases(out, "MNI", image, label, affine, np.random.default_rng(args.seed), args.train, args.test)
    (out / "dataset.json").write_text(json.dumps({
        "name": NAME, "task": "segmentation", "dimensionality": 3, "channel_names": {"0": "T1"},
        "labels": {"background": 0, "left_grey_matter": 1, "right_grey_matter": 2, "left_white_matter": 3,
                   "right_white_matter": 4},
        "file_ending": ".nii.gz", "numTraining": args.train, "numTest": args.test,
        "description": "deformed copies of the MNI152 2 mm T1 template (nilearn) with its grey/white matter "
                       "masks split at the midline; benchmarks/make_mni152_tissue.py",
    }, indent=2) + "\n")
    print(f"wrote {args.train} + {args.test} cases of {image.shape} to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
