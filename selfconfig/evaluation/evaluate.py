"""Evaluate a folder of predicted label maps, or a predictions table, against the reference.

Both entry points write ``summary.json`` (metrics plus one entry per case) and ``per_case.csv``
into the output folder and return the summary. Undefined values (e.g. Dice of a class absent
from both prediction and reference) are NaN in the returned dict and ``null`` in
``summary.json`` (JSON has no NaN); ``per_case.csv`` leaves them empty.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from selfconfig.dataset.cases import split_ending
from selfconfig.dataset.labels import LabelScheme
from selfconfig.errors import EvaluationError
from selfconfig.evaluation.metrics import (
    accuracy,
    froc,
    nanmean,
    quadratic_weighted_kappa,
    roc_auc,
    segmentation_case_metrics,
)
from selfconfig.utils import atomic_write_text, write_json

logger = logging.getLogger(__name__)

# endings that can hold a label map; files with other endings (summary.json, ...) are skipped
LABEL_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".bmp", ".tif", ".tiff")
#: the folder of the output folder that holds the overlay PNGs (selfconfig.evaluation.overlays)
OVERLAYS = "overlays"


def _read_label(path: Path):
    """``selfconfig.dataset.io.read_label`` (imported late: the reader pulls in every format)."""
    from selfconfig.dataset.io import read_label

    return read_label(path)


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {(k if isinstance(k, str) else str(k)): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_outputs(output_dir: Path, summary: dict, per_case: pd.DataFrame) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "summary.json", _json_safe(summary))
    atomic_write_text(output_dir / "per_case.csv", per_case.to_csv(index=False))
    logger.info("wrote %s and %s", output_dir / "summary.json", output_dir / "per_case.csv")


# ----------------------------------------------------------------------------------------------
# segmentation


def _case_files(folder: Path, file_ending: str | None) -> dict[str, Path]:
    """Case name -> label file. ``file_ending=None``: any known label-map ending."""
    if not folder.is_dir():
        raise EvaluationError(f"{folder} is not a folder; pass the folder that holds the label files")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if file_ending:
            if not (p.name.lower().endswith(file_ending.lower()) and len(p.name) > len(file_ending)):
                continue
            case = p.name[: -len(file_ending)]
        else:
            case, ending = split_ending(p.name)
            if p.is_dir() or ending.lower() not in LABEL_ENDINGS:
                continue
        if case in found:
            raise EvaluationError(
                f"{folder}: case {case} has two files ({found[case].name}, {p.name}); keep one or pass file_ending"
            )
        found[case] = p
    return found


def _evaluate_case(case: str, pred_path: Path, ref_path: Path, targets: list, ignore_label: int | None = None,
                   images: list[Path] | None = None, overlay: Path | None = None) -> dict:
    """Read one pair and return its per-label metrics (runs in a worker process); with ``overlay``
    also draw the case there (on the scan read from ``images``, if given)."""
    ref, ref_geom = _read_label(ref_path)
    pred, pred_geom = _read_label(pred_path)
    ref = np.asarray(ref)
    pred = np.asarray(pred)
    if pred.shape != ref.shape:
        raise EvaluationError(
            f"prediction {pred_path} has shape {tuple(pred.shape)} but reference {ref_path} has shape "
            f"{tuple(ref.shape)}; predict on the reference's grid (same image) and evaluate again"
        )
    try:
        if not ref_geom.same_grid(pred_geom):
            logger.warning("%s and %s have the same shape but different spacing/origin/direction",
                           pred_path, ref_path)
    except AttributeError:  # a reader that returns no Geometry: nothing to compare
        pass
    metrics = segmentation_case_metrics(pred, ref, [v for _, v in targets], ignore_label)
    if overlay is not None:
        _draw_overlay(case, overlay, images, ref, pred, getattr(ref_geom, "spacing", (1.0,) * 3), targets, metrics)
    return {"case": case, "metrics": metrics}


def _draw_overlay(case: str, path: Path, images: list[Path] | None, ref: np.ndarray, pred: np.ndarray,
                  spacing, targets: list, metrics: dict) -> None:
    from selfconfig.dataset.io import read_case
    from selfconfig.evaluation.overlays import draw_case

    image = read_case(images)[0] if images else None
    if image is not None and image.shape[1:] != ref.shape:
        logger.warning("%s: the scan %s has shape %s, the labels %s; its outlines are drawn without it",
                       case, images[0], image.shape[1:], ref.shape)
        image = None
    dice = nanmean(m["dice"] for m in metrics.values())
    draw_case(path, image, ref, pred, spacing, targets, f"{case}: mean Dice {dice:.3f}")


def _write_montage(output_dir: Path, per_case: list[dict]) -> list[dict]:
    """overlays/montage.png of the best, median and worst case; returns who is shown."""
    from selfconfig.evaluation.overlays import draw_montage, montage_picks

    picks = montage_picks(per_case)
    if picks:
        draw_montage(output_dir / OVERLAYS / "montage.png", picks, output_dir / OVERLAYS)
    return [{"rank": rank, "case": pc["case"], "mean_dice": pc["mean_dice"]} for rank, pc in picks]


def evaluate_segmentation_folder(
    pred_dir: Path,
    ref_dir: Path,
    labels: dict[str, Any],
    output_dir: Path | None = None,
    file_ending: str | None = None,
    num_workers: int = 1,
    case_ids: list[str] | None = None,
    images: dict[str, list[Path]] | None = None,
    overlays: bool = True,
) -> dict:
    """Dice (and voxel counts) of every reference case against the prediction of the same name.

    ``overlays``: also draw each case into ``overlays/<case>.png`` and the best, median and worst
    into ``overlays/montage.png`` (:mod:`selfconfig.evaluation.overlays`), on the scan given by
    ``images`` (case -> its channel files), or on black where a case has none.

    ``case_ids`` restricts the evaluation to those reference cases (e.g. one fold's validation
    cases inside labelsTr).

    ``labels`` maps names to voxel values as in dataset.json; value 0 (background) is not
    scored. A name that maps to a list of values is an nnU-Net v2 region, scored as the voxels
    holding any of them; voxels whose reference is the ``ignore`` label count nowhere. Files are matched by case name (file name without ``file_ending``; with ``None``
    any label-map ending, so predictions may be stored in another format than the reference).
    Every reference case needs a prediction (:class:`EvaluationError` names the missing
    ones); predictions without a reference are ignored with a warning.

    Means: ``mean.dice_per_class[name]`` is the NaN-skipping mean over cases (a case where the
    class is absent from both files does not count), ``mean.mean_dice`` the mean of those class
    means; a case's ``mean_dice`` is the NaN-skipping mean over its classes.
    """
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    output_dir = Path(output_dir) if output_dir is not None else pred_dir
    scheme = LabelScheme.from_labels(labels)
    fg = scheme.evaluation_targets()  # (name, value) or (name, region tuple); not background, not ignore
    if not scheme.has_regions:
        fg = sorted(fg, key=lambda nv: nv[1])
    if not fg:
        raise EvaluationError(f"labels {labels} name no foreground class (value != 0); nothing to evaluate")
    names = [n for n, _ in fg]

    refs = _case_files(ref_dir, file_ending)
    if case_ids is not None:
        unknown = sorted(set(case_ids) - set(refs))
        if unknown:
            raise EvaluationError(f"{ref_dir} has no reference for case(s) {', '.join(unknown[:10])}")
        refs = {c: refs[c] for c in case_ids}
    preds = _case_files(pred_dir, file_ending)
    if not refs:
        raise EvaluationError(f"{ref_dir} holds no label files{f' ending in {file_ending}' if file_ending else ''}")
    missing = sorted(set(refs) - set(preds))
    if missing:
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise EvaluationError(
            f"{pred_dir} has no prediction for {len(missing)} reference case(s) of {ref_dir}: {shown}; "
            f"predict them (same case name) and evaluate again"
        )
    extra = sorted(set(preds) - set(refs))
    if extra:
        logger.warning("%d prediction(s) in %s have no reference in %s and are ignored: %s",
                       len(extra), pred_dir, ref_dir, ", ".join(extra[:10]))

    images = images or {}
    jobs = [(case, preds[case], refs[case], fg, scheme.ignore_label, images.get(case),
             output_dir / OVERLAYS / f"{case}.png" if overlays else None) for case in sorted(refs)]
    if num_workers > 1 and len(jobs) > 1:
        # spawn: callers may hold torch/OpenMP threads, which fork does not survive reliably
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(num_workers, len(jobs)), mp_context=ctx) as pool:
            results = list(pool.map(_evaluate_case, *zip(*jobs)))
    else:
        results = [_evaluate_case(*job) for job in jobs]

    per_case = []
    rows = []
    for (case, pred_path, ref_path, *_), res in zip(jobs, results):
        by_name = {name: {k: v for k, v in res["metrics"][value].items()} for name, value in fg}
        case_mean = nanmean(m["dice"] for m in by_name.values())
        per_case.append({"case": case, "prediction_file": str(pred_path), "reference_file": str(ref_path),
                         "metrics": by_name, "mean_dice": case_mean})
        rows.append({"case": case, **{f"dice_{n}": by_name[n]["dice"] for n in names}, "mean_dice": case_mean})

    dice_means = {n: nanmean(pc["metrics"][n]["dice"] for pc in per_case) for n in names}
    summary = {
        "task": "segmentation",
        "labels": {str(n): (list(v) if isinstance(v, tuple) else v)
                   for n, v in LabelScheme.from_labels(labels).labels},
        "n_cases": len(per_case),
        "mean": {"dice_per_class": dice_means, "mean_dice": nanmean(dice_means.values())},
        "per_case": per_case,
    }
    if overlays:
        summary["overlays"] = {"folder": OVERLAYS, "montage": _write_montage(output_dir, per_case)}
    _write_outputs(output_dir, summary, pd.DataFrame(rows, columns=["case", *[f"dice_{n}" for n in names], "mean_dice"]))
    logger.info("evaluated %d case(s): mean Dice %.4f", len(per_case), summary["mean"]["mean_dice"])
    return summary


# ----------------------------------------------------------------------------------------------
# classification


def _read_table(path: Path, required: tuple[str, ...], what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path} does not exist; pass the {what} CSV")
    try:
        df = pd.read_csv(path, dtype={"case": str})
    except Exception as e:  # pandas raises many types for malformed files
        raise EvaluationError(f"{path} cannot be read as CSV ({e}); it needs columns {','.join(required)}")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise EvaluationError(f"{path} lacks column(s) {', '.join(missing)}; it needs columns {','.join(required)}")
    dup = df["case"][df["case"].duplicated()].unique().tolist()
    if dup:
        raise EvaluationError(f"{path} lists case(s) {', '.join(map(str, dup[:10]))} more than once; keep one row each")
    return df


def _to_class_index(series: pd.Series, class_names: dict[str, int], path: Path, column: str) -> np.ndarray:
    """Class names or integer indices -> indices; anything else is an error naming the file."""
    valid = set(class_names.values())
    out, bad = [], []
    for case, v in zip(series.index, series):
        idx = None
        if isinstance(v, str) and v.strip() in class_names:
            idx = class_names[v.strip()]
        else:
            try:
                f = float(v)
                if f.is_integer() and int(f) in valid:
                    idx = int(f)
            except (TypeError, ValueError):
                pass
        if idx is None:
            bad.append(repr(v))
        out.append(-1 if idx is None else idx)
    if bad:
        raise EvaluationError(
            f"{path}: column '{column}' holds {', '.join(sorted(set(bad))[:10])}, not a class of "
            f"{sorted(class_names.items(), key=lambda kv: kv[1])}; use class indices or names"
        )
    return np.asarray(out, dtype=np.int64)


def _prob_columns(df: pd.DataFrame, class_names: dict[str, int], path: Path) -> list[str] | None:
    ordered = [n for n, _ in sorted(class_names.items(), key=lambda nv: nv[1])]
    cols = [f"prob_{n}" for n in ordered]
    present = [c for c in cols if c in df.columns]
    if not present:
        return None
    if len(present) != len(cols):
        missing = [c for c in cols if c not in df.columns]
        raise EvaluationError(f"{path} lacks column(s) {', '.join(missing)}; write one prob_<class> column per class")
    return cols


def evaluate_classification_csv(
    pred_csv: Path,
    labels_csv: Path,
    class_names: dict[str, int],
    output_dir: Path | None = None,
    case_ids: list[str] | None = None,
    figures: bool = True,
) -> dict:
    """Accuracy, quadratic-weighted kappa and ROC AUC of a predictions table; with ``figures``
    also ``confusion_matrix.png`` and (given probabilities) ``roc_curves.png``.

    ``case_ids`` restricts the evaluation to those labelled cases (e.g. one validation fold).

    ``pred_csv``: columns ``case``, ``prediction`` (class index or name) and ``prob_<class>``
    per class; without ``prediction`` the arg-max of the probabilities is used, without any
    ``prob_`` column the AUC is NaN. ``labels_csv``: ``case,label`` (index or name), extra
    columns are ignored. Every labelled case needs a prediction (:class:`EvaluationError`
    names the missing ones); predictions of unlabelled cases are ignored with a warning.
    Kappa weights disagreements by the distance between class indices (all classes of
    ``class_names``); AUC as in :func:`selfconfig.evaluation.metrics.roc_auc`. Output folder:
    ``output_dir``, default the folder of ``pred_csv``.
    """
    pred_csv, labels_csv = Path(pred_csv), Path(labels_csv)
    output_dir = Path(output_dir) if output_dir is not None else pred_csv.parent
    class_names = {str(n): int(v) for n, v in class_names.items()}
    order = sorted(class_names.items(), key=lambda nv: nv[1])
    if [v for _, v in order] != list(range(len(order))):
        raise EvaluationError(f"class indices must be 0..{len(order) - 1}, got {class_names}")

    preds = _read_table(pred_csv, ("case",), "predictions")
    truth = _read_table(labels_csv, ("case", "label"), "labels")
    prob_cols = _prob_columns(preds, class_names, pred_csv)
    if "prediction" not in preds.columns and prob_cols is None:
        raise EvaluationError(f"{pred_csv} has neither a 'prediction' column nor prob_<class> columns")

    preds = preds.set_index("case")
    truth = truth.set_index("case")
    if case_ids is not None:
        unknown = sorted(set(case_ids) - set(truth.index))
        if unknown:
            raise EvaluationError(f"{labels_csv} has no label for case(s) {', '.join(unknown[:10])}")
        truth = truth.loc[list(case_ids)]
    missing = sorted(set(truth.index) - set(preds.index))
    if missing:
        raise EvaluationError(
            f"{pred_csv} has no prediction for {len(missing)} case(s) of {labels_csv}: "
            f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}; predict them and evaluate again"
        )
    extra = sorted(set(preds.index) - set(truth.index))
    if extra:
        logger.warning("%d prediction(s) in %s have no label in %s and are ignored", len(extra), pred_csv, labels_csv)
    preds = preds.loc[truth.index]

    y_true = _to_class_index(truth["label"], class_names, labels_csv, "label")
    probs = preds[prob_cols].to_numpy(dtype=np.float64) if prob_cols else None
    if probs is not None and np.isnan(probs).any():
        raise EvaluationError(f"{pred_csv}: prob_ columns have empty or non-numeric values; fill them")
    if "prediction" in preds.columns:
        y_pred = _to_class_index(preds["prediction"], class_names, pred_csv, "prediction")
    else:
        y_pred = np.argmax(probs, axis=1)
    if probs is None:
        logger.warning("%s has no prob_<class> columns; ROC AUC is not computed", pred_csv)

    k = len(order)
    metrics = {
        "accuracy": accuracy(y_true, y_pred),
        "quadratic_weighted_kappa": quadratic_weighted_kappa(y_true, y_pred, labels=list(range(k))),
        "roc_auc": roc_auc(y_true, probs) if probs is not None else math.nan,
        "n_cases": int(y_true.size),
    }
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)

    table = pd.DataFrame({"case": list(truth.index), "label": y_true, "prediction": y_pred,
                          "correct": y_true == y_pred})
    if probs is not None:
        for j, col in enumerate(prob_cols):
            table[col] = probs[:, j]
    summary = {
        "task": "classification",
        "labels": class_names,
        "metrics": metrics,
        "confusion_matrix": {"rows": "reference", "columns": "prediction",
                             "classes": [n for n, _ in order], "matrix": confusion.tolist()},
        "per_case": table.to_dict("records"),
    }
    if figures:
        summary["figures"] = _classification_figures(output_dir, confusion, [n for n, _ in order], y_true, probs)
    _write_outputs(output_dir, summary, table)
    logger.info("evaluated %d case(s): accuracy %.4f, kappa %.4f, AUC %.4f", metrics["n_cases"],
                metrics["accuracy"], metrics["quadratic_weighted_kappa"], metrics["roc_auc"])
    return summary


def _classification_figures(output_dir: Path, confusion: np.ndarray, classes: list[str], y_true: np.ndarray,
                            probs: np.ndarray | None) -> list[str]:
    from selfconfig.evaluation.overlays import draw_confusion_matrix, draw_roc_curves

    output_dir.mkdir(parents=True, exist_ok=True)
    draw_confusion_matrix(output_dir / "confusion_matrix.png", confusion, classes)
    if probs is None:
        return ["confusion_matrix.png"]
    draw_roc_curves(output_dir / "roc_curves.png", y_true, probs, classes)
    return ["confusion_matrix.png", "roc_curves.png"]


# ----------------------------------------------------------------------------------------------
# FROC from tables


def _candidate_probability(pred_df: pd.DataFrame, positive_class: str | None) -> pd.Series:
    if positive_class is not None:
        col = f"prob_{positive_class}"
        if col not in pred_df.columns:
            raise EvaluationError(f"predictions lack column {col} for positive class {positive_class!r}")
        return pred_df[col]
    if "probability" in pred_df.columns:
        return pred_df["probability"]
    cols = [c for c in pred_df.columns if str(c).startswith("prob_")]
    if len(cols) != 2:
        raise EvaluationError(
            f"predictions have prob_ columns {cols}; FROC needs one nodule probability: pass positive_class"
        )
    return pred_df[cols[1]]


def froc_from_tables(
    pred_df: pd.DataFrame,
    labels_df: pd.DataFrame,
    nodules_df: pd.DataFrame,
    max_fp_per_scan: float = 3.0,
    n_scans: int | None = None,
    positive_class: str | None = None,
) -> dict:
    """FROC of candidate classification (see :func:`selfconfig.evaluation.metrics.froc`).

    ``pred_df``: ``case`` and the nodule probability (``prob_<positive_class>``, else a
    ``probability`` column, else the second of two ``prob_`` columns = class index 1).
    ``labels_df``: ``case, scan_id, nodule_id`` with ``nodule_id`` -1 (or empty) for a false
    candidate. ``nodules_df``: ``scan_id, nodule_id`` of ALL true nodules of the evaluated scans
    (also those no candidate hits); restrict it to the same scans as ``labels_df``.
    ``n_scans`` defaults to the scans named in ``labels_df`` or ``nodules_df``; pass it when
    some evaluated scans have neither candidates nor nodules.
    """
    for name, df, cols in (("predictions", pred_df, ("case",)), ("labels", labels_df, ("case", "scan_id", "nodule_id")),
                           ("nodules", nodules_df, ("scan_id", "nodule_id"))):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise EvaluationError(f"FROC: the {name} table lacks column(s) {', '.join(missing)}")
    prob = _candidate_probability(pred_df, positive_class)
    probs = pd.Series(prob.to_numpy(dtype=np.float64), index=pred_df["case"].astype(str))
    if probs.index.duplicated().any():
        raise EvaluationError("FROC: the predictions table lists a case more than once")
    cases = labels_df["case"].astype(str)
    missing = sorted(set(cases) - set(probs.index))
    if missing:
        raise EvaluationError(
            f"FROC: no prediction for {len(missing)} candidate(s): {', '.join(missing[:20])}; predict them"
        )

    def norm_id(v) -> str | None:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        s = str(v).strip()
        if s.endswith(".0") and s[:-2].lstrip("-").isdigit():
            s = s[:-2]
        return None if s in ("", "-1", "nan", "None") else s

    scans = labels_df["scan_id"].astype(str).to_numpy()
    nodule_ids = [norm_id(v) for v in labels_df["nodule_id"]]
    all_nodules = {(str(s), norm_id(n)) for s, n in zip(nodules_df["scan_id"], nodules_df["nodule_id"])}
    if any(n is None for _, n in all_nodules):
        raise EvaluationError("FROC: the nodules table has rows without nodule_id; every true nodule needs an id")
    unknown = sorted({(s, n) for s, n in zip(scans, nodule_ids) if n is not None} - all_nodules)
    if unknown:
        raise EvaluationError(
            f"FROC: candidates hit nodule(s) {unknown[:10]} (scan_id, nodule_id) that the nodules table lacks; "
            f"list every true nodule there"
        )
    if n_scans is None:
        n_scans = len(set(scans) | {s for s, _ in all_nodules})
    candidates = pd.DataFrame({
        "scan_id": scans,
        "probability": probs.loc[cases].to_numpy(),
        "is_true": [n is not None for n in nodule_ids],
        "nodule_id": nodule_ids,
    })
    return froc(candidates, total_nodules=len(all_nodules), n_scans=n_scans, max_fp_per_scan=max_fp_per_scan)
