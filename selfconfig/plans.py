"""Typed plans: what the planner decided, handed from ``plan`` to ``preprocess``, ``train`` and
``predict`` as ``preprocessed/NAME/plans.json``.

Plans are dataclasses of JSON-native types with a schema version. Runtime flags (epochs, learning
rate, ...) never live here: they belong to the trainer's hyperparameters.

Network topology convention (shared by every network that selfconfig builds):

* ``EncoderPlan`` describes the encoder once. The segmentation U-Net, the classification
  network and every pretext network (flip / rotation heads, WGAN critic, colourisation
  generator) are built around *the same* encoder, so pre-trained weights always fit.
* ``kind == "plain"``: a stack of ``len(features_per_stage)`` stages, stage ``i`` = ``n_conv_per_stage[i]``
  convolutions of kernel ``kernel_sizes[i]``; the first convolution of a stage has stride
  ``strides[i]`` (``strides[0]`` is all ones). Per-axis lists have ``dim`` entries
  (``(z, y, x)`` for 3D, ``(y, x)`` for 2D).
* ``kind in {"efficientnet_lite0", "resnet18", "resnet34", "resnet50"}``: ImageNet-compatible
  encoders. Their internal layout is fixed by the architecture; ``features_per_stage`` and
  ``strides`` then describe the skip outputs that the U-Net decoder uses.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from selfconfig.errors import PlansError

PLANS_SCHEMA_VERSION = 1

IMAGENET_ENCODERS = ("efficientnet_lite0", "resnet18", "resnet34", "resnet50")


@dataclass
class EncoderPlan:
    kind: str = "plain"
    features_per_stage: list[int] = field(default_factory=list)
    kernel_sizes: list[list[int]] = field(default_factory=list)
    strides: list[list[int]] = field(default_factory=list)
    n_conv_per_stage: list[int] = field(default_factory=list)
    norm: str = "instance"  # "instance" | "batch"
    nonlin: str = "leaky_relu"  # "leaky_relu" | "relu" | "relu6"
    # ImageNet encoders: the normalisation scheme of each input channel ("rgb" channels, scaled to 0-1
    # by preprocessing, are standardised with ImageNet's mean and std inside the encoder)
    input_schemes: list[str] = field(default_factory=list)

    @property
    def n_stages(self) -> int:
        return len(self.features_per_stage)

    def total_stride(self) -> list[int]:
        total = [1] * len(self.strides[0]) if self.strides else []
        for s in self.strides:
            total = [a * b for a, b in zip(total, s)]
        return total


@dataclass
class DecoderPlan:
    n_conv_per_stage: list[int] = field(default_factory=list)  # one entry per upsampling stage
    deep_supervision: bool = True


@dataclass
class HeadPlan:
    pooling: str = "avg"  # global pooling before the fully connected output: avg | max | avg_centre (2x the features)
    hidden_features: int = 0  # 0: pooling -> linear; >0: pooling -> linear -> nonlin -> linear
    dropout: float = 0.0


@dataclass
class NetworkPlan:
    dim: int
    in_channels: int
    num_classes: int
    encoder: EncoderPlan
    decoder: DecoderPlan = field(default_factory=DecoderPlan)
    head: HeadPlan = field(default_factory=HeadPlan)


@dataclass
class ConfigurationPlan:
    name: str
    dim: int
    spacing: list[float]  # target spacing (z, y, x) for 3D, (y, x) for 2D
    median_shape: list[int]  # median shape after cropping, at the target spacing
    patch_size: list[int]
    batch_size: int
    normalization: list[str]  # per input file channel group: "ct" | "zscore" | "rgb" | "none"
    network: NetworkPlan
    resample_order_image: int = 3
    resample_order_label: int = 1  # one-hot linear interpolation of labels
    separate_z_resampling: bool = False  # anisotropic data: in-plane order 3, z nearest/linear
    anisotropy_threshold: float = 3.0
    foreground_oversampling: float = 0.33
    estimated_iteration_seconds: float | None = None
    estimated_gpu_memory_gb: float | None = None
    # configurations with identical preprocessing share one folder of preprocessed data
    data_identifier: str = ""
    # cascade (nnU-Net's 3d_cascade_fullres): the configuration whose predicted segmentation this
    # network gets as extra input channels, one-hot over the foreground label values
    # (``LabelScheme.foreground_labels``), after the image channels; None: no previous stage.
    # Plans written before the field existed load with None.
    previous_stage: str | None = None
    # spatial axes of this configuration (z y x for 3D, y x for 2D) that training augmentation,
    # test-time mirroring and the final validation mirror; the planner leaves out an axis along
    # which two classes are mirror images (planners/mirror.py), and says why in mirror_axes_reason.
    # None (plans written before the field existed): every axis
    mirror_axes: list[int] | None = None
    mirror_axes_reason: str = ""

    @property
    def data_name(self) -> str:
        return self.data_identifier or self.name

    def axes_to_mirror(self) -> tuple[int, ...]:
        """The axes to mirror: :attr:`mirror_axes`, or every spatial axis when the plans predate it."""
        if self.mirror_axes is None:
            return tuple(range(self.dim))
        return tuple(int(a) for a in self.mirror_axes)


@dataclass
class Budget:
    device: str  # "cpu" or "cuda"
    target_iteration_seconds: float | None = None  # CPU plans
    cpu_threads: int | None = None
    cpu_gflops: float | None = None  # measured (or given) sustained convolution throughput
    cpu_gflops_by_encoder: dict[str, float] | None = None  # ImageNet encoder kinds, measured separately
    gpu_memory_gb: float | None = None  # GPU plans
    precision: str | None = None  # the training precision the budget was measured with
    cpu_measurement_note: str | None = None  # set when the CPU measurement looked disturbed

    @staticmethod
    def encoder_key(kind: str, dim: int) -> str:
        """Key of an encoder kind's rate in :attr:`cpu_gflops_by_encoder`."""
        return f"{kind} {dim}d"

    def encoder_gflops(self, kind: str, dim: int) -> float | None:
        """The recorded CPU rate of ``kind`` encoders in ``dim`` D (None: plain, or not measured)."""
        if kind == "plain" or not self.cpu_gflops_by_encoder:
            return None
        return self.cpu_gflops_by_encoder.get(self.encoder_key(kind, dim))


