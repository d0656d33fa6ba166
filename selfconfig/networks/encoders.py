"""One encoder definition for every network: ``build_encoder(plan)`` picks it from the plan.

For the ImageNet kinds the architecture fixes the channels; ``imagenet_encoder_layout`` returns
the ``EncoderPlan`` a planner should write for them (the five skip outputs, strides 2 each).
"""

from __future__ import annotations

from selfconfig.errors import PlansError
from selfconfig.networks.base import ImageNetInputNorm, StagedEncoder
from selfconfig.networks.blocks import as_tuple
from selfconfig.networks.efficientnet import OUT_CHANNELS as EFFNET_CHANNELS
from selfconfig.networks.efficientnet import EfficientNetLite0Encoder
from selfconfig.networks.plain import PlainConvEncoder
from selfconfig.networks.resnet import RESNET_LAYOUTS, ResNetEncoder, resnet_out_channels
from selfconfig.plans import IMAGENET_ENCODERS, EncoderPlan, NetworkPlan


def imagenet_encoder_layout(kind: str, dim: int) -> EncoderPlan:
    """The EncoderPlan of an ImageNet encoder: its five skip outputs (features, stride 2 each).

    ``kernel_sizes`` are the decoder's kernels at each resolution; ``n_conv_per_stage`` is unused.
    A planner may change ``strides`` (entries >= 1 per axis, e.g. z = 1 for anisotropic 3D data)
    and ``kernel_sizes``; the channels are fixed.
    """
    if kind not in IMAGENET_ENCODERS:
        raise PlansError(f"unknown ImageNet encoder {kind!r} (known: {', '.join(IMAGENET_ENCODERS)})")
    features = list(EFFNET_CHANNELS) if kind == "efficientnet_lite0" else resnet_out_channels(kind)
    return EncoderPlan(
        kind=kind,
        features_per_stage=features,
        kernel_sizes=[[3] * dim for _ in features],
        strides=[[2] * dim for _ in features],
        n_conv_per_stage=[],
        norm="batch",
        nonlin="relu6" if kind == "efficientnet_lite0" else "relu",
    )


def decoder_stage_count(enc: EncoderPlan) -> int:
    """How many entries ``DecoderPlan.n_conv_per_stage`` needs for this encoder.

    One per stage but the bottleneck, plus one when the first stage is strided (ImageNet
    encoders: their first skip is at stride 2), for the final upsampling to full resolution.
    """
    if enc.kind != "plain" and not enc.strides:
        enc = imagenet_encoder_layout(enc.kind, 2)
    first = enc.strides[0] if enc.strides else [1]
    strided = any(v > 1 for v in (first if isinstance(first, (list, tuple)) else [first]))
    return len(enc.strides) - 1 + int(strided)


def _validate_imagenet_plan(enc: EncoderPlan, dim: int) -> None:
    layout = imagenet_encoder_layout(enc.kind, dim)
    if enc.features_per_stage and list(enc.features_per_stage) != layout.features_per_stage:
        raise PlansError(
            f"encoder.features_per_stage {enc.features_per_stage} does not match {enc.kind} "
            f"({layout.features_per_stage}); fix plans.json or rerun selfconfig_plan_and_preprocess"
        )
    for name in ("strides", "kernel_sizes"):
        value = getattr(enc, name)
        if value and len(value) != len(layout.features_per_stage):
            raise PlansError(
                f"encoder.{name} of {enc.kind} needs {len(layout.features_per_stage)} entries, got "
                f"{len(value)}; fix plans.json"
            )
        for entry in value:
            if any(v < 1 for v in as_tuple(entry, dim)):
                raise PlansError(f"encoder.{name} entries must be >= 1, got {value}; fix plans.json")
            if name == "kernel_sizes" and any(v % 2 == 0 for v in as_tuple(entry, dim)):
                raise PlansError(f"encoder.kernel_sizes must be odd, got {value}; fix plans.json")


def build_encoder(plan: NetworkPlan, drop_path: float = 0.0) -> StagedEncoder:
    """The encoder of ``plan``; every network (U-Net, classifier, pretext) is built around it."""
    enc = plan.encoder
    if plan.dim not in (2, 3):
        raise PlansError(f"network dim must be 2 or 3, got {plan.dim}; fix plans.json")
    if enc.kind == "plain":
        return PlainConvEncoder(enc, plan.dim, plan.in_channels)
    if enc.kind not in IMAGENET_ENCODERS:
        raise PlansError(
            f"unknown encoder kind {enc.kind!r} (known: plain, {', '.join(IMAGENET_ENCODERS)}); fix plans.json"
        )
    _validate_imagenet_plan(enc, plan.dim)
    strides = enc.strides or None
    kernels = enc.kernel_sizes or None
    if enc.kind == "efficientnet_lite0":
        encoder: StagedEncoder = EfficientNetLite0Encoder(plan.dim, plan.in_channels, strides, drop_path, kernels)
    else:
        assert enc.kind in RESNET_LAYOUTS
        encoder = ResNetEncoder(enc.kind, plan.dim, plan.in_channels, strides, kernels)
    if "rgb" in (enc.input_schemes or []):
        if len(enc.input_schemes) != plan.in_channels:
            raise PlansError(f"encoder.input_schemes names {len(enc.input_schemes)} channel(s) but the network has "
                             f"{plan.in_channels} input channel(s); fix plans.json")
        encoder.input_norm = ImageNetInputNorm(enc.input_schemes, plan.dim)
    return encoder
