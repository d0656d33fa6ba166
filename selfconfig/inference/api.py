"""API behind ``selfconfig_predict``."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from selfconfig.dataset.io import output_ending_for, read_case, write_segmentation
from selfconfig.dataset.labels import LabelScheme
from selfconfig.errors import CheckpointError, ImageReadError
from selfconfig.inference.inputs import check_output_folder, discover_inputs
from selfconfig.inference.predictor import Predictor
from selfconfig.paths import Roots, fraction_tag, resolve_dataset_name, results_dataset_dir, run_folder_name
from selfconfig.planning import DEFAULT_PLANS_NAME, load_plans
from selfconfig.utils import atomic_path, atomic_write_text, check_free_space, write_error, write_json

log = logging.getLogger(__name__)


@dataclass
class PredictionResult:
    output: Path
    cases: list[str]
    checkpoints: list[Path]
    files: list[Path] = field(default_factory=list)


def find_checkpoints(roots: Roots, dataset: str, trainer: str, plans_name: str, configuration: str,
                     fraction: float | None, folds: list[str] | None, checkpoint: str = "final",
                     tag: str = "") -> list[Path]:
    """Checkpoints of the chosen folds. ``fraction=None``: the only trained fraction; ``folds=None``:
    every fold with a finished run."""
    base = results_dataset_dir(dataset, roots) / run_folder_name(trainer, plans_name, configuration, tag)
    if not base.is_dir():
        raise CheckpointError(f"no runs at {base}; train first: selfconfig_train -d {dataset} -c {configuration} -tr {trainer}")
    if fraction is None:
        fracs = sorted(p.name for p in base.glob("frac_*") if any(p.glob(f"fold_*/checkpoint_{checkpoint}.pt")))
        if len(fracs) != 1:
            raise CheckpointError(f"{base} holds runs for fractions {', '.join(fracs) or '(none finished)'}; pick one with -frac")
        frac_dir = base / fracs[0]
    else:
        frac_dir = base / fraction_tag(fraction)
    if folds is None:
        paths = sorted(frac_dir.glob(f"fold_*/checkpoint_{checkpoint}.pt"))
        if not paths:
            raise CheckpointError(f"no finished fold in {frac_dir}; train one or pick -frac / -f")
        return paths
    paths = [frac_dir / f"fold_{f}" / f"checkpoint_{checkpoint}.pt" for f in folds]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise CheckpointError(f"{missing[0]} does not exist; train that fold first or choose others with -f")
    return paths


def predict_files(predictor: Predictor, cases: dict[str, list[Path]], output: Path, save_probabilities: bool = False,
                  progress: bool = True) -> list[Path]:
    """Predict each case and write it (segmentation: a label file per case in the input's format;
    classification: ``predictions.csv``)."""
    check_output_folder(output, cases)
    written: list[Path] = []
    rows = []
    if predictor.task == "classification":
        class_names = sorted(predictor.plans.labels, key=lambda n: predictor.plans.labels[n])
    else:  # one name per network output (classes without "ignore", or regions)
        class_names = LabelScheme.of(predictor.plans).output_names
    for case, paths in tqdm(cases.items(), desc="predict", disable=not progress, leave=False):
        image, geometry = read_case(paths)
        finite = np.isfinite(image)
        if not finite.all():  # the network would turn them into an all-background "result"
            done = f"; {len(written)} earlier case(s) were written" if written else "; nothing was written"
            raise ImageReadError(f"{paths[0]}: contains {int((~finite).sum())} NaN/Inf voxel(s) of "
                                 f"{finite.size}; fix or replace the scan (case {case} was not predicted{done})")
        del finite
        res = predictor.predict_case(image, geometry, source=str(paths[0]), return_probabilities=save_probabilities)
        if predictor.task == "classification":
            probs = res["probabilities"]
            rows.append({"case": case, "prediction": res["prediction"], "prediction_name": class_names[res["prediction"]],
                         **{f"prob_{n}": float(probs[i]) for i, n in enumerate(class_names)}})
            continue
        target = output / f"{case}{output_ending_for(geometry)}"
        need = res["seg"].nbytes + (res["probabilities"].size * 2 if save_probabilities else 0)
        check_free_space(output, need, f"the prediction of case {case}")
        _make_folder(output)  # only now: a refused request leaves not even an empty folder
        write_segmentation(res["seg"], geometry, target)  # atomic: a failure leaves no finished-looking file
        written.append(target)
        if save_probabilities:
            with atomic_path(output / f"{case}_probabilities.npz") as tmp:
                np.savez_compressed(tmp, probabilities=res["probabilities"].astype(np.float16),
                                    class_names=np.asarray(class_names))
    if predictor.task == "classification":
        target = output / "predictions.csv"
        _make_folder(output)
        atomic_write_text(target, pd.DataFrame(rows).to_csv(index=False))
        written.append(target)
    return written


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(folder, e) from None


def predict(input_path: Path, output: Path, *, trainer: str, dataset: str | None = None,
            configuration: str | None = None, fraction: float | None = None, folds: list[str] | None = None,
            plans_name: str = DEFAULT_PLANS_NAME, checkpoint: str = "final", tta: bool = True,
            save_probabilities: bool = False, step_size: float = 0.5, device: str | None = None,
            roots: Roots | None = None, progress: bool = True, tag: str = "",
            precision: str = "auto") -> PredictionResult:
    from selfconfig.device import pick_device

    roots = roots or Roots.resolve()
    name = resolve_dataset_name(dataset, roots, need="preprocessed")
    plans = load_plans(roots.preprocessed / name, plans_name)
    configuration = configuration or plans.recommended_configuration
    plans.configuration(configuration)
    paths = find_checkpoints(roots, name, trainer, plans_name, configuration, fraction, folds, checkpoint, tag)
    dev = pick_device(device)
    predictor = Predictor.from_checkpoints(paths, dev, tta=tta, step_size=step_size, precision=precision)
    n_file_channels = len(predictor.plans.channel_names)
    cases = discover_inputs(Path(input_path), n_file_channels)
    check_output_folder(Path(output), cases)
    log.info("predicting %d case(s) with %d model(s) (%s), mirroring %s, %s", len(cases), len(paths),
             ", ".join(str(p.parent.name) for p in paths), "on" if tta else "off", predictor.precision)
    files = predict_files(predictor, cases, Path(output), save_probabilities, progress)
    write_json(Path(output) / "prediction_info.json", {
        "dataset": name, "trainer": trainer, "configuration": configuration, "plans": plans_name,
        "checkpoints": [str(p) for p in paths], "tta": tta, "step_size": step_size, "cases": list(cases)})
    return PredictionResult(Path(output), list(cases), paths, files)
