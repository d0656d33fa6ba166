"""Settings of the batched augmentation pipeline (nnU-Net's default augmentation).

The settings are a dataclass of JSON-native types so a trainer can save them next to its other
hyperparameters and a resumed or reproduced run uses exactly the same augmentation.
Probabilities are per sample (``p_*``) and, where nnU-Net does so, additionally per channel
(``p_*_per_channel``). Spatial axes are counted without batch and channel axes: for a 3D batch
``(B, C, Z, Y, X)`` axis 0 is ``Z``; for a 2D batch ``(B, C, Y, X)`` axis 0 is ``Y``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from selfconfig.errors import ConfigurationError

# fields that hold a (low, high) range
_RANGE_FIELDS = (
    "rotation_range_deg",
    "scaling_range",
    "noise_std_range",
    "blur_sigma_range",
    "brightness_range",
    "contrast_range",
    "lowres_zoom_range",
    "gamma_range",
)
# fields that hold a tuple of spatial axis indices
_AXES_FIELDS = ("mirror_axes", "lowres_ignore_axes")
_BORDER_MODES = ("zeros", "min")


@dataclass
class AugmentationConfig:
    """What to augment and how strongly; defaults follow nnU-Net v2 for 3D isotropic patches.

    Spatial: one rotation + scaling affine per selected sample. ``rotation_range_deg`` applies to
    the rotation around every spatial axis (3D) or the single in-plane rotation (2D); with
    ``rotation_in_plane_only`` a 3D sample is rotated only around ``through_plane_axis`` (the
    low-resolution axis of anisotropic data). ``scaling_range`` is the zoom of the image content
    (> 1 makes structures larger). ``border_mode_data`` fills voxels that come from outside the
    patch with 0 (``"zeros"``) or with the sample's channel minimum (``"min"``); labels get 0.

    Intensity: ``noise_std_range`` is the standard deviation of the added Gaussian noise (nnU-Net
    calls this parameter ``noise_variance`` but uses it as the standard deviation).
    ``lowres_zoom_range`` is the size of the simulated low-resolution grid relative to the patch
    (0.5 = downsample by 2). Gamma runs twice, as in nnU-Net: once on the inverted image
    (``p_gamma_inverted``) and once on the image (``p_gamma``).
    """

    # spatial: rotation and scaling, one resampling
    spatial_enabled: bool = True
    p_rotation: float = 0.2
    rotation_range_deg: tuple[float, float] = (-30.0, 30.0)
    rotation_in_plane_only: bool = False
    through_plane_axis: int = 0
    p_scaling: float = 0.2
    scaling_range: tuple[float, float] = (0.7, 1.4)
    border_mode_data: str = "zeros"
    # additive Gaussian noise
    noise_enabled: bool = True
    p_noise: float = 0.1
    noise_std_range: tuple[float, float] = (0.0, 0.1)
    # Gaussian blur
    blur_enabled: bool = True
    p_blur: float = 0.2
    p_blur_per_channel: float = 0.5
    blur_sigma_range: tuple[float, float] = (0.5, 1.0)
    # multiplicative brightness
    brightness_enabled: bool = True
    p_brightness: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    # contrast around the mean, clipped to the original range
    contrast_enabled: bool = True
    p_contrast: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    # low-resolution simulation (nearest down, linear up)
    lowres_enabled: bool = True
    p_lowres: float = 0.25
    p_lowres_per_channel: float = 0.5
    lowres_zoom_range: tuple[float, float] = (0.5, 1.0)
    lowres_ignore_axes: tuple[int, ...] = ()
    # gamma, range preserving
    gamma_enabled: bool = True
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    gamma_retain_stats: bool = True
    # mirroring, per axis
    mirror_enabled: bool = True
    p_mirror_per_axis: float = 0.5
    mirror_axes: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        # accept lists (JSON) and normalise to tuples so equality and hashing behave
        for name in _RANGE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                setattr(self, name, tuple(float(v) for v in value))
        for name in _AXES_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                setattr(self, name, tuple(int(v) for v in value))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigurationError` naming the first bad field and how to fix it."""
        where = "augmentation settings (trainer hyperparameters, field 'augmentation')"
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_"):
                if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                    raise ConfigurationError(
                        f"{where}: {f.name} must be a probability in [0, 1], got {value!r}; "
                        "fix the value"
                    )
            elif f.name.endswith("_enabled") or f.name in ("rotation_in_plane_only",
                                                            "gamma_retain_stats"):
                if not isinstance(value, bool):
                    raise ConfigurationError(
                        f"{where}: {f.name} must be true or false, got {value!r}"
                    )
        for name in _RANGE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != 2 or value[0] > value[1]:
                raise ConfigurationError(
                    f"{where}: {name} must be a [low, high] pair with low <= high, got {value!r}"
                )
        positive = ("scaling_range", "lowres_zoom_range", "gamma_range", "brightness_range",
                    "contrast_range")
        for name in positive:
            if getattr(self, name)[0] <= 0:
                raise ConfigurationError(
                    f"{where}: {name} must be positive, got {getattr(self, name)!r}"
                )
        if self.noise_std_range[0] < 0 or self.blur_sigma_range[0] < 0:
            raise ConfigurationError(
                f"{where}: noise_std_range and blur_sigma_range must not be negative"
            )
        if self.lowres_zoom_range[1] > 1:
            raise ConfigurationError(
                f"{where}: lowres_zoom_range must lie in (0, 1], got {self.lowres_zoom_range!r}"
            )
        for name in _AXES_FIELDS:
            value = getattr(self, name)
            if (not isinstance(value, tuple) or any(a < 0 or a > 2 for a in value)
                    or len(set(value)) != len(value)):
                raise ConfigurationError(
                    f"{where}: {name} must list distinct spatial axes 0, 1 or 2, got {value!r}"
                )
        if self.through_plane_axis not in (0, 1, 2):
            raise ConfigurationError(
                f"{where}: through_plane_axis must be 0, 1 or 2, got {self.through_plane_axis!r}"
            )
        if self.border_mode_data not in _BORDER_MODES:
            raise ConfigurationError(
                f"{where}: border_mode_data must be one of {_BORDER_MODES}, "
                f"got {self.border_mode_data!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        for name in _RANGE_FIELDS + _AXES_FIELDS:
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AugmentationConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error so typos do not pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigurationError(
                f"augmentation settings: unknown field(s) {unknown}; known fields are "
                f"{sorted(known)}"
            )
        return cls(**d)

    def all_disabled(self) -> "AugmentationConfig":
        """A copy with every transform switched off (validation, debugging)."""
        d = self.to_dict()
        for name in d:
            if name.endswith("_enabled"):
                d[name] = False
        return AugmentationConfig.from_dict(d)


def default_augmentation_config(dim: int, anisotropic: bool = False) -> AugmentationConfig:
    """nnU-Net-like defaults for 2D or 3D patches.

    2D: in-plane rotation of +-180 degrees, mirroring of both axes. 3D: +-30 degrees around every
    axis. 3D ``anisotropic`` (nnU-Net's "dummy 2D" augmentation for patches whose axis 0 is much
    coarser): rotate only in-plane (around axis 0) by +-180 degrees and do not simulate low
    resolution along axis 0.
    """
    if dim not in (2, 3):
        raise ConfigurationError(f"augmentation: dim must be 2 or 3, got {dim!r}")
    if dim == 2:
        return AugmentationConfig(rotation_range_deg=(-180.0, 180.0), mirror_axes=(0, 1))
    if anisotropic:
        return AugmentationConfig(
            rotation_range_deg=(-180.0, 180.0),
            rotation_in_plane_only=True,
            through_plane_axis=0,
            lowres_ignore_axes=(0,),
            mirror_axes=(0, 1, 2),
        )
    return AugmentationConfig(rotation_range_deg=(-30.0, 30.0), mirror_axes=(0, 1, 2))
