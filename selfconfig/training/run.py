"""Drive one supervised run: fold k, fraction f, one trainer. Creates, resumes or extends it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from selfconfig.augment.previous_stage import PreviousStageInput
from selfconfig.checkpoint import load_checkpoint
from selfconfig.dataset.labels import LabelScheme
from selfconfig.errors import CheckpointError, ConfigurationError
from selfconfig.evaluation.html_report import write_run_report
from selfconfig.preprocessing.previous_stage import previous_stage_labels
from selfconfig.training import distributed as dist
from selfconfig.locking import clear_locked_folder
from selfconfig.training.builder import (RunSpec, Settings, base_meta, batch_size, find_resume_checkpoint,
                                         loop_state, no_checkpoint_message, owned_folder, resolve_settings,
                                         resumed_hyperparameters, run_folder, run_loop, scored_after_final,
                                         seed_run, started_without_checkpoint, training_batches,
                                         validation_batches)
from selfconfig.training.cascade import (check_cascade_trainer, prepare_previous_stage, previous_stage_sources,
                                         with_previous_stage)
from selfconfig.training.config import TrainingConfig
from selfconfig.training.context import DatasetContext, RunContext
from selfconfig.training.convergence import ConvergenceRule, Score
from selfconfig.training.loop import LoopState
from selfconfig.training.modules import SupervisedModule
from selfconfig.training.trainer import Trainer
from selfconfig.utils import read_json, write_json

log = logging.getLogger(__name__)


#: final validation: ``validate(run_dir, data, val_ids, device, tta, progress) -> summary or None``.
#: Supplied by the layer above (the API function, the experiment grid), which may import inference.
Validator = Callable[[Path, DatasetContext, list, torch.device, bool, bool], Optional[dict]]

#: whole-scan scoring for ``--until-converged``: ``make(data, val_refs, device, precision) -> score(network)``,
#: ``val_refs`` the validation cases as the run's validation batches read them (a cascade's with their
#: previous-stage label maps). Supplied by the layer above too
#: (:func:`selfconfig.inference.whole_scan.whole_scan_scorer`).
ScorerFactory = Callable[[DatasetContext, list, torch.device, str], Callable[[torch.nn.Module], float]]


@dataclass
class RunResult:
    run_dir: Path
    trained: bool  # False when the run was already finished
    history: dict
    validation: dict | None


def checkpoint_meta(trainer: Trainer, run: RunContext, hp: TrainingConfig, extra: dict | None = None) -> dict:
    return {
        "trainer": trainer.name,
        "trainer_class": f"{type(trainer).__module__}:{type(trainer).__qualname__}",
        **base_meta(run.data, hp),
        "fold": str(run.fold),
        "fraction": run.fraction,
        **(extra or {}),
    }


def train_run(trainer_cls: type[Trainer], data: DatasetContext, fold: int | str = 0, fraction: float = 1.0,
              overrides: dict[str, Any] | None = None, continue_training: bool = False, overwrite: bool = False,
              device: torch.device | None = None, progress: bool = True,
              validate: Validator | None = None, wait: bool = False,
              scorer: ScorerFactory | None = None) -> RunResult:
    """Train (or resume / extend) one run and score its validation fold.

    ``overrides``: hyperparameters set explicitly (CLI flags), applied over the trainer's
    defaults. When resuming, the saved hyperparameters are used and only ``epochs`` may change
    (asking a finished run for more epochs extends it). ``validate`` scores the finished run on
    its validation fold (see :data:`Validator`); without it there is no final validation. The run
    owns its folder from the first look at it to the end; another process's run in the same
    folder is refused in one line, or waited for (``wait``). ``continue_training`` where the folder
    holds no checkpoint (a run killed before its first one) starts a new run, with a warning, as
    nnU-Net's ``--c`` does. ``scorer``: the whole-scan scoring a run trained until converged
    (``until_converged``) is judged by (see :data:`ScorerFactory`).
    """
    settings = resolve_settings(trainer_cls, overrides, device)
    trainer = trainer_cls(settings.hp)
    trainer.check_compatible(data)
    run = dist.writer_first(lambda: RunContext.create(data, trainer.name, fold, fraction, settings.device, progress))
    _check_convergence(settings.hp, run, scorer)
    with owned_folder(run.run_dir, wait=wait, what="train"):
        existing = _check_request(trainer, run, continue_training, overwrite)
        fresh_start = existing is None and not overwrite and (
            continue_training or started_without_checkpoint(run.run_dir))
        if overwrite:
            _discard(run.run_dir)
            existing = None
        previous_stage = None
        if data.config.previous_stage:  # cascade: its inputs are preprocessed before the run starts
            previous_stage = dist.writer_first(lambda: prepare_previous_stage(data, trainer.name, run.fraction,
                                                                              run.train_ids + run.val_ids))
        with run_folder(run.run_dir, "training.log"):
            if fresh_start:
                log.warning(no_checkpoint_message(run.run_dir, "run", continue_training))
            return _train(trainer, run, settings, existing if continue_training else None, previous_stage, validate,
                          scorer)


def _check_convergence(hp: TrainingConfig, run: RunContext, scorer: ScorerFactory | None) -> None:
    """A run trained until converged needs validation cases and a way to score them whole."""
    if not hp.until_converged:
        return
    if not run.val_ids:
        raise ConfigurationError(f"--until-converged needs validation cases to score, and fold {run.fold} has none; "
                                 f"train a fold 0-4 or drop --until-converged")
    if scorer is None:
        raise ConfigurationError("--until-converged needs a whole-scan scorer (train_run(..., scorer=...)); "
                                 "selfconfig.training.api.train supplies one")


def _check_request(trainer: Trainer, run: RunContext, continue_training: bool, overwrite: bool) -> Path | None:
    """Refuse a request that cannot run, before anything is discarded or written; the checkpoint
    the run folder holds (None: a new run)."""
    run_dir, data = run.run_dir, run.data
    existing = find_resume_checkpoint(run_dir)
    data.case_refs("train", run.train_ids + run.val_ids)  # the run's inputs must be there
    if data.config.previous_stage:  # cascade: the previous stage's predictions of these cases too
        check_cascade_trainer(trainer, data)
        previous_stage_sources(data, trainer.name, run.fraction, run.train_ids + run.val_ids)
    if existing is not None and not continue_training and not overwrite:
        what = "finished" if existing.name.endswith("final.pt") else "interrupted"
        raise ConfigurationError(
            f"{run_dir} already holds an {what} run ({existing.name}); use --continue to resume or extend it "
            f"(e.g. with more --epochs), or --overwrite to start again")
    return existing


def _discard(run_dir: Path) -> None:
    """--overwrite: a fresh start, no old log, validation or checkpoints (after every rank looked)."""
    dist.barrier()
    if run_dir.exists() and dist.is_writer():
        clear_locked_folder(run_dir)  # all but the lock this run holds
    dist.barrier()


def _train(trainer: Trainer, run: RunContext, settings: Settings, resume_from: Path | None,
           previous_stage: dict[str, str] | None, validate: Validator | None,
           scorer: ScorerFactory | None) -> RunResult:
    data, device, cfg = run.data, run.device, run.data.config
    ckpt, hp = _resume(trainer, run, settings, resume_from)
    seed = seed_run(hp, run.fold)
    network, init_record = _network(trainer, run, hp, ckpt)
    train_refs, val_refs, previous_input = _inputs(run, hp, seed, previous_stage)
    module = _module(trainer, run, hp, network, train_refs, previous_input, seed)
    state = loop_state(module, hp, ckpt, seed)
    if ckpt is not None:
        _extend(state, hp, settings.overrides)
        log.info("resuming %s at epoch %d, step %d", resume_from.name, state.epoch + 1, state.step_in_epoch)
    # spatial augmentation samples the patch from a larger crop, so that it never pads with background
    augmenter = module.augmenter
    crop = augmenter.input_patch_size() if augmenter is not None and getattr(augmenter, "patch_size", None) else None
    rule = ConvergenceRule.of(hp, pretext=False, metric=f"whole-scan {module.monitor}")
    spec = RunSpec(run.run_dir, trainer.name, f"{data.dataset} {trainer.name} {data.configuration} "
                                              f"frac {run.fraction:g} fold {run.fold}",
                   lambda: checkpoint_meta(trainer, run, hp, {"initialization": init_record}), hp,
                   extra_callbacks=trainer.extra_callbacks(run), convergence=rule,
                   score=_whole_scan_score(run, module, val_refs, scorer) if rule else None)
    trained = not (ckpt is not None and state.epoch >= state.epochs and state.finished)
    log.info("training %s on %s/%s: %d case(s), patch %s, batch %d, %d x %d iterations, device %s (%s)",
             trainer.name, data.dataset, data.configuration, len(train_refs), cfg.patch_size, batch_size(hp, cfg),
             state.epochs, state.iters_per_epoch, device, module.precision)
    if trained:
        run_loop(spec, module, state,
                 training_batches(train_refs, data, hp, seed, device, crop=crop, oversample=cfg.foreground_oversampling),
                 validation_batches(val_refs, data, hp, seed + 7, oversample=cfg.foreground_oversampling),
                 run.progress)
    result = RunResult(run.run_dir, trained, state.history, _final_validation(run, hp, trained, validate))
    if dist.is_writer():
        write_run_report(run.run_dir)
    return result


def _whole_scan_score(run: RunContext, module: SupervisedModule, val_refs: list, scorer: ScorerFactory) -> Score:
    """The score of a run trained until converged: its validation cases predicted whole (a
    cascade's with their previous stage's segmentation as input, as in its validation batches)."""
    score = scorer(run.data, val_refs, run.device, module.precision)
    return lambda mod, state, logs: score(mod.network)


def _resume(trainer: Trainer, run: RunContext, settings: Settings,
            resume_from: Path | None) -> tuple[dict | None, TrainingConfig]:
    """The checkpoint to resume from and the run's hyperparameters: its own, with the new epochs."""
    if resume_from is None:
        return None, settings.hp
    ckpt = load_checkpoint(resume_from)
    hp = resumed_hyperparameters(ckpt, settings.overrides, changeable=("epochs",))
    trainer.hp = hp
    if ckpt.get("trainer") != trainer.name:
        raise CheckpointError(f"{resume_from} was written by trainer {ckpt.get('trainer')}, not {trainer.name}")
    cases = run.run_dir / "cases.json"
    saved_cases = read_json(cases) if cases.is_file() else None
    if saved_cases and saved_cases["train"] != run.train_ids:
        raise CheckpointError(f"the training cases of {run.run_dir} changed since the run started; "
                              f"start a new run with --overwrite")
    return ckpt, hp


