"""Pictures of a scored folder: what the network drew, next to what it should have drawn.

Segmentation: one PNG per case (``overlays/<case>.png``) with three orthogonal slices through
the labelled structures (2D images: the image itself), the scan in gray (colour images in
colour), the reference outline solid and the prediction outline dashed, each class in its colour
with a legend; and ``overlays/montage.png``, the best, median and worst case by mean Dice.
Classification: ``confusion_matrix.png`` and ``roc_curves.png``.

Large scans stay cheap: every slice is resampled (nearest neighbour, to square millimetres) to
at most :data:`PIXEL_BUDGET` pixels on its longer side before anything is drawn, so drawing costs
the same for a 32^3 volume and a 512x512x400 CT; what grows with the scan is reading it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from selfconfig.utils import atomic_savefig

#: longest side of a drawn slice, in pixels
PIXEL_BUDGET = 256
#: class colours in label order (background has none): matplotlib's tab10 without its gray
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
#: per 3D case: (axis sliced, plane name)
PLANES = ((0, "axial"), (1, "coronal"), (2, "sagittal"))
MONTAGE_RANKS = ("best", "median", "worst")

Target = tuple[str, "int | tuple[int, ...]"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def class_colours(names: Sequence[str]) -> dict[str, str]:
    """The colour of each scored class, in the order the dataset's labels give them."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def target_mask(labels: np.ndarray, value) -> np.ndarray:
    """Voxels of one class, or of one region (a tuple of values)."""
    if isinstance(value, (tuple, list)):
        return np.isin(labels, value)
    return labels == value


def structure_slices(mask: np.ndarray) -> tuple[int, ...]:
    """Per axis, the slice through the centre of ``mask`` when that slice holds at least half as
    much of it as the fullest slice (two lungs: the centre falls between them), else the fullest
    slice (the middle when the mask is empty)."""
    if not mask.any():
        return tuple(n // 2 for n in mask.shape)
    out = []
    for ax in range(mask.ndim):
        counts = mask.sum(axis=tuple(a for a in range(mask.ndim) if a != ax))
        centre = int(np.average(np.arange(counts.size), weights=counts))
        out.append(centre if counts[centre] >= counts.max() / 2 else int(np.argmax(counts)))
    return tuple(out)


def plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """One slice of a (..., Z, Y, X) array across ``axis`` of its last three; coronal and
    sagittal planes are flipped so that z points up."""
    taken = np.take(volume, index, axis=volume.ndim - 3 + axis)
    return taken if axis == 0 else taken[..., ::-1, :]


def resample_plane(p: np.ndarray, spacing: tuple[float, float], budget: int = PIXEL_BUDGET) -> np.ndarray:
    """Nearest-neighbour resampling of the last two axes to square pixels, the longer side
    ``budget`` pixels (a fixed cost per slice, whatever the scan's size)."""
    h, w = p.shape[-2:]
    extent = (h * spacing[0], w * spacing[1])
    scale = budget / max(extent)
    rows = np.minimum((np.arange(max(1, round(extent[0] * scale))) + 0.5) / scale / spacing[0], h - 1)
    cols = np.minimum((np.arange(max(1, round(extent[1] * scale))) + 0.5) / scale / spacing[1], w - 1)
    return p[..., rows.astype(int)[:, None], cols.astype(int)[None, :]]


def display_image(image: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """(C, Z, Y, X) scan -> what is shown: (Z, Y, X) gray, or (3, Z, Y, X) for a three-channel 2D
    image, scaled to 0..1 between the 1st and 99th percentile (of a subsample: cheap)."""
    if image is None:
        return np.zeros(shape, np.float32)
    shown = image if image.shape[0] == 3 and image.shape[1] == 1 else image[0]
    step = max(1, int(round((shown.size / 1e6) ** (1 / 3))))
    low, high = np.percentile(shown[..., ::step, ::step, ::step], [1, 99])
    return np.clip((shown - low) / max(high - low, 1e-6), 0, 1).astype(np.float32)


#: reference: a solid line; prediction: a dashed line around a light shading, so that where the
#: two agree both stay visible (shading inside the solid line)
LINES = {"reference": {"linewidths": 2.0, "linestyles": "solid"},
         "prediction": {"linewidths": 1.3, "linestyles": "dashed"}}
PREDICTION_SHADE = 0.25


def _outline(ax, mask: np.ndarray, colour: str, which: str) -> None:
    if not mask.any() or mask.all():
        return
    ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], **LINES[which])
    if which == "prediction":
        ax.contourf(mask.astype(np.float32), levels=[0.5, 1.5], colors=[colour], alpha=PREDICTION_SHADE)


