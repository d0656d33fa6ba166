"""Drive one supervised run: fold k, fraction f, one trainer. Creates, resumes or extends it."""

from __future__ import annotations

import logging
import shutil
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from selfconfig.augment.previous_stage import PreviousStageInput
from selfconfig.checkpoint import load_checkpoint
from selfconfig.data.sampler import PatchSampler
from selfconfig.dataset.labels import LabelScheme
from selfconfig.device import pick_device
from selfconfig.errors import CheckpointError, ConfigurationError
from selfconfig.logs import LogFile
from selfconfig.preprocessing.previous_stage import previous_stage_labels
from selfconfig.training import distributed as dist
from selfconfig.training.builder import (RunSpec, base_meta, case_batches, find_resume_checkpoint, make_sampler,
                                         patch_batches, restore, run_loop, scored_after_final, stream_from)
from selfconfig.training.cascade import (check_cascade_trainer, prepare_previous_stage, previous_stage_sources,
                                         with_previous_stage)
from selfconfig.training.config import TrainingConfig
from selfconfig.training.context import DatasetContext, RunContext
from selfconfig.training.loop import LoopState
from selfconfig.training.modules import SupervisedModule
from selfconfig.training.trainer import Trainer
from selfconfig.utils import read_json, write_json

log = logging.getLogger(__name__)


#: final validation: ``validate(run_dir, data, val_ids, device, tta, progress) -> summary or None``.
#: Supplied by the layer above (the API function, the experiment grid), which may import inference.
Validator = Callable[[Path, DatasetContext, list, torch.device, bool, bool], Optional[dict]]


@dataclass
class RunResult:
    run_dir: Path
    trained: bool  # False when the run was already finished
    history: dict
    validation: dict | None


def run_seed(hp: TrainingConfig, fold: int | str) -> int:
    return int(hp.seed) * 1000 + (zlib.crc32(str(fold).encode()) % 997)


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
              validate: Validator | None = None) -> RunResult:
    """Train (or resume / extend) one run and score its validation fold.

    ``overrides``: hyperparameters set explicitly (CLI flags), applied over the trainer's
    defaults. When resuming, the saved hyperparameters are used and only ``epochs`` may change
    (asking a finished run for more epochs extends it). ``validate`` scores the finished run on
    its validation fold (see :data:`Validator`); without it there is no final validation.
    """
    device = device or pick_device()
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    hp = replace(trainer_cls.default_hyperparameters(device.type), **overrides).check()
    trainer = trainer_cls(hp)
    trainer.check_compatible(data)
    run = dist.writer_first(lambda: RunContext.create(data, trainer.name, fold, fraction, device, progress))
    run_dir = run.run_dir
    existing = find_resume_checkpoint(run_dir)
    if continue_training and existing is None:
        raise CheckpointError(f"--continue: {run_dir} holds no checkpoint to resume from (no checkpoint_latest.pt or "
                              f"checkpoint_final.pt); run again without --continue to start this run from epoch 1")
    # the run's inputs must be there before anything is discarded (--overwrite) or written
    data.case_refs("train", run.train_ids + run.val_ids)
    if data.config.previous_stage:  # cascade: the previous stage's predictions of these cases too
        check_cascade_trainer(trainer, data)
        previous_stage_sources(data, trainer.name, run.fraction, run.train_ids + run.val_ids)
    if existing is not None and not continue_training and not overwrite:
        what = "finished" if existing.name.endswith("final.pt") else "interrupted"
        raise ConfigurationError(
            f"{run_dir} already holds an {what} run ({existing.name}); use --continue to resume or extend it "
            f"(e.g. with more --epochs), or --overwrite to start again")
    dist.barrier()  # every rank has looked at the folder before rank 0 changes it
    if overwrite and run_dir.exists():
        if dist.is_writer():
            shutil.rmtree(run_dir)  # a fresh start: no old log, validation or checkpoints
        existing = None
    dist.barrier()
    run_dir.mkdir(parents=True, exist_ok=True)
    with LogFile(run_dir / "training.log", enabled=dist.is_writer()):
        return _train(trainer, run, hp, existing if continue_training else None, progress, overrides, validate)


