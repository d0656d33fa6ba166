"""Pre-training: run a pretext task on the unlabeled pool and write its checkpoint.

The pool follows the paper: D^u = every training case with its label removed, plus imagesUn;
test cases never enter it. One checkpoint per dataset / plans / configuration / strategy,
``results/NAME/pretrain/<Strategy>__<plans>__<config>/checkpoint.pt``, serves every fold and
fraction. A file lock makes sure that two trainings started together do not both pre-train:
the second waits and then uses the first one's checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from selfconfig.checkpoint import load_checkpoint, save_checkpoint
from selfconfig.data.sampler import CaseRef
from selfconfig.errors import CheckpointError, ConfigurationError
from selfconfig.evaluation.html_report import write_pretrain_report
from selfconfig.pretext.base import ClassificationPretext
from selfconfig.training import distributed as dist
from selfconfig.training.builder import (RunSpec, base_meta, batch_size, find_resume_checkpoint, loop_state,
                                         no_checkpoint_message, owned_folder, resumed_hyperparameters, run_folder,
                                         run_loop, seed_run, started_without_checkpoint, training_batches,
                                         validation_batches)
from selfconfig.training.callbacks import CheckpointCallback
from selfconfig.training.config import TrainingConfig
from selfconfig.training.context import DatasetContext
from selfconfig.training.convergence import ConvergenceRule
from selfconfig.training.loop import LoopState
from selfconfig.utils import read_json, write_json

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
POOL_VALIDATION_FRACTION = 0.1


def unlabeled_pool(data: DatasetContext) -> list[CaseRef]:
    """D^u: training cases without labels + imagesUn (never imagesTs)."""
    refs = [CaseRef(r.folder, r.case_id, None) for r in data.case_refs("train")]
    refs += [CaseRef(r.folder, r.case_id, None) for r in data.case_refs("unlabeled")]
    if not refs:
        raise ConfigurationError(f"{data.dataset} has no preprocessed training or unlabeled cases to pre-train on")
    return refs


def split_pool(refs: list[CaseRef], seed: int = 0) -> tuple[list[CaseRef], list[CaseRef]]:
    """A fixed ~10 % of the pool (at least one case) monitors the pretext task."""
    if len(refs) < 2:
        return refs, refs
    order = np.random.default_rng(seed).permutation(len(refs))
    n_val = max(1, int(round(POOL_VALIDATION_FRACTION * len(refs))))
    val = [refs[i] for i in sorted(order[:n_val])]
    train = [refs[i] for i in sorted(order[n_val:])]
    return train, val


@dataclass
class PretrainResult:
    checkpoint: Path
    trained: bool
    history: dict
    summary: dict = field(default_factory=dict)  # held-out pretext accuracy (pretrain_summary.json)


def pretrain(strategy_cls, data: DatasetContext, hp: TrainingConfig, device: torch.device,
             progress: bool = True, continue_training: bool = True, overwrite: bool = False,
             wait: bool = True) -> PretrainResult:
    """Pre-train ``strategy_cls.pretext_task`` on the pool unless its checkpoint exists.

    Owns the pre-training folder for the whole run (:func:`owned_folder`): with ``wait`` (what a
    training that needs the checkpoint does) a second caller waits for the first one's
    pre-training and then uses it; without, it is refused in one line naming the first. An
    interrupted pre-training is resumed (``continue_training``); one killed before its first
    checkpoint starts anew, with a warning.
    """
    hp.check()
    strategy_cls.pretext_task.check_compatible(data)  # a bad request writes nothing, discards nothing
    unlabeled_pool(data)
    out_dir = data.pretrain_dir(strategy_cls.name)
    final = out_dir / CHECKPOINT_NAME
    wanted = pretrain_settings(strategy_cls, data, hp)
    # under distributed training rank 0 holds the folder and decides; the other ranks follow it
    with owned_folder(out_dir, wait=wait, what="pre-train"):
        if dist.broadcast_object(final.is_file() and not overwrite):
            check_settings(out_dir, recorded_settings(out_dir, final), wanted)
            log.info("using pre-trained checkpoint %s", final)
            summary = read_json(out_dir / SUMMARY_NAME) if (out_dir / SUMMARY_NAME).is_file() else {}
            _log_summary(strategy_cls.name, summary)
            return PretrainResult(final, False, {}, summary)
        if overwrite:  # the request was checked above: only now is the old pre-training discarded
            if dist.is_writer():
                for p in out_dir.glob("checkpoint*.pt"):
                    p.unlink()
                (out_dir / SUMMARY_NAME).unlink(missing_ok=True)
        elif (out_dir / "checkpoint_latest.pt").is_file() and continue_training:
            check_settings(out_dir, recorded_settings(out_dir, None), wanted)
        fresh_start = not overwrite and continue_training and started_without_checkpoint(out_dir, ("latest",))
        if dist.is_writer():
            write_json(out_dir / SETTINGS_NAME, wanted)
        dist.barrier()
        with run_folder(out_dir, "pretraining.log"):
            if fresh_start:  # killed before its first checkpoint: nothing to resume
                log.warning(no_checkpoint_message(out_dir, "pre-training", False, ("latest",)))
            return _pretrain(strategy_cls, data, hp, device, out_dir, progress, continue_training)


#: the settings that change a pre-training's result; another value of any of them is another pre-training
SETTINGS_NAME = "settings.json"
SUMMARY_NAME = "pretrain_summary.json"


def pretrain_settings(strategy_cls, data: DatasetContext, hp: TrainingConfig) -> dict:
    """What a pre-training's result depends on (its cache key): task, plans, configuration and patch,
    learning rate (and warm-up), optimizer, batch, augmentation, seed, epochs, iterations, time budget, precision."""
    task_cls = strategy_cls.pretext_task
    cfg = data.config
    return {"pretext_task": f"{task_cls.__module__}:{task_cls.__qualname__}", "plans": data.plans.plans_name,
            "configuration": data.configuration, "patch_size": list(cfg.patch_size),
            "lr": hp.pretrain_lr or task_cls.default_lr or hp.lr, "optimizer": hp.optimizer,
            "weight_decay": hp.weight_decay, "batch_size": batch_size(hp, cfg), "augment": hp.augment,
            "seed": hp.seed, "epochs": hp.pretrain_epochs, "iters_per_epoch": hp.pretrain_iters_per_epoch,
            "max_minutes": hp.pretrain_max_minutes, "precision": hp.precision,
            # the classification pretexts warm up like fine-tuning (ClassificationPretext.learning_rate)
            **({"warmup_fraction": hp.warmup_fraction} if issubclass(task_cls, ClassificationPretext) else {}),
            **({} if hp.fit_schedule_to_minutes else {"minutes_are_a_cap": True}),
            **({"until_converged": {"patience": hp.converge_patience, "margin": hp.converge_margin,
                                    "tail": hp.converge_tail, "interval": hp.converge_interval,
                                    # recorded when not the default, so that folders from before it existed
                                    # (whose plateaus all passed the check) stay reusable
                                    **({} if hp.converge_signal == TrainingConfig.converge_signal
                                       else {"signal": hp.converge_signal})}}
               if hp.pretrain_until_converged else {}),
            **({"formulation": task_cls.formulation} if task_cls.formulation else {})}


#: settings a folder must have recorded to be reused when they are asked for (a folder made before
#: its task had a ``formulation`` was made by the older formulation)
REQUIRED_SETTINGS = ("formulation",)


def recorded_settings(out_dir: Path, checkpoint: Path | None) -> dict:
    """The settings a pre-training folder was made with (``settings.json``; a folder from before it
    existed: what its checkpoint's hyperparameters say)."""
    if (out_dir / SETTINGS_NAME).is_file():
        return read_json(out_dir / SETTINGS_NAME)
    if checkpoint is None or not checkpoint.is_file():
        return {}
    hp = load_checkpoint(checkpoint).get("hyperparameters") or {}
    return {"epochs": hp.get("pretrain_epochs"), "iters_per_epoch": hp.get("pretrain_iters_per_epoch"),
            "seed": hp.get("seed"), "augment": hp.get("augment"), "optimizer": hp.get("optimizer")}


def check_existing_pretraining(strategy_cls, data: DatasetContext, hp: TrainingConfig) -> None:
    """Refuse, before anything runs, a finished pre-training of ``strategy_cls`` made with other settings."""
    out_dir = data.pretrain_dir(strategy_cls.name)
    final = out_dir / CHECKPOINT_NAME
    if final.is_file():
        check_settings(out_dir, recorded_settings(out_dir, final), pretrain_settings(strategy_cls, data, hp))


def check_settings(out_dir: Path, recorded: dict, wanted: dict) -> None:
    """Refuse to reuse (or resume) a pre-training made with other settings, naming each difference."""
    diff = [f"{k} {recorded[k]!r} (asked: {wanted[k]!r})" for k in wanted
            if k in recorded and recorded[k] is not None and recorded[k] != wanted[k]]
    if recorded:
        diff += [f"{k} not recorded, an older version (asked: {wanted[k]!r})" for k in REQUIRED_SETTINGS
                 if k in wanted and recorded.get(k) is None]
    if diff:
        raise ConfigurationError(
            f"{out_dir} holds a pre-training made with other settings: {'; '.join(diff)}. Pass --overwrite to "
            f"pre-train again with the new settings, or a --tag to keep both")


def _log_summary(strategy: str, summary: dict) -> None:
    from selfconfig.pretext.base import describe_held_out, pretraining_warning

    line = describe_held_out(summary)
    if not line:
        return
    log.info("%s pre-training: %s", strategy, line)
    problem = pretraining_warning(summary)
    if problem:
        log.warning("%s pre-training %s (%s): its weights learned little of the pretext task", strategy, *problem)


def _pretrain(strategy_cls, data, hp, device, out_dir: Path, progress: bool, continue_training: bool) -> PretrainResult:
    task_cls = strategy_cls.pretext_task
    latest = find_resume_checkpoint(out_dir, ("latest",)) if continue_training else None  # an interrupted one
    ckpt = load_checkpoint(latest) if latest is not None else None
    if ckpt is not None:
        hp = resumed_hyperparameters(ckpt, {})  # its settings were checked against the request
    seed = seed_run(hp)
    task = task_cls(data, hp, device, seed=dist.rank_seed(seed))  # the task's own random stream, per rank
    pool = unlabeled_pool(data)
    train_refs, val_refs = split_pool(pool, seed)
    state = loop_state(task, hp, ckpt, seed, pretext=True)
    if ckpt is not None:
        log.info("resuming pre-training at epoch %d", state.epoch + 1)
    if dist.is_writer():
        write_json(out_dir / "pool.json", {"train": [r.case_id for r in train_refs],
                                           "val": [r.case_id for r in val_refs],
                                           "note": "D^u = training cases without labels + imagesUn; no test case"})
    meta = lambda: {"kind": "pretrain", "strategy": strategy_cls.name,  # noqa: E731
                    "pretext_task": f"{task_cls.__module__}:{task_cls.__qualname__}",
                    **base_meta(data, hp), "pool_size": len(pool)}
    rule = ConvergenceRule.of(hp, pretext=True, metric=f"held-out {task.monitor}")
    spec = RunSpec(out_dir, f"pretrain {strategy_cls.name}",
                   f"{data.dataset} pre-training {strategy_cls.name} ({task_cls.name}) {data.configuration}", meta, hp,
                   checkpoint=_exporter(out_dir, meta, strategy_cls), desc=f"pretrain {task_cls.name}",
                   convergence=rule, score=(lambda module, st, logs: logs.get(module.monitor)) if rule else None)
    log.info("pre-training %s (%s) on %d unlabeled case(s) of %s/%s (%d held out), patch %s, batch %d, %d x %d "
             "iterations, %s", strategy_cls.name, task_cls.name, len(train_refs), data.dataset, data.configuration,
             len(val_refs), data.config.patch_size, batch_size(hp, data.config), state.epochs, state.iters_per_epoch,
             task.precision)
    run_loop(spec, task, state,
             training_batches(train_refs, data, hp, seed, device, crop=task.input_patch_size(), oversample=0.0,
                              with_labels=False),
             validation_batches(val_refs, data, hp, seed + 1, oversample=0.0, with_labels=False), progress)
    if not (out_dir / CHECKPOINT_NAME).is_file():  # never report a checkpoint that was not written
        raise CheckpointError(f"pre-training of {strategy_cls.name} ended without writing {out_dir / CHECKPOINT_NAME} "
                              f"({state.epoch} of {state.epochs} epochs)")
    summary = _summary(strategy_cls, task, state)  # written by the exporter, before checkpoint.pt
    if dist.is_writer():
        write_pretrain_report(out_dir, SUMMARY_NAME)
    _log_summary(strategy_cls.name, summary)
    return PretrainResult(out_dir / CHECKPOINT_NAME, True, state.history, summary)


def _exporter(out_dir: Path, meta, strategy_cls) -> type[CheckpointCallback]:
    """The pre-training's checkpoint callback: it also writes ``checkpoint.pt`` at the end, the
    transferable weights, what a fine-tuning run loads. ``pretrain_summary.json`` is written
    before it, so that a pre-training killed at any moment never leaves a ``checkpoint.pt``
    (which a rerun takes as finished) without its summary."""

    class _Export(CheckpointCallback):
        def on_fit_end(self, module, st):
            super().on_fit_end(module, st)
            if dist.is_writer():
                write_json(out_dir / SUMMARY_NAME, _summary(strategy_cls, module, st))
            payload = {**meta(), "loop": st.to_dict(),
                       "pretrained": {"state_dict": module.transferable_state(),
                                      "groups": {t: list(module.transfer_groups(t))
                                                 for t in ("segmentation", "classification")}}}
            save_checkpoint(out_dir / CHECKPOINT_NAME, payload)

    return _Export


def _summary(strategy_cls, task, state: LoopState) -> dict:
    """What ``pretrain_summary.json`` says: the held-out pretext accuracy against chance, and the run's length."""
    from selfconfig.pretext.base import pretext_summary
    from selfconfig.training.convergence import summary as convergence_summary

    return {"strategy": strategy_cls.name, "pretext_task": strategy_cls.pretext_task.name,
            **pretext_summary(state.history, task.chance_level, accuracy_name=task.accuracy_name,
                              held_out_error=task.held_out_error),
            "iterations": state.global_step, "epochs": state.epoch, "minutes": round(state.elapsed_seconds / 60, 2),
            "time_limited": state.time_limited,
            **({"convergence": convergence_summary(state)} if state.converge is not None else {})}


def load_pretrained(path: Path) -> dict:
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != "pretrain" or "pretrained" not in ckpt:
        raise CheckpointError(f"{path} is not a selfconfig pre-training checkpoint")
    return ckpt
