"""Synthetic example datasets for the paper's four applications (all SYNTHETIC, no patient data).

``selfconfig_make_example NAME`` writes ``raw/NAME``. Each generator is deterministic from its
seed and writes labeled training, held-out test and unlabeled splits.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from selfconfig.errors import ConfigurationError


@dataclass(frozen=True)
class Example:
    name: str
    module: str
    task: str
    dim: int
    strategy: str  # the paper's surrogate task for this application
    metric: str
    description: str


EXAMPLES: dict[str, Example] = {
    "LUNG_LOBES": Example("LUNG_LOBES", "selfconfig.examples.lung_lobes", "segmentation", 3, "SurrogateFlip",
                          "mean_dice", "3D lung-lobe segmentation in synthetic chest CT"),
    "NODULE_FPR": Example("NODULE_FPR", "selfconfig.examples.nodule_fpr", "classification", 3, "SurrogateWGAN",
                          "froc_auc_3fp", "3D nodule false-positive reduction (candidate patches)"),
    "FUNDUS_DR": Example("FUNDUS_DR", "selfconfig.examples.fundus_dr", "classification", 2, "SurrogateRotation",
                         "quadratic_weighted_kappa", "2D diabetic-retinopathy grading of fundus-like photographs"),
    "SKIN_SEG": Example("SKIN_SEG", "selfconfig.examples.skin_seg", "segmentation", 2, "SurrogateColor",
                        "mean_dice", "2D skin segmentation in colour photographs"),
}


def get_example(name: str) -> Example:
    key = name.upper()
    if key not in EXAMPLES:
        raise ConfigurationError(f"unknown example {name!r}; available: {', '.join(EXAMPLES)}")
    return EXAMPLES[key]


def make_example(name: str, raw_root: Path, *, seed: int = 0, overwrite: bool = False, **sizes) -> Path:
    """Write example ``name`` into ``raw_root/NAME`` (sizes: the generator's keyword arguments)."""
    ex = get_example(name)
    out = Path(raw_root) / ex.name
    if out.exists():
        if not overwrite:
            raise ConfigurationError(f"{out} already exists; pass --overwrite to write it again")
        shutil.rmtree(out)
    tmp = Path(raw_root) / f".{ex.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    mod = importlib.import_module(ex.module)
    mod.generate(tmp, seed=seed, **{k: v for k, v in sizes.items() if v is not None})
    tmp.rename(out)  # a half-written example is never taken for a finished one
    return out
