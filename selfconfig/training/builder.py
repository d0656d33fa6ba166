"""One orchestration for every run, supervised (:mod:`selfconfig.training.run`) and pretext
(:mod:`selfconfig.pretext.run`): the hyperparameters and device, the run folder, what to resume
from, the seeds, the loop's state, the checkpoint's metadata, the batch streams, the callbacks,
and the call of the loop.

Both kinds of run resolve their settings with :func:`resolve_settings` (as do both experiment
runners), hold their folder with :func:`run_folder`, start or resume with :func:`seed_run` and
:func:`loop_state`, draw batches from :func:`training_batches` and :func:`validation_batches`,
describe themselves with a :class:`RunSpec` and hand it with their loop module to
:func:`run_loop`. Distributed training (:mod:`selfconfig.training.distributed`) hooks in here:
the sampler each rank draws from, which callbacks each rank runs, the syncing of the networks.
"""

from __future__ import annotations

import logging
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from selfconfig.data.loader import batch_stream
from selfconfig.data.sampler import CaseRef, PatchSampler, iterate_cases
from selfconfig.device import pick_device
from selfconfig.logs import LogFile
from selfconfig.training import distributed as dist
from selfconfig.training.callbacks import (CheckpointCallback, EpochLogger, ProgressPlot, TimeBudgetReport,
                                           restore_rng_state)
from selfconfig.training.config import TrainingConfig
from selfconfig.training.convergence import ConvergenceCallback, ConvergenceRule, Score
from selfconfig.training.loop import Callback, LoopModule, LoopState, fit
from selfconfig.training.tracking import tracking_callbacks

log = logging.getLogger(__name__)

#: the checkpoints a run resumes from, in order of preference
RESUME_KINDS = ("latest", "final")
#: added to ``seed * 1000`` for a pre-training (one serves every fold); a fold run adds its fold's hash
PRETRAIN_SEED_OFFSET = 17


# ---------------------------------------------------------------------- settings
@dataclass
class Settings:
    """A run's hyperparameters and device, resolved the same way for every kind of run."""

    hp: TrainingConfig
    device: torch.device
    overrides: dict[str, Any]  # the values set explicitly (CLI flags, a budget); a resumed run keeps its own


def resolve_settings(trainer_cls: type, overrides: dict[str, Any] | None = None,
                     device: torch.device | str | None = None) -> Settings:
    """The trainer's defaults for the device, with the explicit ``overrides`` over them (a ``None``
    value means "not set"), checked before any folder is created. The one resolution behind
    training, pre-training and both experiment runners, so that a cell trains what was checked."""
    dev = device if isinstance(device, torch.device) else pick_device(device)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    hp = replace(trainer_cls.default_hyperparameters(dev.type), **given).check()
    return Settings(hp, dev, given)


def resumed_hyperparameters(ckpt: dict, overrides: dict[str, Any], changeable: tuple[str, ...] = ()) -> TrainingConfig:
    """A resumed run keeps the hyperparameters it was started with; only ``changeable`` ones (e.g.
    ``epochs``, to extend it) take the new value. Other overrides are ignored, with a warning."""
    saved = TrainingConfig.from_dict(ckpt["hyperparameters"])
    ignored = sorted(k for k, v in overrides.items() if k not in changeable and getattr(saved, k, v) != v)
    if ignored:
        log.warning("resuming keeps the run's own %s; start a new run to change them", ", ".join(ignored))
    return replace(saved, **{k: overrides[k] for k in changeable if k in overrides})


def seed_run(hp: TrainingConfig, fold: int | str | None = None) -> int:
    """The run's base seed (torch's global generator is seeded with it): from ``hp.seed`` and the
    fold, so that folds differ; ``None`` for a pre-training. Streams derive from it by offsets."""
    offset = PRETRAIN_SEED_OFFSET if fold is None else zlib.crc32(str(fold).encode()) % 997
    seed = int(hp.seed) * 1000 + offset
    torch.manual_seed(seed)
    return seed


