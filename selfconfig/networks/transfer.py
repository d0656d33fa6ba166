"""Weight transfer between selfconfig networks, by the parameter groups that networks declare.

``transfer_weights`` is a pure function of (source state dict, target network, groups): keys are
matched within the requested groups, shape mismatches are skipped and reported, and a transfer
that would leave any tensor of a requested group unfilled raises ``WeightTransferError``
instead of silently loading part of an encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from selfconfig.errors import WeightTransferError

log = logging.getLogger(__name__)

# buffers that old checkpoints may lack and that never change a forward pass with momentum set
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


@dataclass
class TransferReport:
    """What a transfer did. ``skipped`` entries read ``"key: reason"``."""

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def summary(self) -> str:
        groups = "+".join(self.groups) or "?"
        text = (f"weight transfer ({groups}): copied {len(self.copied)}, skipped {len(self.skipped)}, "
                f"missing {len(self.missing)}, unexpected {len(self.unexpected)}")
        if self.skipped:
            text += f"; skipped e.g. {', '.join(self.skipped[:3])}"
        if self.missing:
            text += f"; missing e.g. {', '.join(self.missing[:3])}"
        return text

    def log(self, logger: logging.Logger = log, level: int = logging.INFO) -> None:
        logger.log(level, self.summary())
        for name in ("skipped", "missing", "unexpected"):
            for entry in getattr(self, name):
                logger.debug("%s: %s", name, entry)

    def to_dict(self) -> dict[str, list[str]]:
        return asdict(self)


def _rename(key: str, prefix_map: Mapping[str, str] | None) -> str:
    if prefix_map:
        for old, new in prefix_map.items():
            if key.startswith(old):
                return new + key[len(old):]
    return key


def _requested_keys(target: nn.Module, groups: Iterable[str]) -> dict[str, str]:
    """Target key -> first requested group that holds it."""
    declared = target.parameter_groups()
    unknown = [g for g in groups if g not in declared]
    if unknown:
        raise WeightTransferError(
            f"the target network ({type(target).__name__}) has no group {', '.join(unknown)} "
            f"(it has {', '.join(declared)}); choose groups it declares"
        )
    requested: dict[str, str] = {}
    for g in groups:
        for k in declared[g]:
            requested.setdefault(k, g)
    return requested


def transfer_weights(
    source_state: Mapping[str, torch.Tensor],
    target: nn.Module,
    groups: Iterable[str] = ("encoder",),
    source_prefix_map: Mapping[str, str] | None = None,
    strict_groups: bool = True,
    source_name: str = "the source weights",
) -> TransferReport:
    """Copy the tensors of ``groups`` from ``source_state`` into ``target`` (in place).

    ``source_prefix_map`` renames source keys first (``{"generator.": ""}`` takes a generator
    out of a GAN checkpoint); the first matching prefix wins. Nothing is copied when the
    transfer fails; the source is never modified.
    """
    groups = list(groups)
    requested = _requested_keys(target, groups)
    target_state = target.state_dict(keep_vars=False)
    report = TransferReport(groups=groups)
    plan: list[tuple[str, torch.Tensor]] = []
    for src_key, tensor in source_state.items():
        key = _rename(src_key, source_prefix_map)
        label = key if key == src_key else f"{src_key} -> {key}"
        if key not in target_state:
            report.unexpected.append(label)
        elif key not in requested:
            report.skipped.append(f"{label}: not requested (groups {'+'.join(groups)})")
        elif tuple(tensor.shape) != tuple(target_state[key].shape):
            report.skipped.append(
                f"{label}: shape mismatch (source {tuple(tensor.shape)}, target {tuple(target_state[key].shape)})"
            )
        else:
            plan.append((key, tensor))
    filled = {k for k, _ in plan}
    report.missing = [k for k in requested if k not in filled]
    report.copied = [k for k, _ in plan]
    problems = [k for k in report.missing if not k.endswith(OPTIONAL_SUFFIXES)]
    if strict_groups and problems:
        mismatched = [s for s in report.skipped if "shape mismatch" in s]
        detail = f"; shape mismatches: {', '.join(mismatched[:3])}" if mismatched else ""
        raise WeightTransferError(
            f"{len(problems)} of {len(requested)} tensors of group(s) {'+'.join(groups)} would stay "
            f"unfilled by {source_name} (first: {', '.join(problems[:5])}){detail}; the source was "
            "built from another plan or architecture - pretrain with the same plans and configuration"
        )
    with torch.no_grad():
        for key, tensor in plan:
            target_state[key].copy_(tensor)
    return report


def group_parameters(model: nn.Module, group: str) -> list[nn.Parameter]:
    """The parameters (not buffers) of ``group``, e.g. for a per-group learning rate."""
    keys = set(model.parameter_groups()[group])
    return [p for name, p in model.named_parameters() if name in keys]


def set_group_trainable(model: nn.Module, group: str, trainable: bool) -> int:
    """Freeze (``False``) or unfreeze a group's parameters; returns how many tensors changed."""
    params = group_parameters(model, group)
    for p in params:
        p.requires_grad_(trainable)
    return len(params)


def freeze_group(model: nn.Module, group: str) -> int:
    return set_group_trainable(model, group, False)


def unfreeze_group(model: nn.Module, group: str) -> int:
    return set_group_trainable(model, group, True)
