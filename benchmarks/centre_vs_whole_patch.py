"""Does a classification case's label sit at its centre? Ranks the test cases of a classification
dataset by simple intensity statistics of the whole patch and of its centre, and prints each
statistic's ROC AUC on the test labels (and on the training labels).

Why: the classification head of an encoder trained here pools the last feature map over the whole
patch *and* over its centre (``avg_centre``, planners/default.py ``DefaultPlanner.head_pooling``).
This script is the measurement behind that rule (documentation/plans.md, "Classification head"):
on NODULE_FPR the whole-patch statistics rank the candidates at or below chance, the same
statistics at the centre well above it, so a head that only averages over the whole map discards
what decides the label.

    .venv/bin/python benchmarks/centre_vs_whole_patch.py $SELFCONFIG_RAW/NODULE_FPR

Binary classification datasets with ``labelsTr.csv`` / ``labelsTs.csv`` (columns ``case``,
``label``) and one image channel (``CASE_0000`` + the dataset's file ending). About 20 s for
NODULE_FPR's 923 patches on one core.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from sklearn.metrics import roc_auc_score


def _laplacian(a: np.ndarray, sigma: float) -> np.ndarray:
    """Scale-normalised negative Laplacian of Gaussian: large at bright blobs of about ``sigma``."""
    orders = [tuple(2 if i == j else 0 for i in range(a.ndim)) for j in range(a.ndim)]
    return -sigma ** 2 * sum(ndimage.gaussian_filter(a, sigma, order=o) for o in orders)


def statistics(image: np.ndarray) -> dict[str, float]:
    a = image.astype(np.float32)
    centre = tuple(s // 2 for s in a.shape)
    radius = np.sqrt(sum((g - c) ** 2 for g, c in zip(np.indices(a.shape), centre)))
    out = {"whole: mean intensity": float(a.mean()), "whole: max intensity": float(a.max()),
           "centre: mean intensity within 2 voxels": float(a[radius <= 2].mean())}
    for sigma in (1.5, 3.0):
        lap = _laplacian(a, sigma)
        out[f"whole: strongest blob (LoG sigma {sigma})"] = float(lap.max())
        out[f"centre: blob response (LoG sigma {sigma})"] = float(lap[centre])
    return out


def _table(raw: Path, labels_file: str, images: str, ending: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    labels, stats = [], []
    with open(raw / labels_file) as f:
        for row in csv.DictReader(f):
            img = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / images / f"{row['case']}_0000{ending}")))
            stats.append(statistics(img))
            labels.append(int(row["label"]))
    return np.asarray(labels), {k: np.asarray([s[k] for s in stats]) for k in stats[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("raw_dataset", type=Path, help="the dataset's raw folder (dataset.json, labelsTr.csv, ...)")
    args = ap.parse_args()
    raw = args.raw_dataset
    ending = json.loads((raw / "dataset.json").read_text()).get("file_ending", ".nii.gz")
    y_tr, s_tr = _table(raw, "labelsTr.csv", "imagesTr", ending)
    y_ts, s_ts = _table(raw, "labelsTs.csv", "imagesTs", ending)
    print(f"{raw.name}: {len(y_tr)} training cases ({y_tr.mean():.1%} positive), {len(y_ts)} test cases")
    print(f"{'statistic':48s} {'test AUC':>9s} {'train AUC':>9s}")
    for k in s_ts:
        print(f"{k:48s} {roc_auc_score(y_ts, s_ts[k]):9.3f} {roc_auc_score(y_tr, s_tr[k]):9.3f}")


if __name__ == "__main__":
    main()
