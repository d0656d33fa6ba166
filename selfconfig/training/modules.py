"""Loop modules for supervised training: segmentation and classification.

A loop module owns a network, its optimizer and what one training / validation step does.
Pretext tasks (selfconfig.pretext) are loop modules too, so every kind of training runs
through the same loop (:func:`selfconfig.training.loop.fit`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from selfconfig.precision import autocast, resolve_precision
from selfconfig.training.distributed import average_gradients
from selfconfig.training.loop import LoopState


def poly_lr(initial: float, step: int, total: int, exponent: float = 0.9, warmup_steps: int = 0) -> float:
    """nnU-Net's polynomial decay, per iteration; with ``warmup_steps`` > 0 the rate first rises
    linearly from ``initial / warmup_steps`` to ``initial`` over those steps and then decays over
    the rest."""
    if warmup_steps > 0 and step < warmup_steps:
        return initial * (step + 1) / warmup_steps
    if warmup_steps > 0:
        step, total = step - warmup_steps, total - warmup_steps
    return initial * (1 - min(step, max(total - 1, 0)) / max(total, 1)) ** exponent


def warmup_poly_lr(initial: float, step: int, total: int, hp) -> float:
    """The training schedule of ``hp`` (a :class:`~selfconfig.training.config.TrainingConfig`): linear
    warm-up over ``hp.warmup_fraction`` of the steps, then poly decay with ``hp.poly_exponent``."""
    return poly_lr(initial, step, total, hp.poly_exponent, int(round(hp.warmup_fraction * total)))


class OptimizationMixin:
    """Shared by every loop module: device moves, mixed precision, clipping, learning-rate schedule."""

    device: torch.device
    precision: str

    def _setup_optimization(self, device: torch.device, precision: str, grad_clip: float,
                            lr_fn: Callable[[int, int], float]) -> None:
        self.device = device
        self.precision = resolve_precision(precision, device)
        self.grad_clip = grad_clip
        self.lr_fn = lr_fn
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    @property
    def uses_scaler(self) -> bool:
        return self.precision == "fp16"

    def autocast(self):
        return autocast(self.precision, self.device)

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, non_blocking=True)

    def set_lr(self, optimizer: torch.optim.Optimizer, state: LoopState, scale: float = 1.0) -> float:
        step, total, factor = state.schedule_point()  # an annealing tail scales the rate down to zero
        lr = self.lr_fn(step, total) * scale * factor
        for g in optimizer.param_groups:
            g["lr"] = lr
        return lr

    def optimizer_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, params, name: str = "main") -> None:
        """Backward, average the gradients over the ranks of a distributed run, clip, step."""
        params = list(params)
        optimizer.zero_grad(set_to_none=True)
        if self.uses_scaler:
            scaler = self.scalers.setdefault(name, torch.amp.GradScaler(self.device.type))
            scaler.scale(loss).backward()
            average_gradients(params)  # the scale is the same on every rank; an inf anywhere skips everywhere
            if self.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            average_gradients(params)
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            optimizer.step()

    def scaler_state(self) -> dict:
        return {k: v.state_dict() for k, v in self.scalers.items()}

    def load_scaler_state(self, d: dict) -> None:
        for k, v in (d or {}).items():
            self.scalers.setdefault(k, torch.amp.GradScaler(self.device.type)).load_state_dict(v)


class SupervisedModule(OptimizationMixin):
    """Supervised training of the target network (segmentation or classification)."""

    def __init__(self, network: nn.Module, optimizer: torch.optim.Optimizer, loss: nn.Module, task: str,
                 num_classes: int, device: torch.device, lr_fn: Callable[[int, int], float],
                 augmenter=None, precision: str = "fp32", grad_clip: float = 12.0, label_scheme=None,
                 previous_stage=None):
        """``label_scheme`` (segmentation; :class:`selfconfig.dataset.labels.LabelScheme`): regions
        are scored per region on sigmoid outputs, ``ignore`` voxels are left out of the Dice.
        ``previous_stage`` (cascade; :class:`selfconfig.augment.previous_stage.PreviousStageInput`):
        the batch's ``previous_stage`` label maps are augmented spatially with ``seg`` and appended
        to the data as one-hot channels."""
        self.network = network.to(device)
        self.optimizer = optimizer
        self.loss = loss.to(device)
        self.task = task
        self.num_classes = num_classes
        self.augmenter = augmenter
        self.label_scheme = label_scheme
        self.previous_stage = previous_stage
        self._setup_optimization(device, precision, grad_clip, lr_fn)
        if task == "segmentation":
            self.monitor = "val_dice"
        else:
            self.monitor = "val_auc" if num_classes == 2 else "val_kappa"

    # ------------------------------------------------------------------ steps
    def _target(self, batch: dict) -> torch.Tensor:
        key = "seg" if self.task == "segmentation" else "label"
        return self.to_device(batch[key])

    def _previous_stage_map(self, batch: dict) -> torch.Tensor | None:
        if self.previous_stage is None:
            return None
        if "previous_stage" not in batch:
            raise ValueError("a cascade module needs batches with the previous stage's label maps (previous_stage)")
        return self.to_device(batch["previous_stage"])

    def train_step(self, batch: dict, state: LoopState) -> dict[str, float]:
        self.network.train()
        lr = self.set_lr(self.optimizer, state)
        data = self.to_device(batch["data"])
        target = self._target(batch)
        prev = self._previous_stage_map(batch)
        if prev is not None:  # augmented spatially with the labels: extra channels of seg for now
            target = torch.cat([target, prev.to(target.dtype)], 1)
        if self.augmenter is not None:
            if self.task == "segmentation":
                data, target = self.augmenter(data, target)
            else:
                data, _ = self.augmenter(data, None)
        if prev is not None:
            target, prev = target[:, :1], target[:, 1:]
            data = torch.cat([data, self.previous_stage(prev, state.global_step).to(data.dtype)], 1)
        target = target.long()  # label maps arrive in their stored type (uint8); widened on the device
        with self.autocast():
            out = self.network(data)
            loss = self.loss(out, target)
        self.optimizer_step(loss, self.optimizer, self.network.parameters())
        return {"loss": float(loss.detach()), "lr": lr}

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, Any]:
        self.network.eval()
        data = self.to_device(batch["data"])
        target = self._target(batch).long()
        prev = self._previous_stage_map(batch)
        if prev is not None:
            data = torch.cat([data, self.previous_stage(prev).to(data.dtype)], 1)
        with self.autocast():
            out = self.network(data)
            loss = self.loss(out, target)
        top = out[0] if isinstance(out, (list, tuple)) else out
        res: dict[str, Any] = {"loss": float(loss)}
        if self.task == "segmentation":
            res["counts"] = self._dice_counts(top, target[:, 0])
        else:
            res["prob"] = torch.softmax(top.float(), 1).cpu().numpy()
            res["label"] = target.cpu().numpy()
        return res

    def _dice_counts(self, logits: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
        """(C, 3) true positives, false positives, false negatives per scored channel (foreground
        classes, or regions), over the voxels that are not ``ignore``."""
        scheme = self.label_scheme
        ignore = scheme.ignore_label if scheme is not None else None
        keep = (ref != ignore) if ignore is not None else None
        if scheme is not None and scheme.has_regions:
            rows = []
            for i, region in enumerate(scheme.foreground_regions):
                pred = logits[:, i] > 0  # sigmoid > 0.5
                gt = torch.isin(ref, torch.tensor(region, device=ref.device))
                if keep is not None:
                    pred, gt = pred & keep, gt & keep
                tp = int((pred & gt).sum())
                rows.append([tp, int(pred.sum()) - tp, int(gt.sum()) - tp])
            return np.asarray(rows, dtype=np.int64)
        pred = logits.argmax(1)
        k = self.num_classes
        if keep is not None:
            pred, ref = pred[keep], ref[keep]
        idx = (ref * k + pred).flatten()
        conf = torch.bincount(idx, minlength=k * k).reshape(k, k).cpu().numpy()
        tp = np.diag(conf)[1:]
        return np.stack([tp, conf[:, 1:].sum(0) - tp, conf[1:, :].sum(1) - tp], axis=1).astype(np.int64)

    def validation_end(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        if not outputs:
            return {}
        logs = {"val_loss": float(np.mean([o["loss"] for o in outputs]))}
        if self.task == "segmentation":
            counts = sum(o["counts"] for o in outputs).astype(float)
            tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
            denom = 2 * tp + fp + fn
            dice = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)
            logs["val_dice"] = float(np.nanmean(dice)) if np.isfinite(dice).any() else float("nan")
            for i, d in enumerate(dice, start=1):
                logs[f"val_dice_{i}"] = float(d)
        else:
            from selfconfig.evaluation.metrics import accuracy, quadratic_weighted_kappa, roc_auc

            prob = np.concatenate([o["prob"] for o in outputs])
            y = np.concatenate([o["label"] for o in outputs])
            pred = prob.argmax(1)
            logs["val_accuracy"] = float(accuracy(y, pred))
            logs["val_kappa"] = float(quadratic_weighted_kappa(y, pred, labels=list(range(self.num_classes))))
            logs["val_auc"] = float(roc_auc(y, prob))
        return logs

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        d = {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
             "scalers": self.scaler_state()}
        if self.augmenter is not None and hasattr(self.augmenter, "state_dict"):
            d["augmenter"] = self.augmenter.state_dict()
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.network.load_state_dict(d["network"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.load_scaler_state(d.get("scalers"))
        if self.augmenter is not None and "augmenter" in d:
            self.augmenter.load_state_dict(d["augmenter"])