def batch_size(hp: TrainingConfig, cfg) -> int:
    """The global batch: the hyperparameters' when set, else the plan's."""
    return hp.batch_size or cfg.batch_size


@contextmanager
def owned_folder(folder: Path, wait: bool = False, what: str = "write") -> Iterator[Path]:
    """One process owns a run folder for a run's whole life (:mod:`selfconfig.locking`): a second
    refuses in one line naming the first, or waits (``wait``). Under torchrun rank 0 holds it for
    every rank."""
    from contextlib import nullcontext

    from selfconfig.locking import run_folder_lock

    with run_folder_lock(folder, wait=wait, what=what) if dist.is_writer() else nullcontext(Path(folder)):
        yield Path(folder)


@contextmanager
def run_folder(folder: Path, log_name: str) -> Iterator[Path]:
    """Hold ``folder`` for a run's whole life: created, with the run's log file (written by rank 0).
    What every run holds while it writes goes here, for supervised and pretext runs alike."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with LogFile(folder / log_name, enabled=dist.is_writer()):
        yield folder


# ---------------------------------------------------------------------- run folders
def find_resume_checkpoint(folder: Path, kinds: tuple[str, ...] = RESUME_KINDS) -> Path | None:
    """``checkpoint_latest.pt`` of an interrupted run, else ``checkpoint_final.pt`` of a finished one."""
    for kind in kinds:
        p = Path(folder) / f"checkpoint_{kind}.pt"
        if p.is_file():
            return p
    return None


def started_without_checkpoint(folder: Path, kinds: tuple[str, ...] = RESUME_KINDS) -> bool:
    """``folder`` holds what an earlier start wrote (a log, cases, settings) but no checkpoint to
    resume: that start was killed before its first checkpoint."""
    from selfconfig.locking import LOCK_NAME

    folder = Path(folder)
    return (folder.is_dir() and find_resume_checkpoint(folder, kinds) is None
            and any(p.name != LOCK_NAME for p in folder.iterdir()))


def no_checkpoint_message(folder: Path, what: str, asked: bool, kinds: tuple[str, ...] = RESUME_KINDS) -> str:
    """The one warning line of a run that resumes where there is nothing to resume (nnU-Net's
    ``--c``: say so, and start a new run)."""
    names = " or ".join(f"checkpoint_{k}.pt" for k in kinds)
    return (f"{'--continue: ' if asked else ''}no checkpoint found in {folder} (no {names}; an earlier start was "
            f"stopped before its first checkpoint, or there was none), starting a new {what} from epoch 1")


def scored_after_final(run_dir: Path, result: str) -> bool:
    """``result`` (a file in ``run_dir``) exists and was written after ``checkpoint_final.pt``:
    the finished run was scored with the checkpoint it has now."""
    final = Path(run_dir) / "checkpoint_final.pt"
    scored = Path(run_dir) / result
    return final.is_file() and scored.is_file() and scored.stat().st_mtime >= final.stat().st_mtime


def trained_epochs(run_dir: Path) -> int | None:
    """The epochs a run folder was (or is being) trained for, from its hyperparameters.json."""
    from selfconfig.utils import read_json

    p = Path(run_dir) / "hyperparameters.json"
    return int(read_json(p).get("epochs", 0)) if p.is_file() else None


def is_finished_and_scored(run_dir: Path, epochs: int | None = None, result: str = "scores.json") -> bool:
    """The one answer to "is this run done?": trained to the end (``checkpoint_final.pt``), scored
    after that (``result`` is newer), and trained for at least ``epochs`` (when given; fewer
    means it must be extended)."""
    if not scored_after_final(run_dir, result):
        return False
    done = trained_epochs(run_dir)
    return epochs is None or (done is not None and done >= int(epochs))


# ---------------------------------------------------------------------- checkpoint metadata
def dataset_block(data) -> dict[str, Any]:
    """What a checkpoint records about its dataset (enough for prediction to rebuild the network)."""
    p = data.plans
    return {"name": data.dataset, "task": p.task, "labels": p.labels, "channel_names": p.channel_names,
            "num_input_channels": p.num_input_channels, "dim": p.dim}


def base_meta(data, hp: TrainingConfig) -> dict[str, Any]:
    """The part of every checkpoint's metadata that supervised and pretext runs share."""
    return {"plans": data.plans.to_dict(), "configuration": data.configuration, "dataset": dataset_block(data),
            "hyperparameters": hp.to_dict()}


