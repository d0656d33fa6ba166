"""API behind ``selfconfig_predict``."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from selfconfig.dataset.io import output_ending_for, read_case, write_segmentation
from selfconfig.dataset.labels import LabelScheme
from selfconfig.errors import CheckpointError, ConfigurationError, DatasetNotFoundError, ImageReadError
from selfconfig.inference.ensemble import EnsemblePredictor
from selfconfig.inference.inputs import check_output_folder, discover_inputs
from selfconfig.inference.postprocessing import apply_postprocessing, load_postprocessing
from selfconfig.inference.predictor import Predictor
from selfconfig.locking import run_folder_lock
from selfconfig.paths import Roots, fraction_tag, resolve_dataset_name, results_dataset_dir, run_folder_name
from selfconfig.planning import DEFAULT_PLANS_NAME, load_plans, plans_file
from selfconfig.plans import Plans
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
        # a fraction with a trained fold (a missing checkpoint of the kind asked for is named below)
        fracs = sorted(p.name for p in base.glob("frac_*") if any(p.glob(f"fold_*/checkpoint_{checkpoint}.pt"))
                       or any(p.glob("fold_*/checkpoint_final.pt")))
        if len(fracs) != 1:
            raise CheckpointError(f"{base} holds runs for fractions {', '.join(fracs) or '(none finished)'}; pick one with -frac")
        frac_dir = base / fracs[0]
    else:
        frac_dir = base / fraction_tag(fraction)
    if folds is None:
        paths = sorted(frac_dir.glob(f"fold_*/checkpoint_{checkpoint}.pt"))
        if not paths:
            raise CheckpointError(f"no fold in {frac_dir} has checkpoint_{checkpoint}.pt; "
                                  f"{_missing_hint(checkpoint)}, or pick -frac / -f")
        return paths
    paths = [frac_dir / f"fold_{f}" / f"checkpoint_{checkpoint}.pt" for f in folds]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise CheckpointError(f"{missing[0]} does not exist; {_missing_hint(checkpoint)}, or choose other folds with -f")
    return paths


def _missing_hint(checkpoint: str) -> str:
    """What to do when the checkpoint asked for is not there."""
    if checkpoint == "best":
        return ("checkpoint_best.pt is kept only by a run with validation cases (trained with --until-converged: "
                "the moment of its best whole-scan score); predict with -chk final")
    if checkpoint == "latest":
        return "checkpoint_latest.pt exists only while a run is unfinished; predict with -chk final"
    return "train that fold first"


def predict_files(predictor, cases: dict[str, list[Path]], output: Path, save_probabilities: bool = False,
                  progress: bool = True, postprocessing: dict | None = None) -> list[Path]:
    """Predict each case and write it (segmentation: a label file per case in the input's format;
    classification: ``predictions.csv``). ``predictor``: a :class:`Predictor` or an
    :class:`~selfconfig.inference.ensemble.EnsemblePredictor`; ``postprocessing``: a record of
    :mod:`selfconfig.inference.postprocessing` applied to each label map (not to the probabilities)."""
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
        # atomic: a failure leaves no finished-looking file
        write_segmentation(apply_postprocessing(res["seg"], postprocessing), geometry, target)
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


def resolve_model_dataset(dataset: str | None, roots: Roots) -> str:
    """``-d`` for prediction: a preprocessed dataset, else a dataset that only has results (an
    installed model on a machine that never saw the data)."""
    try:
        return resolve_dataset_name(dataset, roots, need="preprocessed")
    except DatasetNotFoundError:
        have = sorted(p.name for p in roots.results.iterdir() if p.is_dir()) if roots.results.is_dir() else []
        if dataset is None and len(have) == 1:
            return have[0]
        text = str(dataset or "").strip()
        hits = [n for n in have if n == text or (text.isdigit() and n.startswith(f"Dataset{int(text):03d}_"))]
        if len(hits) == 1:
            return hits[0]
        raise


def load_model_plans(roots: Roots, dataset: str, plans_name: str = DEFAULT_PLANS_NAME) -> Plans:
    """The preprocessed plans, else those an installed model put into its results folder."""
    pre = plans_file(roots.preprocessed / dataset, plans_name)
    if pre.is_file():
        return load_plans(roots.preprocessed / dataset, plans_name)
    installed = plans_file(results_dataset_dir(dataset, roots), plans_name)
    if installed.is_file():
        return Plans.load(installed)
    return load_plans(roots.preprocessed / dataset, plans_name)  # raises the usual "plan first" error


def ensemble_members(trainers: Sequence[str], configurations: Sequence[str]) -> list[tuple[str, str]]:
    """(trainer, configuration) pairs: one trainer for every configuration, or one each."""
    trainers, configurations = list(trainers), list(configurations)
    if len(trainers) == 1:
        trainers = trainers * len(configurations)
    elif len(configurations) == 1:
        configurations = configurations * len(trainers)
    if len(trainers) != len(configurations):
        raise ConfigurationError(f"give one -tr for every -c, or a single -tr ({len(trainers)} trainers, "
                                 f"{len(configurations)} configurations)")
    members = list(dict.fromkeys(zip(trainers, configurations)))
    return members


def predict(input_path: Path, output: Path, *, trainer: str | Sequence[str], dataset: str | None = None,
            configuration: str | Sequence[str] | None = None, fraction: float | None = None,
            folds: list[str] | None = None, plans_name: str = DEFAULT_PLANS_NAME, checkpoint: str = "final",
            tta: bool = True, save_probabilities: bool = False, step_size: float = 0.5, device: str | None = None,
            roots: Roots | None = None, progress: bool = True, tag: str = "", precision: str = "auto",
            postprocessing: Path | None = None, stitch: str = "auto", wait: bool = False) -> PredictionResult:
    """Predict with the folds of one run configuration, or with an ensemble of several (several
    ``configuration`` and/or ``trainer`` values: the mean of their probabilities), and apply a
    post-processing file when given. ``stitch``: where the sliding windows of a 3D case are put
    together on a GPU run: auto (on the GPU unless the volume would take more than half its free
    memory, then on the CPU), device, or cpu. ``wait``: when another process is predicting into
    ``output``, wait for it instead of refusing."""
    from selfconfig.device import pick_device

    roots = roots or Roots.resolve()
    name = resolve_model_dataset(dataset, roots)
    plans = load_model_plans(roots, name, plans_name)
    trainers = [trainer] if isinstance(trainer, str) else list(trainer)
    configs = [configuration] if configuration is None or isinstance(configuration, str) else list(configuration)
    configs = [c or plans.recommended_configuration for c in configs]
    members = ensemble_members(trainers, configs)
    for _, c in members:
        plans.configuration(c)
    pp = load_postprocessing(postprocessing) if postprocessing else None
    if pp is not None:
        known = [t for _, t in LabelScheme.of(plans).evaluation_targets()]
        known = {t if isinstance(t, int) else tuple(t) for t in known}
        unknown = [c for c in pp["largest_component_classes"] if (c if isinstance(c, int) else tuple(c)) not in known]
        if unknown:
            raise ConfigurationError(f"--postprocessing {postprocessing} names label value(s) {unknown} that "
                                     f"{name} does not have ({plans.labels})")
    paths_of = [find_checkpoints(roots, name, tr, plans_name, c, fraction, folds, checkpoint, tag) for tr, c in members]
    dev = pick_device(device)
    predictors = [Predictor.from_checkpoints(p, dev, tta=tta, step_size=step_size, precision=precision,
                                             stitch=stitch)
                  for p in paths_of]
    predictor = predictors[0] if len(predictors) == 1 else EnsemblePredictor(predictors)
    paths = [p for ps in paths_of for p in ps]
    previous = [p for pr in predictors for p in pr.checkpoints if p not in set(paths)]  # cascades' earlier stages
    n_file_channels = len(predictor.plans.channel_names)
    cases = discover_inputs(Path(input_path), n_file_channels)
    check_output_folder(Path(output), cases)
    log.info("predicting %d case(s) with %d model(s) (%s), mirroring %s, %s%s", len(cases), len(paths) + len(previous),
             ", ".join(f"{p.parent.parent.parent.name}/{p.parent.name}" for p in paths + previous), "on" if tta else "off",
             predictor.precision, f", keeping the largest component of {pp['largest_component_classes']}" if pp else "")
    with run_folder_lock(Path(output), wait=wait, what="predict"):  # one process writes into an output folder
        files = predict_files(predictor, cases, Path(output), save_probabilities, progress, postprocessing=pp)
        write_json(Path(output) / "prediction_info.json", {
            "dataset": name, "trainer": trainers[0] if len(trainers) == 1 else trainers,
            "configuration": configs[0] if len(configs) == 1 else configs, "plans": plans_name,
            "members": [{"trainer": t, "configuration": c} for t, c in members],
            "checkpoints": [str(p) for p in paths], "previous_stage_checkpoints": [str(p) for p in previous],
            "tta": tta, "step_size": step_size, "postprocessing": pp, "cases": list(cases)})
    return PredictionResult(Path(output), list(cases), paths, files)