#: the legend's entries at font size 8: inches per character of a name, and per entry besides it
LEGEND_CHAR_INCHES, LEGEND_ENTRY_INCHES, LEGEND_ROW_INCHES = 0.065, 0.55, 0.2


def legend_layout(names: Sequence[str], width: float) -> tuple[int, float]:
    """Columns and height (inches) of the legend of ``names`` (the classes, then reference and
    prediction) under a figure ``width`` inches wide: as many columns as fit, so that no entry is
    cut off at the figure's edge, and as many rows as they need."""
    entries = [*names, "reference", "prediction"]
    column = LEGEND_ENTRY_INCHES + LEGEND_CHAR_INCHES * max(len(n) for n in entries)
    ncol = max(1, min(len(entries), int(width // column)))
    rows = -(-len(entries) // ncol)
    return ncol, LEGEND_ROW_INCHES * rows + 0.1


def _legend(fig, colours: dict[str, str], ncol: int) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color=c, lw=3, label=n) for n, c in colours.items()]
    handles += [Line2D([], [], color="k", label="reference", **_line_style("reference")),
                Patch(facecolor=(0, 0, 0, PREDICTION_SHADE), edgecolor="k", label="prediction",
                      **_line_style("prediction"))]
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False, handlelength=1.5,
               columnspacing=1.0)


def _line_style(which: str) -> dict:
    return {"lw": LINES[which]["linewidths"], "ls": LINES[which]["linestyles"]}


def _draw_plane(ax, shown, ref, pred, targets: Sequence[Target], colours, spacing2d, name: str) -> None:
    """One slice: ``shown`` (Y, X) gray or (3, Y, X) colour, the outlines of ``ref`` and ``pred``."""
    picture = resample_plane(shown, spacing2d)
    ax.imshow(np.moveaxis(picture, 0, -1) if picture.ndim == 3 else picture, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    for label_name, value in targets:
        _outline(ax, resample_plane(target_mask(ref, value), spacing2d), colours[label_name], "reference")
        _outline(ax, resample_plane(target_mask(pred, value), spacing2d), colours[label_name], "prediction")
    ax.set_title(name, fontsize=9)
    ax.set_axis_off()


def draw_case(path: Path, image: np.ndarray | None, ref: np.ndarray, pred: np.ndarray,
              spacing: Sequence[float], targets: Sequence[Target], title: str) -> tuple[int, ...]:
    """Write one case's overlay PNG; returns the (z, y, x) indices of the slices drawn.

    ``image``: (C, Z, Y, X) or None (outlines on black); ``ref``/``pred``: (Z, Y, X) label maps
    (2D: Z == 1); ``spacing``: (z, y, x) in mm."""
    plt = _pyplot()
    shown = display_image(image, ref.shape)
    colours = class_colours([n for n, _ in targets])
    fg = np.isin(ref, [v for _, val in targets for v in np.atleast_1d(val)])
    at = structure_slices(fg if fg.any() else pred > 0)
    planes = PLANES[:1] if ref.shape[0] == 1 else PLANES
    width = 3.2 * len(planes)
    ncol, legend_height = legend_layout(list(colours), width)
    height = 3.5 + legend_height
    fig, axes = plt.subplots(1, len(planes), figsize=(width, height), squeeze=False)
    for ax, (axis, name) in zip(axes[0], planes):
        sp = tuple(s for i, s in enumerate(spacing) if i != axis)
        label = "image" if len(planes) == 1 else f"{name}, slice {at[axis]}"
        _draw_plane(ax, plane(shown, axis, at[axis]), plane(ref, axis, at[axis]), plane(pred, axis, at[axis]),
                    targets, colours, sp, label)
    fig.suptitle(title, fontsize=10)
    _legend(fig, colours, ncol)
    fig.tight_layout(rect=(0, legend_height / height, 1, 1))
    atomic_savefig(fig, Path(path), dpi=100)
    plt.close(fig)
    return at


def figure_paths(summary: dict) -> list[str]:
    """The pictures an evaluation wrote, relative to its output folder (montage first)."""
    if "overlays" in summary:
        return [f"{summary['overlays']['folder']}/montage.png"] if summary["overlays"]["montage"] else []
    return list(summary.get("figures", []))


def montage_picks(per_case: Sequence[dict]) -> list[tuple[str, dict]]:
    """(rank, case entry) of the best, median and worst case by mean Dice; cases without a Dice
    are left out, and a case is shown once (fewer than three cases: fewer rows)."""
    scored = sorted((pc for pc in per_case if np.isfinite(pc["mean_dice"])), key=lambda pc: -pc["mean_dice"])
    if not scored:
        return []
    picks = dict(zip(MONTAGE_RANKS, (scored[0], scored[len(scored) // 2], scored[-1])))
    out, seen = [], set()
    for rank, pc in picks.items():
        if pc["case"] not in seen:
            seen.add(pc["case"])
            out.append((rank, pc))
    return out


def draw_montage(path: Path, picks: Sequence[tuple[str, dict]], folder: Path) -> None:
    """Stack the overlay PNGs (``folder/<case>.png``) of ``picks`` under a line naming each rank."""
    plt = _pyplot()
    images = [plt.imread(folder / f"{pc['case']}.png") for _, pc in picks]
    h, w = images[0].shape[:2]
    fig, axes = plt.subplots(len(images), 1, figsize=(w / 100, (h / 100 + 0.35) * len(images)), squeeze=False)
    for ax, (rank, pc), img in zip(axes[:, 0], picks, images):
        ax.imshow(img)
        ax.set_axis_off()
        ax.set_title(f"{rank} case by mean Dice", loc="left", fontsize=11, fontweight="bold")
    fig.tight_layout()
    atomic_savefig(fig, Path(path), dpi=100)
    plt.close(fig)


def draw_confusion_matrix(path: Path, matrix: np.ndarray, classes: Sequence[str]) -> None:
    """Counts, reference in rows and prediction in columns, each cell shaded by its row's share."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 2.2 + 0.6 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    shade = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (r, c), n in np.ndenumerate(matrix):
        ax.text(c, r, str(n), ha="center", va="center", color="white" if share[r, c] > 0.6 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("prediction")
    ax.set_ylabel("reference")
    fig.colorbar(shade, ax=ax, label="share of the reference class")
    fig.tight_layout()
    atomic_savefig(fig, Path(path), dpi=100)
    plt.close(fig)


def roc_curves(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, tuple]:
    """Class name -> (false-positive rates, true-positive rates, AUC), one-vs-rest; two classes:
    the positive (second) class only; a class absent from ``y_true`` has no curve."""
    from sklearn.metrics import auc, roc_curve

    shown = [1] if len(classes) == 2 else range(len(classes))
    out = {}
    for k in shown:
        positive = np.asarray(y_true) == k
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, k])
        out[classes[k]] = (fpr, tpr, float(auc(fpr, tpr)))
    return out


def draw_roc_curves(path: Path, y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    colours = class_colours(classes)
    for name, (fpr, tpr, area) in roc_curves(y_true, probs, classes).items():
        ax.plot(fpr, tpr, color=colours[name], lw=1.6, label=f"{name} (AUC {area:.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="chance")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("ROC, one class against the rest" if len(classes) > 2 else "ROC", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_aspect("equal")
    fig.tight_layout()
    atomic_savefig(fig, Path(path), dpi=100)
    plt.close(fig)