@dataclass
class Plans:
    dataset_name: str
    plans_name: str
    planner: str
    task: str  # "segmentation" | "classification"
    dim: int  # dimensionality of the data (2 or 3)
    channel_names: dict[str, str]
    labels: dict[str, Any]  # name -> value, or -> list of values (a region); "ignore": unlabelled voxels
    num_input_channels: int
    num_classes: int  # network outputs: classes, trained labels (not "ignore"), or regions
    original_median_spacing: list[float]
    original_median_shape: list[int]
    intensity_properties: dict[str, dict[str, float]]  # per input channel index (as str)
    configurations: dict[str, ConfigurationPlan]
    recommended_configuration: str
    budget: Budget
    schema_version: int = PLANS_SCHEMA_VERSION
    notes: list[str] = field(default_factory=list)
    # region-based labels: the value each region writes; ``LabelScheme.of(plans)`` reads the labels
    regions_class_order: list[int] | None = None

    # ----------------------------------------------------------------- access
    def configuration(self, name: str | None = None) -> ConfigurationPlan:
        name = name or self.recommended_configuration
        if name not in self.configurations:
            raise PlansError(
                f"configuration {name!r} is not in the plans of {self.dataset_name} "
                f"({', '.join(self.configurations)}); pick one with -c"
            )
        return self.configurations[name]

    # ----------------------------------------------------------------- json
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Plans":
        version = d.get("schema_version")
        if version != PLANS_SCHEMA_VERSION:
            raise PlansError(
                f"plans schema version {version} is not supported (this selfconfig writes "
                f"{PLANS_SCHEMA_VERSION}); rerun selfconfig_plan_and_preprocess"
            )
        return _from_dict(cls, d)

    def save(self, path: str | Path) -> None:
        from selfconfig.utils import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Plans":
        path = Path(path)
        if not path.is_file():
            raise PlansError(f"no plans at {path}; run selfconfig_plan_and_preprocess first")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise PlansError(f"{path} is not valid JSON ({e}); rerun selfconfig_plan_and_preprocess")
        return cls.from_dict(data)


def _from_dict(cls, d):
    """Rebuild a (nested) dataclass from ``asdict`` output, using the field annotations."""
    import typing

    hints = typing.get_type_hints(cls)
    kwargs = {}
    names = {f.name for f in fields(cls)}
    for key, value in d.items():
        if key not in names:
            continue  # tolerate extra keys written by newer minor versions
        kwargs[key] = _convert(hints[key], value)
    return cls(**kwargs)


def _convert(tp, value):
    import typing

    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if is_dataclass(tp):
        return _from_dict(tp, value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        non_none = [a for a in args if a is not type(None)]
        return _convert(non_none[0], value) if len(non_none) == 1 else value
    if origin is dict and len(args) == 2 and is_dataclass(args[1]):
        return {k: _from_dict(args[1], v) for k, v in value.items()}
    return value