def _network(trainer: Trainer, run: RunContext, hp: TrainingConfig,
             ckpt: dict | None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network, initialised by the trainer (a new run, whose start is recorded in the run
    folder) or to be restored from the checkpoint, and the record of its initialisation."""
    run_dir, data = run.run_dir, run.data
    network = trainer.build_network(data)
    if ckpt is None:
        init_record = trainer.initialize_weights(network, run) or {}
        if dist.is_writer():
            write_json(run_dir / "cases.json", {"fold": str(run.fold), "fraction": run.fraction,
                                                "train": run.train_ids, "val": run.val_ids})
            write_json(run_dir / "hyperparameters.json", hp.to_dict())
            write_json(run_dir / "initialization.json", init_record)
            data.plans.save(run_dir / "plans.json")
    else:
        if dist.is_writer():
            write_json(run_dir / "hyperparameters.json", hp.to_dict())  # an extended run records its new epochs
        init = run_dir / "initialization.json"
        init_record = read_json(init) if init.is_file() else {}
    network = network.to(run.device)
    if hasattr(network, "deep_supervision"):
        network.deep_supervision = bool(hp.deep_supervision)
    return network, init_record


def _inputs(run: RunContext, hp: TrainingConfig, seed: int,
            paths: dict[str, str] | None) -> tuple[list, list, PreviousStageInput | None]:
    """The training and validation cases; for a cascade, with their previous-stage segmentations
    (``paths``: the preprocessed arrays, case id -> ``.npy``)."""
    data = run.data
    train_refs = data.case_refs("train", run.train_ids)
    val_refs = data.case_refs("train", run.val_ids) if run.val_ids else []
    if paths is None:
        return train_refs, val_refs, None
    previous_stage = PreviousStageInput(previous_stage_labels(data.plans), perturb=hp.augment,
                                        seed=dist.rank_seed(seed + 3))
    return with_previous_stage(train_refs, paths), with_previous_stage(val_refs, paths), previous_stage


def _module(trainer: Trainer, run: RunContext, hp: TrainingConfig, network: torch.nn.Module, train_refs: list,
            previous_stage: PreviousStageInput | None, seed: int) -> SupervisedModule:
    """The loop module: network, optimiser, loss, learning-rate schedule and augmentation."""
    data = run.data
    optimizer = trainer.build_optimizer(network, hp)
    train_labels = [r.label for r in train_refs] if data.task == "classification" else None
    loss = trainer.build_loss(run, train_labels)
    augmenter = trainer.build_augmenter(data, dist.rank_seed(seed + 1))
    return SupervisedModule(network, optimizer, loss, data.task, data.plans.num_classes, run.device,
                            lambda s, t: trainer.learning_rate(s, t, hp), augmenter, hp.precision, hp.grad_clip,
                            label_scheme=LabelScheme.of(data.plans) if data.task == "segmentation" else None,
                            previous_stage=previous_stage)


def _extend(state: LoopState, hp: TrainingConfig, overrides: dict[str, Any]) -> None:
    """A resumed run asked for other epochs goes on to them; one that its wall-clock budget ended,
    stays finished unless epochs are asked for; one that converged, unless a larger cap than its own
    is asked for (it then looks for its next plateau)."""
    converged = state.stop_step is not None and state.finished
    if state.time_limited and "epochs" not in overrides:
        return
    if converged and hp.epochs <= state.converge.get("cap_epochs", hp.epochs):
        return  # only a larger cap than the run had goes on (a grid asks again for its own cap)
    if hp.epochs != state.epochs:
        log.info("extending the run from %d to %d epochs", state.epochs, hp.epochs)
        state.epochs = hp.epochs
        state.finished = False
        state.time_limited, state.planned_steps, state.max_seconds = False, None, None
        if converged:
            state.tail_start = state.stop_step = None
            state.converge.update(since=0, stop_reason=None, next_epoch=state.epoch + 1, cap_epochs=hp.epochs)


def _final_validation(run: RunContext, hp: TrainingConfig, trained: bool, validate: Validator | None) -> dict | None:
    """The validation fold's scores: kept when the finished run was already scored with its
    checkpoint, else from ``validate`` (rank 0 only)."""
    run_dir = run.run_dir
    if not trained and scored_after_final(run_dir, "validation/summary.json"):
        return read_json(run_dir / "validation" / "summary.json")
    if hp.final_validation and run.val_ids and validate is not None and dist.is_writer():
        return validate(run_dir, run.data, run.val_ids, run.device, hp.tta, run.progress)
    return None