# ---------------------------------------------------------------------- batches
def training_batches(refs: list[CaseRef], data, hp: TrainingConfig, seed: int, device: torch.device,
                     crop: list[int] | None = None, **kwargs) -> Callable[[int], Iterator[dict]]:
    """The training stream of this process (see :func:`make_sampler`, :func:`stream_from`)."""
    sampler = make_sampler(refs, data.config, batch_size(hp, data.config), data.task, seed, crop=crop, **kwargs)
    return stream_from(sampler, hp, device)


def validation_batches(refs: list[CaseRef], data, hp: TrainingConfig, seed: int,
                       **kwargs) -> Callable[[], Iterable[dict]] | None:
    """The batches validated after each epoch, the same ones every epoch: each case once,
    centre-cropped, for a classifier's labels; else ``hp.val_iters`` batches of random patches.
    None without validation cases."""
    if not refs:
        return None
    cfg = data.config
    if data.task == "classification" and kwargs.get("with_labels", True):
        return case_batches(refs, cfg.patch_size, batch_size(hp, cfg), data.task)
    return patch_batches(PatchSampler(refs, cfg.patch_size, batch_size(hp, cfg), data.task, seed=seed, **kwargs),
                         hp.val_iters)


def make_sampler(refs: list[CaseRef], cfg, global_batch: int, task: str, seed: int, crop: list[int] | None = None,
                 **kwargs) -> PatchSampler:
    """The training sampler of this process. The plan's batch is the *global* batch: under
    distributed training each rank draws its share of it from its own seed (from seed and rank).
    ``crop``: the larger patch the workers cut when spatial augmentation samples the plan's patch
    from it."""
    return PatchSampler(refs, list(crop or cfg.patch_size), dist.local_batch_size(global_batch), task,
                        seed=dist.rank_seed(seed), final_patch_size=list(cfg.patch_size), **kwargs)


def stream_from(sampler: PatchSampler, hp: TrainingConfig, device: torch.device) -> Callable[[int], Iterator[dict]]:
    """``train_batches(start)`` for :func:`fit`: background workers, from batch index ``start``."""

    def train_batches(start: int) -> Iterator[dict]:
        return batch_stream(sampler, start=start, num_workers=hp.num_workers, pin_memory=device.type == "cuda",
                            low_priority=device.type == "cpu")

    return train_batches


def patch_batches(sampler: PatchSampler, n: int) -> Callable[[], Iterable[dict]]:
    """``n`` fixed validation batches of random patches (the same ones every epoch)."""

    def val_batches() -> Iterator[dict]:
        for i in range(n):
            yield {k: torch.from_numpy(v) for k, v in sampler.sample(i).items()}

    return val_batches


def case_batches(refs: list[CaseRef], patch_size, batch_size: int, task: str) -> Callable[[], Iterable[dict]]:
    """Every validation case once, centre-cropped (classification)."""

    def val_batches() -> Iterator[dict]:
        for b in iterate_cases(refs, patch_size, batch_size, task):
            yield {"data": torch.from_numpy(b["data"]), "label": torch.from_numpy(b["label"])}

    return val_batches