def _train(trainer: Trainer, run: RunContext, hp: TrainingConfig, resume_from: Path | None,
           progress: bool, overrides: dict[str, Any], validate: Validator | None) -> RunResult:
    data, device, run_dir = run.data, run.device, run.run_dir
    ckpt = load_checkpoint(resume_from) if resume_from else None
    if ckpt is not None:
        saved_hp = TrainingConfig.from_dict(ckpt["hyperparameters"])
        ignored = sorted(k for k, v in overrides.items() if k != "epochs" and getattr(saved_hp, k, v) != v)
        if ignored:
            log.warning("resuming keeps the run's own %s; start a new run to change them", ", ".join(ignored))
        hp = replace(saved_hp, epochs=int(overrides.get("epochs", saved_hp.epochs)))
        trainer.hp = hp
        if ckpt.get("trainer") != trainer.name:
            raise CheckpointError(f"{resume_from} was written by trainer {ckpt.get('trainer')}, not {trainer.name}")
        saved_cases = read_json(run_dir / "cases.json") if (run_dir / "cases.json").is_file() else None
        if saved_cases and saved_cases["train"] != run.train_ids:
            raise CheckpointError(f"the training cases of {run_dir} changed since the run started; "
                                  f"start a new run with --overwrite")
    cfg = data.config
    batch_size = hp.batch_size or cfg.batch_size
    seed = run_seed(hp, run.fold)
    torch.manual_seed(seed)
    network = trainer.build_network(data)
    init_record: dict[str, Any] = {}
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
        init_record = read_json(run_dir / "initialization.json") if (run_dir / "initialization.json").is_file() else {}
    network = network.to(device)
    if hasattr(network, "deep_supervision"):
        network.deep_supervision = bool(hp.deep_supervision)
    optimizer = trainer.build_optimizer(network, hp)
    train_refs = data.case_refs("train", run.train_ids)
    val_refs = data.case_refs("train", run.val_ids) if run.val_ids else []
    previous_stage = None
    if cfg.previous_stage:
        paths = dist.writer_first(lambda: prepare_previous_stage(data, trainer.name, run.fraction,
                                                                 run.train_ids + run.val_ids))
        train_refs, val_refs = with_previous_stage(train_refs, paths), with_previous_stage(val_refs, paths)
        previous_stage = PreviousStageInput(previous_stage_labels(data.plans), perturb=hp.augment,
                                            seed=dist.rank_seed(seed + 3))
    train_labels = [r.label for r in train_refs] if data.task == "classification" else None
    loss = trainer.build_loss(run, train_labels)
    augmenter = trainer.build_augmenter(data, dist.rank_seed(seed + 1))
    module = SupervisedModule(network, optimizer, loss, data.task, data.plans.num_classes, device,
                              lambda s, t: trainer.learning_rate(s, t, hp), augmenter, hp.precision, hp.grad_clip,
                              label_scheme=LabelScheme.of(data.plans) if data.task == "segmentation" else None,
                              previous_stage=previous_stage)
    state = LoopState(epochs=hp.epochs, iters_per_epoch=hp.iters_per_epoch,
                      max_seconds=hp.max_minutes * 60 if hp.max_minutes else None,
                      fit_to_time=hp.fit_schedule_to_minutes)
    if ckpt is not None:
        state = restore(module, ckpt)
        dist.reseed_rank_streams(module, seed, state.global_step)
        if state.time_limited and "epochs" not in overrides:
            pass  # finished by its wall-clock budget: nothing to extend unless more epochs are asked for
        elif hp.epochs != state.epochs:
            log.info("extending the run from %d to %d epochs", state.epochs, hp.epochs)
            state.epochs = hp.epochs
            state.finished = False
            state.time_limited, state.planned_steps, state.max_seconds = False, None, None
        log.info("resuming %s at epoch %d, step %d", resume_from.name, state.epoch + 1, state.step_in_epoch)

    # spatial augmentation samples the patch from a larger crop, so that it never pads with background
    crop = augmenter.input_patch_size() if augmenter is not None and getattr(augmenter, "patch_size", None) else None
    sampler = make_sampler(train_refs, cfg, batch_size, data.task, seed, crop=crop,
                           oversample=cfg.foreground_oversampling)
    val_batches = None
    if val_refs:
        if data.task == "segmentation":
            val_sampler = PatchSampler(val_refs, cfg.patch_size, batch_size, data.task,
                                       oversample=cfg.foreground_oversampling, seed=seed + 7)
            val_batches = patch_batches(val_sampler, hp.val_iters)
        else:
            val_batches = case_batches(val_refs, cfg.patch_size, batch_size, data.task)

    spec = RunSpec(run_dir, trainer.name, f"{data.dataset} {trainer.name} {data.configuration} "
                                          f"frac {run.fraction:g} fold {run.fold}",
                   lambda: checkpoint_meta(trainer, run, hp, {"initialization": init_record}), hp,
                   extra_callbacks=trainer.extra_callbacks(run))
    trained = not (ckpt is not None and state.epoch >= state.epochs and state.finished)
    log.info("training %s on %s/%s: %d case(s), patch %s, batch %d, %d x %d iterations, device %s (%s)",
             trainer.name, data.dataset, data.configuration, len(train_refs), cfg.patch_size, batch_size,
             state.epochs, state.iters_per_epoch, device, module.precision)
    if trained:
        run_loop(spec, module, state, stream_from(sampler, hp, device), val_batches, progress)
    validation = None
    if not trained and scored_after_final(run_dir, "validation/summary.json"):
        validation = read_json(run_dir / "validation" / "summary.json")  # already scored with this checkpoint
    elif hp.final_validation and run.val_ids and validate is not None and dist.is_writer():
        validation = validate(run_dir, data, run.val_ids, device, hp.tta, progress)
    return RunResult(run_dir, trained, state.history, validation)
