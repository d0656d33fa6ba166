"""Training a cascade configuration (nnU-Net's ``3d_cascade_fullres``): where each training case's
previous-stage segmentation comes from, and its copy on the preprocessed grid.

As nnU-Net, every case gets the segmentation of the previous stage's *cross-validation*: the
prediction of the ``3d_lowres`` fold that validated the case, so never of a model that trained on
it. Here those are the final validation's predictions in the previous stage's run folders
(``results/NAME/<Trainer>__<plans>__3d_lowres/frac_<f>/fold_<k>/validation/CASE.<ending>``), of the
same trainer, label fraction and run tag. They are written in each scan's own geometry; before
the run starts, a preprocessing step
(:func:`selfconfig.preprocessing.previous_stage.preprocess_previous_stage`) brings them onto the
cascade's preprocessed grid once (crop box, label resampling) and keeps them beside the folds, in
``.../frac_<f>/predicted_next_stage/<cascade configuration>/CASE.npy`` (nnU-Net's folder name),
redone when the prediction or the preprocessing changes. This module only finds them: the
training run reads preprocessed arrays only.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from selfconfig.data.sampler import CaseRef
from selfconfig.dataset.geometry import Geometry
from selfconfig.dataset.io import output_ending_for
from selfconfig.errors import IncompatibleDatasetError, PreviousStageError
from selfconfig.locking import run_folder_lock
from selfconfig.paths import train_command_line
from selfconfig.preprocessing import storage
from selfconfig.preprocessing.previous_stage import preprocess_previous_stage

log = logging.getLogger(__name__)

NEXT_STAGE_FOLDER = "predicted_next_stage"


def train_command(data, configuration: str, trainer: str, fraction: float, folds: list) -> str:
    """The ``selfconfig_train`` command line that trains ``configuration`` for ``folds``."""
    fold = str(folds[0]) if len(folds) == 1 else "F"
    return train_command_line(data.dataset, configuration, trainer, fraction, fold, data.plans.plans_name, data.tag)


def check_cascade_trainer(trainer, data) -> None:
    """Strategies that pre-train on the unlabeled pool cannot train a cascade: unlabeled scans have no
    previous-stage segmentation to feed the network's extra channels."""
    if data.config.previous_stage and getattr(trainer, "uses_pretraining", False):
        raise IncompatibleDatasetError(
            f"{trainer.name} pre-trains on unlabeled scans, which have no {data.config.previous_stage} "
            f"segmentation for the extra input channels of {data.configuration}; train it with Scratch "
            f"(or another trainer without pre-training)")


def previous_stage_sources(data, trainer: str, fraction: float, case_ids: list[str]) -> dict[str, Path]:
    """Each case's previous-stage prediction: the final validation of the previous stage's fold that
    validated the case (same trainer, fraction and tag). Raises :class:`PreviousStageError`, one line
    naming the command that makes them, when any is missing or older than its fold's checkpoint."""
    previous = data.config.previous_stage
    data.plans.configuration(previous)  # a previous stage the plans do not have: the usual error
    prev_data = replace(data, configuration=previous)
    fold_of = {c: k for k, s in enumerate(data.splits()) for c in s["val"]}
    folder = data.split_folder("train")
    sources: dict[str, Path] = {}
    missing: dict[int, list[str]] = {}
    unsplit = [c for c in case_ids if c not in fold_of]
    if unsplit:
        raise PreviousStageError(
            f"{len(unsplit)} training case(s) (e.g. {unsplit[0]}) are in no fold of "
            f"{data.preprocessed_dir / 'splits.json'}, so no {previous} fold predicted them; delete the file to "
            f"re-split and train {previous} again")
    for c in case_ids:
        k = fold_of[c]
        run = prev_data.run_dir(trainer, fraction, k)
        ending = output_ending_for(Geometry.from_dict(storage.load_properties(folder, c)["geometry"]))
        pred, final = run / "validation" / f"{c}{ending}", run / "checkpoint_final.pt"
        if pred.is_file() and final.is_file() and pred.stat().st_mtime >= final.stat().st_mtime:
            sources[c] = pred
        else:
            missing.setdefault(k, []).append(c)
    if missing:
        folds = sorted(missing)
        n = sum(len(v) for v in missing.values())
        example = missing[folds[0]][0]
        where = prev_data.run_dir(trainer, fraction, folds[0]).parent
        raise PreviousStageError(
            f"{data.configuration} trains on the {previous} cross-validation predictions of its cases, and "
            f"{n} are missing (e.g. {example}, from fold {folds[0]} in {where}): run "
            f"`{train_command(data, previous, trainer, fraction, folds)}` for fold(s) "
            f"{', '.join(str(f) for f in folds)} first (its final validation writes them; add --continue "
            f"for a finished fold whose validation is missing or older than its checkpoint)")
    return sources


def next_stage_folder(data, trainer: str, fraction: float) -> Path:
    """Where the previous stage's predictions lie on this configuration's preprocessed grid."""
    prev_data = replace(data, configuration=data.config.previous_stage)
    return prev_data.run_dir(trainer, fraction, 0).parent / NEXT_STAGE_FOLDER / data.configuration


def prepare_previous_stage(data, trainer: str, fraction: float, case_ids: list[str]) -> dict[str, str]:
    """The previous stage's label map of each case on the preprocessed grid (``.npy`` paths): the
    preprocessing step over :func:`previous_stage_sources`, run before training starts."""
    sources = previous_stage_sources(data, trainer, fraction, case_ids)
    out_dir = next_stage_folder(data, trainer, fraction)
    with run_folder_lock(out_dir, wait=True, what="write previous-stage labels"):  # folds training at once share it
        return preprocess_previous_stage(sources, data.split_folder("train"), out_dir, data.plans, data.config)


def with_previous_stage(refs: list[CaseRef], paths: dict[str, str]) -> list[CaseRef]:
    return [replace(r, previous_stage=paths[r.case_id]) for r in refs]
