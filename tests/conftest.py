"""Shared fixtures: tiny datasets written into tmp folders, and data roots pointing at them.

Every dataset here is a few 16-32 voxel volumes or 32-64 pixel images, so that planning,
preprocessing and a few training iterations run in seconds on a 2-core CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from selfconfig.dataset.geometry import DUMMY_2D_SPACING, Geometry
from selfconfig.paths import Roots

torch.set_num_threads(1)  # tests run beside other work; one thread is faster then


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """The per-machine cache (CPU throughput) of the test session, not the user's."""
    import os

    old = os.environ.get("SELFCONFIG_CACHE")
    os.environ["SELFCONFIG_CACHE"] = str(tmp_path_factory.mktemp("selfconfig_cache"))
    yield
    if old is None:
        os.environ.pop("SELFCONFIG_CACHE", None)
    else:
        os.environ["SELFCONFIG_CACHE"] = old


@pytest.fixture(autouse=True)
def _restore_logging():
    """Commands configure the root logger (console handler, INFO level); undo that after each test
    so that later tests neither log into a closed capture nor inherit the level."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


@pytest.fixture
def roots(tmp_path, monkeypatch) -> Roots:
    r = Roots(tmp_path / "raw", tmp_path / "preprocessed", tmp_path / "results")
    monkeypatch.setenv("SELFCONFIG_RAW", str(r.raw))
    monkeypatch.setenv("SELFCONFIG_PREPROCESSED", str(r.preprocessed))
    monkeypatch.setenv("SELFCONFIG_RESULTS", str(r.results))
    return r


def _blob_volume(rng, shape, n_classes):
    """A noisy image with one bright blob per class; the label marks each blob."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), 0).astype(np.float32)
    image = rng.normal(0, 0.3, shape).astype(np.float32)
    seg = np.zeros(shape, np.uint8)
    for c in range(1, n_classes):
        center = np.array([rng.uniform(0.3, 0.7) * s for s in shape])
        radius = min(shape[-2:]) * rng.uniform(0.12, 0.2)
        d = np.sqrt(sum(((grid[i] - center[i]) / (1 if shape[i] > 1 else 1)) ** 2 for i in range(len(shape))))
        mask = d < radius
        seg[mask] = c
        image[mask] += 1.0 + c
    return image, seg


def write_dataset(raw: Path, name: str, *, task: str, dim: int, n_train: int = 6, n_test: int = 2, n_un: int = 2,
                  shape=(16, 32, 32), n_classes: int = 3, rgb: bool = False, seed: int = 0,
                  spacing=(2.0, 1.0, 1.0), ending: str | None = None) -> Path:
    from selfconfig.dataset.io import write_image, write_segmentation

    rng = np.random.default_rng(seed)
    out = raw / name
    ending = ending or (".nii.gz" if dim == 3 else ".png")
    for sub in ("imagesTr", "imagesTs", "imagesUn") + (("labelsTr", "labelsTs") if task == "segmentation" else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    labels = {"background": 0, **{f"class{i}": i for i in range(1, n_classes)}}
    rows = {"Tr": [], "Ts": []}
    idx = 0
    for split, n in (("Tr", n_train), ("Ts", n_test), ("Un", n_un)):
        for _ in range(n):
            cid = f"{name.lower()}_{idx:03d}"
            idx += 1
            sp = shape if dim == 3 else (1, *shape[-2:])
            image, seg = _blob_volume(rng, sp, n_classes)
            cls = int(rng.integers(0, n_classes))
            if task == "classification":  # the class sets the blob intensity: learnable
                image = rng.normal(0, 0.3, sp).astype(np.float32)
                image[tuple(slice(s // 4, 3 * s // 4) if s > 1 else slice(None) for s in sp)] += cls
            if dim == 3:
                geom = Geometry(spacing=tuple(float(s) for s in spacing), shape=sp, dim=3, file_ending=ending)
                write_image((image * 100).astype(np.float32), geom, out / f"images{split}" / f"{cid}_0000{ending}")
            else:
                geom = Geometry(spacing=(DUMMY_2D_SPACING, 1.0, 1.0), shape=sp, dim=2, source_format="image2d",
                                file_ending=".png")
                img8 = np.clip((image - image.min()) / (np.ptp(image) + 1e-6) * 255, 0, 255).astype(np.uint8)
                arr = np.stack([img8, np.roll(img8, 1, -1), 255 - img8]) if rgb else img8[None]
                write_image(arr, geom, out / f"images{split}" / f"{cid}_0000.png")
            if split != "Un":
                if task == "segmentation":
                    write_segmentation(seg, geom, out / f"labels{split}" / f"{cid}{ending}")
                else:
                    rows[split].append(f"{cid},{cls}")
    if task == "classification":
        for split in ("Tr", "Ts"):
            (out / f"labels{split}.csv").write_text("case,label\n" + "\n".join(rows[split]) + "\n")
    ds = {"name": name, "task": task, "dimensionality": dim, "channel_names": {"0": "RGB" if rgb else ("CT" if dim == 3 else "MR")},
          "labels": labels, "file_ending": ending, "synthetic": True}
    (out / "dataset.json").write_text(json.dumps(ds, indent=1))
    return out


@pytest.fixture
def make_dataset(roots):
    def factory(name: str = "TINY", **kw) -> Path:
        return write_dataset(roots.raw, name, **kw)

    return factory


@pytest.fixture
def planned(roots, make_dataset):
    """Factory: write a tiny dataset and plan + preprocess it (fixed CPU throughput: no timing)."""
    from selfconfig.planning import plan_and_preprocess

    def factory(name: str = "TINY", configurations=None, **kw):
        make_dataset(name, **kw)
        return plan_and_preprocess(name, configurations=configurations, num_processes=1, cpu_gflops=20.0,
                                   cpu_target_seconds=0.3, roots=roots, progress=False)

    return factory


FAST_HP = {"epochs": 2, "iters_per_epoch": 2, "val_iters": 1, "num_workers": 0, "checkpoint_every": 1}


@pytest.fixture
def fast_hp():
    return dict(FAST_HP)
