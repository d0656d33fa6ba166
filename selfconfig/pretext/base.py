"""Base classes of pretext tasks.

Write a new pretext task by subclassing :class:`PretextTask` (any networks and losses) or
:class:`ClassificationPretext` (encoder + pooling + a small head predicting a transformation
that :meth:`ClassificationPretext.make_inputs` applies). See documentation/extending.md.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from selfconfig.dataset.schema import TASKS
from selfconfig.training.config import TrainingConfig
from selfconfig.training.loop import LoopState
from selfconfig.training.modules import OptimizationMixin, poly_lr, warmup_poly_lr

if TYPE_CHECKING:  # pragma: no cover
    from selfconfig.training.context import DatasetContext

log = logging.getLogger(__name__)


class PretextTask(OptimizationMixin):
    """One surrogate task. Subclasses implement :meth:`build`, :meth:`train_step`,
    :meth:`validation_step`, :meth:`validation_end` and :meth:`transferable_state`."""

    #: short name used in logs
    name = "pretext"
    #: validation metric that picks checkpoint_best (higher is better)
    monitor = "val_accuracy"
    #: the training-time augmentation this task tolerates: "none", "intensity" (the pretext
    #: labels are geometric, so no flips/rotations), "spatial" (flips/rotations/scaling only: the
    #: target is an intensity, e.g. colour) or "all"
    augmentation = "intensity"
    #: default initial learning rate (``--pretrain-lr`` overrides); None: the training ``lr``
    default_lr: float | None = None
    #: precision this task needs whatever ``--precision`` says (e.g. "fp32" for a gradient
    #: penalty's double backward); None follows the hyperparameters
    required_precision: str | None = None
    #: what one pretext iteration costs, for the experiment's time budgets, which turn seconds
    #: into iterations: ``cost_factor`` training iterations of the plan's ``cost_network``
    #: ("classification": encoder + pooling + head; "segmentation": the whole U-Net) at the plan's
    #: patch and batch size. The budget prices that network with the plans' cost model
    #: (:func:`selfconfig.experiments.budgets.pretext_cost`), so the same task costs less against a
    #: segmentation target (a U-Net) than against a classification target (the encoder itself).
    cost_network = "classification"
    cost_factor = 1.0
    #: held-out ``val_accuracy`` of a task that learned nothing (None: the task has no such accuracy);
    #: a pre-training that ends near it is flagged in its summary and in the experiment's
    chance_level: float | None = None
    #: what the held-out ``val_accuracy`` measures, as the summaries print it
    accuracy_name: str = "pretext accuracy"
    #: a held-out error that says what the transferred network learned where ``val_accuracy`` does
    #: not (a GAN's discriminator accuracy is high when its generator is easy to catch): (history key
    #: without ``val_``, its name, history key of the same error for an output that learned nothing).
    #: None: ``val_accuracy`` says it.
    held_out_error: tuple[str, str, str] | None = None
    #: a name for what the task predicts, in the pre-training's cache key: change it when a new
    #: version of the task learns something else from the same settings, so that a folder made by
    #: the old version is refused instead of reused. None: the task has had one formulation.
    formulation: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "relative_cost" in cls.__dict__:
            warnings.warn(f"{cls.__qualname__}.relative_cost is no longer read: the experiment budgets price a "
                          "pretext iteration from cost_network and cost_factor (documentation/extending.md)",
                          FutureWarning, stacklevel=2)
        if cls.cost_network not in TASKS:
            raise ValueError(f"{cls.__qualname__}.cost_network must be one of {', '.join(TASKS)}, "
                             f"got {cls.cost_network!r}")

    def __init__(self, data: "DatasetContext", hp: TrainingConfig, device: torch.device, seed: int = 0):
        self.data = data
        self.hp = hp
        self.seed = seed
        self.rng = torch.Generator().manual_seed(seed)  # the task's own randomness, saved in checkpoints
        self.lr = hp.pretrain_lr or self.default_lr or hp.lr
        self._setup_optimization(device, self.required_precision or hp.precision, hp.grad_clip, self.learning_rate)
        self.augmenter = self.build_augmenter()
        self.build()

    # ------------------------------------------------------------------ hooks
    @classmethod
    def check_compatible(cls, data: "DatasetContext") -> None:
        """Raise :class:`selfconfig.errors.IncompatibleDatasetError` when the task cannot run."""

    def build(self) -> None:
        """Create networks and optimizers (on ``self.device``)."""
        raise NotImplementedError

    def transferable_state(self) -> dict[str, torch.Tensor]:
        """The pre-trained weights, keyed like selfconfig networks (``encoder.*``, ``decoder.*``)."""
        raise NotImplementedError

    def transfer_groups(self, target_task: str) -> tuple[str, ...]:
        """Which parameter groups of the target network these weights initialise."""
        return ("encoder",)

    def learning_rate(self, step: int, total: int) -> float:
        """Learning rate at ``step`` of ``total``; default: poly decay from ``self.lr``."""
        return poly_lr(self.lr, step, total, self.hp.poly_exponent)

    def build_augmenter(self):
        if self.augmentation == "none" or not self.hp.augment:
            return None
        from selfconfig.augment import BatchAugmenter, default_augmentation_config

        cfg = self.data.config
        anisotropic = cfg.dim == 3 and max(cfg.spacing) / min(cfg.spacing) > cfg.anisotropy_threshold
        aug = default_augmentation_config(cfg.dim, anisotropic)
        aug.mirror_axes = cfg.axes_to_mirror()  # the plan's, as in supervised training
        if self.augmentation == "intensity":
            aug.spatial_enabled = False
            aug.mirror_enabled = False
        elif self.augmentation == "spatial":
            for t in ("noise", "blur", "brightness", "contrast", "lowres", "gamma"):
                setattr(aug, f"{t}_enabled", False)
        elif self.augmentation != "all":
            raise ValueError(f"unknown augmentation setting {self.augmentation!r} (none, intensity, spatial, all)")
        return BatchAugmenter(aug, generator=torch.Generator().manual_seed(self.seed + 1), patch_size=cfg.patch_size)

    def input_patch_size(self) -> list[int]:
        """The crop the loader takes: larger than the plan's patch when the task's augmentation
        rotates or scales (:meth:`selfconfig.augment.BatchAugmenter.input_patch_size`)."""
        cfg = self.data.config
        return self.augmenter.input_patch_size() if self.augmenter is not None else list(cfg.patch_size)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return self.augmenter(x, None)[0] if self.augmenter is not None else x

    # ------------------------------------------------------------------ state
    def modules(self) -> dict[str, nn.Module]:
        """Named networks (saved in checkpoints)."""
        return {k: v for k, v in vars(self).items() if isinstance(v, nn.Module)}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {k: v for k, v in vars(self).items() if isinstance(v, torch.optim.Optimizer)}

    def state_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"networks": {k: m.state_dict() for k, m in self.modules().items()},
                             "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
                             "scalers": self.scaler_state(), "rng": self.rng.get_state()}
        if self.augmenter is not None:
            d["augmenter"] = self.augmenter.state_dict()
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for k, m in self.modules().items():
            m.load_state_dict(d["networks"][k])
        for k, o in self.optimizers().items():
            o.load_state_dict(d["optimizers"][k])
        self.load_scaler_state(d.get("scalers"))
        self.rng.set_state(d["rng"])
        if self.augmenter is not None and "augmenter" in d:
            self.augmenter.load_state_dict(d["augmenter"])

    # ------------------------------------------------------------------ helpers
    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform random numbers from the task's own generator (saved with checkpoints)."""
        return torch.rand(*shape, generator=self.rng)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=self.rng)