# ---------------------------------------------------------------------- the run
@dataclass
class RunSpec:
    """What :func:`run_loop` needs to know about a run besides its module and batches."""

    folder: Path  # where checkpoints, progress.png go
    name: str  # in the epoch log lines, e.g. "Scratch" or "pretrain SurrogateFlip"
    title: str  # of the progress plot
    meta: Callable[[], dict]  # the checkpoint's metadata, asked for at each save
    hp: TrainingConfig
    checkpoint: type[CheckpointCallback] = CheckpointCallback  # e.g. one that also exports weights at the end
    extra_callbacks: list[Callback] = field(default_factory=list)
    desc: str = ""  # progress bar label; default: name
    # train until converged: the rule and the run's score (None: the fixed schedule)
    convergence: ConvergenceRule | None = None
    score: Score | None = None

    def callbacks(self) -> list[Callback]:
        """The writing callbacks: only the process that writes (rank 0) runs them. A run trained
        until converged keeps as checkpoint_best the moment of its best score, not of the
        smoothed patch metric."""
        checkpoint = self.checkpoint(self.folder, self.meta, self.hp.checkpoint_every,
                                     minutes=self.hp.checkpoint_minutes, ema_best=self.convergence is None)
        converge = [] if self.convergence is None else [
            ConvergenceCallback(self.convergence, self.score, checkpoint.keep_best)]
        return [EpochLogger(self.name), *converge, checkpoint,
                ProgressPlot(self.folder / "progress.png", self.title),
                TimeBudgetReport(self.folder / "training_time.json"), *tracking_callbacks(self.folder, self.title),
                *self.extra_callbacks]


class _ShareDecisions(Callback):
    """Under distributed training only rank 0 scores a run trained until converged: every rank
    takes its decisions (the annealing tail), so that all stop at the same step."""

    def on_epoch_end(self, module, state: LoopState, logs: dict) -> None:
        state.converge, state.tail_start, state.stop_step = dist.broadcast_object(
            (state.converge, state.tail_start, state.stop_step))


def restore(module: LoopModule, ckpt: dict) -> LoopState:
    """Put ``module``, the loop and the random state back where ``ckpt`` left them."""
    module.load_state_dict(ckpt["module"])
    restore_rng_state(ckpt.get("rng", {}))
    return LoopState.from_dict(ckpt["loop"])


def loop_state(module: LoopModule, hp: TrainingConfig, ckpt: dict | None, seed: int,
               pretext: bool = False) -> LoopState:
    """Where the loop starts: fresh, on the hyperparameters' schedule (the pre-training one for a
    pretext run), or where ``ckpt`` left it, with ``module`` and every random stream restored."""
    if ckpt is not None:
        state = restore(module, ckpt)
        dist.reseed_rank_streams(module, seed, state.global_step)
        return state
    if pretext:
        epochs, iters, minutes = hp.pretrain_epochs, hp.pretrain_iters_per_epoch, hp.pretrain_max_minutes
    else:
        epochs, iters, minutes = hp.epochs, hp.iters_per_epoch, hp.max_minutes
    return LoopState(epochs=epochs, iters_per_epoch=iters, max_seconds=minutes * 60 if minutes else None,
                     fit_to_time=hp.fit_schedule_to_minutes)


def run_loop(spec: RunSpec, module: LoopModule, state: LoopState, train_batches: Callable[[int], Iterator[dict]],
             val_batches: Callable[[], Iterable[dict]] | None, progress: bool = True) -> LoopState:
    """Run ``module`` from ``state`` to the end with the spec's callbacks.

    Under distributed training every rank steps (gradients averaged at each optimiser step); only
    rank 0 validates, logs and writes, and every rank leaves after rank 0 wrote the last checkpoint.
    """
    callbacks: list[Callback] = spec.callbacks() if dist.is_writer() else []
    if dist.is_distributed():
        callbacks = [dist.SyncCallback(), *callbacks, *([_ShareDecisions()] if spec.convergence else [])]
        if not dist.is_writer():
            val_batches, progress = None, False
    state = fit(module, state, train_batches, val_batches, callbacks, progress=progress, ema=spec.hp.ema_best,
                desc=spec.desc or spec.name, agree=dist.max_over_ranks if dist.is_distributed() else None)
    dist.barrier()
    return state
