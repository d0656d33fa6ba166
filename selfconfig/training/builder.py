"""One orchestration for every run, supervised (:mod:`selfconfig.training.run`) and pretext
(:mod:`selfconfig.pretext.run`): what to resume from, the checkpoint's metadata, the batch
streams, the callbacks, and the call of the loop.

Both kinds of run describe themselves with a :class:`RunSpec` and hand it with their loop module
to :func:`run_loop`. Distributed training (:mod:`selfconfig.training.distributed`) hooks in here:
the sampler each rank draws from, which callbacks each rank runs, the syncing of the networks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from selfconfig.data.loader import batch_stream
from selfconfig.data.sampler import CaseRef, PatchSampler, iterate_cases
from selfconfig.training import distributed as dist
from selfconfig.training.callbacks import (CheckpointCallback, EpochLogger, ProgressPlot, TimeBudgetReport,
                                           restore_rng_state)
from selfconfig.training.config import TrainingConfig
from selfconfig.training.loop import Callback, LoopModule, LoopState, fit
from selfconfig.training.tracking import tracking_callbacks

log = logging.getLogger(__name__)

#: the checkpoints a run resumes from, in order of preference
RESUME_KINDS = ("latest", "final")


# ---------------------------------------------------------------------- run folders
def find_resume_checkpoint(folder: Path, kinds: tuple[str, ...] = RESUME_KINDS) -> Path | None:
    """``checkpoint_latest.pt`` of an interrupted run, else ``checkpoint_final.pt`` of a finished one."""
    for kind in kinds:
        p = Path(folder) / f"checkpoint_{kind}.pt"
        if p.is_file():
            return p
    return None


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

    def callbacks(self) -> list[Callback]:
        """The writing callbacks: only the process that writes (rank 0) runs them."""
        return [EpochLogger(self.name),
                self.checkpoint(self.folder, self.meta, self.hp.checkpoint_every, minutes=self.hp.checkpoint_minutes),
                ProgressPlot(self.folder / "progress.png", self.title),
                TimeBudgetReport(self.folder / "training_time.json"), *tracking_callbacks(self.folder, self.title),
                *self.extra_callbacks]


def restore(module: LoopModule, ckpt: dict) -> LoopState:
    """Put ``module``, the loop and the random state back where ``ckpt`` left them."""
    module.load_state_dict(ckpt["module"])
    restore_rng_state(ckpt.get("rng", {}))
    return LoopState.from_dict(ckpt["loop"])


def run_loop(spec: RunSpec, module: LoopModule, state: LoopState, train_batches: Callable[[int], Iterator[dict]],
             val_batches: Callable[[], Iterable[dict]] | None, progress: bool = True) -> LoopState:
    """Run ``module`` from ``state`` to the end with the spec's callbacks.

    Under distributed training every rank steps (gradients averaged at each optimiser step); only
    rank 0 validates, logs and writes, and every rank leaves after rank 0 wrote the last checkpoint.
    """
    callbacks: list[Callback] = spec.callbacks() if dist.is_writer() else []
    if dist.is_distributed():
        callbacks = [dist.SyncCallback(), *callbacks]
        if not dist.is_writer():
            val_batches, progress = None, False
    state = fit(module, state, train_batches, val_batches, callbacks, progress=progress, ema=spec.hp.ema_best,
                desc=spec.desc or spec.name, agree=dist.max_over_ranks if dist.is_distributed() else None)
    dist.barrier()
    return state