class ClassificationPretext(PretextTask):
    """Encoder + global pooling + a linear head predicting which transformation was applied.

    Subclasses set ``num_outputs`` and implement :meth:`make_inputs` (apply random
    transformations to a batch, return inputs and targets) and :meth:`loss_and_metrics`.
    """

    num_outputs = 1

    def learning_rate(self, step: int, total: int) -> float:
        """The fine-tuning schedule: linear warm-up over ``warmup_fraction`` of the steps, then poly
        decay. Without it, AdamW's full rate from the first step sometimes drove rotation
        prediction on a batch-norm encoder into a constant output it never left (FUNDUS_DR,
        ``2d_imagenet``, 300 iterations: held out 0.364, chance 0.333)."""
        return warmup_poly_lr(self.lr, step, total, self.hp)

    def build(self) -> None:
        from selfconfig.networks import build_pretext_network, init_weights_xavier

        plan = self.data.config.network
        self.network = build_pretext_network(plan, self.num_outputs).to(self.device)
        init_weights_xavier(self.network)
        from selfconfig.training.trainer import make_optimizer

        self.optimizer = make_optimizer(self.network.parameters(), self.hp, self.lr)

    def make_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def loss_and_metrics(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def train_step(self, batch: dict, state: LoopState) -> dict[str, float]:
        self.network.train()
        lr = self.set_lr(self.optimizer, state)
        x = self.augment(self.to_device(batch["data"]))
        x, target = self.make_inputs(x)
        with self.autocast():
            logits = self.network(x)
        loss, metrics = self.loss_and_metrics(logits.float(), target.to(self.device))
        self.optimizer_step(loss, self.optimizer, self.network.parameters())
        return {"loss": float(loss.detach()), "lr": lr, **metrics}

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, Any]:
        self.network.eval()
        x, target = self.make_inputs(self.to_device(batch["data"]))
        with self.autocast():
            logits = self.network(x)
        loss, metrics = self.loss_and_metrics(logits.float(), target.to(self.device))
        return {"loss": float(loss), **metrics}

    def validation_end(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        if not outputs:
            return {}
        keys = outputs[0].keys()
        return {f"val_{k}": float(np.mean([o[k] for o in outputs])) for k in keys}

    def transferable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.network.state_dict().items()}


#: a held-out pretext accuracy below chance + this share of the way from chance to 1 counts as "near chance"
NEAR_CHANCE_MARGIN = 0.25


def pretext_summary(history: dict[str, list[float]], chance: float | None, last: int = 3,
                    accuracy_name: str = PretextTask.accuracy_name,
                    held_out_error: tuple[str, str, str] | None = None) -> dict:
    """Held-out pretext accuracy at the end of a pre-training (mean of the last ``last`` epochs' validation,
    overall and per ``val_accuracy_*`` key), its chance level and whether it ended near chance; with
    ``held_out_error`` (:attr:`PretextTask.held_out_error`) also that error against the same error of
    an output that learned nothing."""
    def tail(key: str) -> float | None:
        values = [v for v in history.get(key, []) if v == v]
        return float(np.mean(values[-last:])) if values else None

    out: dict = {"held_out_accuracy": tail("val_accuracy"), "accuracy_name": accuracy_name, "chance": chance,
                 "per_part": {k[len("val_accuracy_"):]: tail(k) for k in sorted(history)
                              if k.startswith("val_accuracy_")}}
    if held_out_error is not None:
        key, name, baseline = held_out_error
        err = {"name": name, "value": tail(f"val_{key}"), "no_learning": tail(f"val_{baseline}")}
        out["held_out_error"] = err
        # an error no lower than that of an output that learned nothing: the weights learned nothing
        # measurable of the pretext task (flagged like a pre-training near chance)
        out["learned_nothing"] = (None if err["value"] is None or err["no_learning"] is None
                                  else bool(err["value"] >= err["no_learning"]))
    acc = out["held_out_accuracy"]
    if chance is None or acc is None:
        out["near_chance"] = None
        return out
    bar = chance + NEAR_CHANCE_MARGIN * (1 - chance)
    worst = min([acc] + [v for v in out["per_part"].values() if v is not None])
    out["near_chance_below"] = round(bar, 4)
    out["near_chance"] = bool(worst < bar)
    return out


def format_per_part(summary: dict) -> str:
    """The per-part held-out accuracies as text ("x 1.000, y 0.950"); "" when there are none."""
    return ", ".join(f"{k} {v:.3f}" for k, v in (summary.get("per_part") or {}).items() if v is not None)


def describe_held_out(summary: dict) -> str:
    """One line for the log: the held-out accuracy (what it measures, its chance level) and
    the held-out error against an output that learned nothing, where the task has one."""
    parts = []
    acc = summary.get("held_out_accuracy")
    if acc is not None:
        per = format_per_part(summary)
        chance = summary.get("chance")
        parts.append(f"held-out {summary.get('accuracy_name') or PretextTask.accuracy_name} {acc:.3f}"
                     + (f" ({per})" if per else "") + (f", chance {chance:.3f}" if chance is not None else ""))
    err = summary.get("held_out_error") or {}
    if err.get("value") is not None:
        parts.append(f"held-out {err['name']} {err['value']:.3f}"
                     + (f" (an output that learned nothing: {err['no_learning']:.3f})"
                        if err.get("no_learning") is not None else ""))
    return "; ".join(parts)


def pretraining_warning(summary: dict) -> tuple[str, str] | None:
    """What a reader must not miss about a pre-training, as (what happened, the numbers behind it);
    None: nothing. It ended near chance, or its held-out error is no lower than that of an output
    that learned nothing."""
    if summary.get("near_chance"):
        return ("ended near chance", f"held-out {summary.get('accuracy_name') or PretextTask.accuracy_name} "
                f"{summary['held_out_accuracy']:.3f}, chance {summary['chance']:.3f}, needs at least "
                f"{summary.get('near_chance_below', float('nan')):.3f} on every part")
    err = summary.get("held_out_error") or {}
    if summary.get("learned_nothing"):
        return ("ended no better than an output that learned nothing",
                f"held-out {err['name']} {err['value']:.3f}, {err['no_learning']:.3f} without learning")
    return None
