"""Batched nnU-Net augmentation that runs on the training device.

nnU-Net augments one sample at a time in numpy worker processes. Here the whole batch is
augmented at once with torch ops on the device that trains, so worker processes only read and
crop. Every transform still decides per sample (and, where nnU-Net does, per channel) whether
it applies and with which parameters; only the selected samples or channels are gathered and
processed.

Randomness: every decision and parameter is drawn from one CPU :class:`torch.Generator` in a
fixed order and amount per call, whatever was selected, so the same seed gives the same
augmentation and ``state_dict()`` makes a resumed run continue exactly. Per-voxel noise is drawn
on the data's device from a generator seeded by the CPU generator, so no large tensor crosses
from host to device.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from selfconfig.augment import intensity, spatial
from selfconfig.augment.config import AugmentationConfig
from selfconfig.errors import ConfigurationError

logger = logging.getLogger(__name__)

_SEG_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class BatchAugmenter:
    """Apply nnU-Net's default augmentation to a batch ``(B, C, *spatial)`` and its labels.

    Order (as in nnU-Net v2): rotation/scaling, noise, blur, brightness, contrast, low
    resolution, inverted gamma, gamma, mirroring. Labels follow the spatial transforms only.
    The input tensors are never modified; outputs have the same dtype and device. When
    nothing changes a tensor (all draws missed, or only intensity transforms for ``seg``) the
    input object itself is returned, so treat the outputs as read-only or clone them.

    ``patch_size``: the spatial shape of the output. Rotation and scaling then sample the output
    from a larger input (:meth:`input_patch_size`, cropped by the loader workers, as nnU-Net's
    initial patch size), so that no voxel of the output comes from outside the data: a zoom-out
    or a rotation of the final patch itself would pad its borders with zeros labelled background.
    Samples that are not rotated or scaled are centre-cropped. ``None``: the output has the
    input's shape (and rotated or zoomed-out borders are padded).
    """

    def __init__(self, config: AugmentationConfig, generator: torch.Generator | None = None,
                 patch_size: tuple[int, ...] | list[int] | None = None):
        self.config = config
        self.patch_size = tuple(int(p) for p in patch_size) if patch_size is not None else None
        if generator is None:
            # seeded from torch's global generator, so torch.manual_seed() makes runs repeatable
            seed = int(torch.randint(0, 2**62, (1,)).item())
            generator = torch.Generator(device="cpu")
            generator.manual_seed(seed)
        if generator.device.type != "cpu":
            raise ValueError("BatchAugmenter needs a CPU torch.Generator; parameters are drawn "
                             "on the CPU and moved to the data's device")
        self.generator = generator
        logger.debug("batch augmentation: %s", config)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Generator state; store it in the checkpoint so a resumed run augments identically."""
        return {"generator_state": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator_state"].to(torch.uint8).cpu())

    def input_patch_size(self, patch_size: tuple[int, ...] | list[int] | None = None) -> list[int]:
        """The patch the loader must crop so that rotation and scaling into ``patch_size`` (default:
        :attr:`patch_size`) never sample outside it: the bounding box of the output patch under the
        configured rotation range (around every axis, or in-plane only) divided by the smallest
        zoom. Equal to ``patch_size`` when spatial augmentation is off."""
        patch = [int(p) for p in (patch_size if patch_size is not None else self.patch_size)]
        cfg = self.config
        rotating = cfg.spatial_enabled and cfg.p_rotation > 0
        scaling = cfg.spatial_enabled and cfg.p_scaling > 0
        if not rotating and not scaling:
            return patch
        n = len(patch)
        lo, hi = cfg.rotation_range_deg if rotating else (0.0, 0.0)
        grid = torch.linspace(lo, hi, 25 if n == 2 else 9, dtype=torch.float64)
        grid = torch.unique(torch.cat([grid, torch.tensor([0.0, 90.0, -90.0, 180.0, -180.0],
                                                         dtype=torch.float64).clamp(lo, hi)]))
        if n == 2:
            angles = grid.reshape(-1, 1).repeat(1, 3)
        elif cfg.rotation_in_plane_only:
            angles = torch.zeros(len(grid), 3, dtype=torch.float64)
            angles[:, cfg.through_plane_axis] = grid
        else:
            angles = torch.cartesian_prod(grid, grid, grid)
        rot = self._rotations(spatial.degrees_to_radians(angles), n)
        min_scale = min(1.0, cfg.scaling_range[0]) if scaling else 1.0
        return spatial.input_extent(rot, min_scale, tuple(patch))

    # ------------------------------------------------------------------ random helpers
    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, dtype=torch.float64)

    def _uniform(self, bounds: tuple[float, float], *shape: int) -> torch.Tensor:
        low, high = bounds
        return low + (high - low) * self._rand(*shape)

    def _around_one(self, bounds: tuple[float, float], *shape: int) -> torch.Tensor:
        """nnU-Net's factor sampling: half the time below 1, half the time above 1.

        With a range like (0.75, 1.25) or (0.7, 1.5) this keeps shrinking and growing factors
        equally likely even when the range is lopsided around 1.
        """
        low, high = bounds
        pick_low = self._rand(*shape) < 0.5
        u = self._rand(*shape)
        if not low < 1.0 < high:
            return low + (high - low) * u
        return torch.where(pick_low, low + (1.0 - low) * u, 1.0 + (high - 1.0) * u)

    def _chance(self, p: float, *shape: int) -> torch.Tensor:
        return self._rand(*shape) < p

    # ------------------------------------------------------------------ main entry
    @torch.no_grad()
    def __call__(
        self, data: torch.Tensor, seg: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        self._check(data, seg)
        cfg = self.config
        b, c = data.shape[:2]
        input_shape = tuple(data.shape[2:])
        spatial_shape = self.patch_size or input_shape
        n_sp = len(spatial_shape)
        rows = b * c
        cropping = spatial_shape != input_shape

        # ---- all random draws first, in a fixed order and amount (CPU, float64)
        do_rot = self._chance(cfg.p_rotation, b) & cfg.spatial_enabled
        do_scale = self._chance(cfg.p_scaling, b) & cfg.spatial_enabled
        angles = self._uniform(cfg.rotation_range_deg, b, 3)
        scales = self._uniform(cfg.scaling_range, b)
        do_noise = self._chance(cfg.p_noise, b) & cfg.noise_enabled
        noise_std = self._uniform(cfg.noise_std_range, b)
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator).item())
        do_blur = (self._chance(cfg.p_blur, b, 1) & self._chance(cfg.p_blur_per_channel, b, c)
                   & cfg.blur_enabled).reshape(rows)
        blur_sigma = self._uniform(cfg.blur_sigma_range, rows, 3)
        do_bright = (self._chance(cfg.p_brightness, b, 1).expand(b, c).reshape(rows)
                     & cfg.brightness_enabled)
        bright = self._around_one(cfg.brightness_range, rows)
        do_contrast = (self._chance(cfg.p_contrast, b, 1).expand(b, c).reshape(rows)
                       & cfg.contrast_enabled)
        contrast = self._around_one(cfg.contrast_range, rows)
        do_lowres = (self._chance(cfg.p_lowres, b, 1) & self._chance(cfg.p_lowres_per_channel, b, c)
                     & cfg.lowres_enabled).reshape(rows)
        zoom = self._uniform(cfg.lowres_zoom_range, rows)
        do_gamma_inv = (self._chance(cfg.p_gamma_inverted, b, 1).expand(b, c).reshape(rows)
                        & cfg.gamma_enabled)
        gamma_inv = self._around_one(cfg.gamma_range, rows)
        do_gamma = (self._chance(cfg.p_gamma, b, 1).expand(b, c).reshape(rows)
                    & cfg.gamma_enabled)
        gamma = self._around_one(cfg.gamma_range, rows)
        flips = self._chance(cfg.p_mirror_per_axis, b, 3) & cfg.mirror_enabled

        mirror_axes = tuple(cfg.mirror_axes) if cfg.mirror_enabled else ()
        flips = flips[:, : len(mirror_axes)]
        do_spatial = do_rot | do_scale
        touches_data = bool(
            do_spatial.any() or do_noise.any() or do_blur.any() or do_bright.any()
            or do_contrast.any() or do_lowres.any() or do_gamma_inv.any() or do_gamma.any()
            or flips.any()
        )
        if not touches_data and not cropping:
            return data, seg
        source, source_seg = data, seg
        data = spatial.centre_crop(data, spatial_shape).clone(memory_format=torch.contiguous_format)
        if seg is not None and bool(cropping or do_spatial.any() or flips.any()):
            seg = spatial.centre_crop(seg, spatial_shape).clone(memory_format=torch.contiguous_format)

        # ---- spatial: one affine, one resampling from the (larger) input, selected samples only
        if bool(do_spatial.any()):
            angles = torch.where(do_rot.reshape(b, 1), angles, torch.zeros(()))
            scales = torch.where(do_scale, scales, torch.ones(()))
            rot = self._rotations(spatial.degrees_to_radians(angles), n_sp)
            index = torch.nonzero(do_spatial).flatten()
            matrix = spatial.sampling_matrix(rot[index], scales[index], spatial_shape, input_shape)
            spatial.resample_selected(source, source_seg, index, matrix,
                                      border_min=cfg.border_mode_data == "min", out_data=data, out_seg=seg)

        # ---- intensity, on rows = (sample, channel)
        flat = data.view((rows,) + spatial_shape)
        if bool(do_noise.any()):
            gen = torch.Generator(device=data.device)
            gen.manual_seed(noise_seed)
            sel = do_noise.reshape(b, 1).expand(b, c).reshape(rows)
            std = noise_std.reshape(b, 1).expand(b, c).reshape(rows)
            self._apply(flat, sel, lambda r, i: intensity.add_gaussian_noise(r, std[i], gen))
        self._apply(flat, do_blur,
                    lambda r, i: intensity.gaussian_blur(r, blur_sigma[i][:, :n_sp]))
        self._apply(flat, do_bright,
                    lambda r, i: intensity.multiply_brightness(r, bright[i]))
        self._apply(flat, do_contrast,
                    lambda r, i: intensity.adjust_contrast(r, contrast[i]))
        self._apply(flat, do_lowres,
                    lambda r, i: intensity.simulate_low_resolution(
                        r, zoom[i], tuple(cfg.lowres_ignore_axes)))
        self._apply(flat, do_gamma_inv,
                    lambda r, i: intensity.adjust_gamma(r, gamma_inv[i], True,
                                                        cfg.gamma_retain_stats))
        self._apply(flat, do_gamma,
                    lambda r, i: intensity.adjust_gamma(r, gamma[i], False,
                                                        cfg.gamma_retain_stats))

        # ---- mirroring, data and labels together
        if mirror_axes:
            spatial.mirror([data] if seg is None else [data, seg], flips, mirror_axes)
        return data, seg

    # ------------------------------------------------------------------ internals
    def _rotations(self, angles_rad: torch.Tensor, n_spatial: int) -> torch.Tensor:
        if n_spatial == 2:
            return spatial.rotation_matrices(angles_rad[:, 0], 2)
        if self.config.rotation_in_plane_only:
            keep = torch.zeros(3, dtype=torch.float64)
            keep[self.config.through_plane_axis] = 1.0
            angles_rad = angles_rad * keep
        return spatial.rotation_matrices(angles_rad, 3)

    @staticmethod
    def _apply(flat: torch.Tensor, selected: torch.Tensor, fn) -> None:
        """Gather the selected rows, transform them with ``fn(rows, cpu_index)``, write back."""
        if not bool(selected.any()):
            return
        index = torch.nonzero(selected).flatten()
        idx = index.to(flat.device)
        out = fn(flat.index_select(0, idx), index)
        flat.index_copy_(0, idx, out)

    def _check(self, data: torch.Tensor, seg: torch.Tensor | None) -> None:
        if not isinstance(data, torch.Tensor) or not data.is_floating_point():
            kind = getattr(data, "dtype", type(data))
            raise TypeError(f"data must be a floating point tensor, got {kind}")
        if data.ndim not in (4, 5):
            raise ValueError(
                f"data must be (B, C, Y, X) or (B, C, Z, Y, X), got {tuple(data.shape)}"
            )
        n_sp = data.ndim - 2
        for name in ("mirror_axes", "lowres_ignore_axes"):
            axes = getattr(self.config, name)
            if any(a >= n_sp for a in axes):
                raise ConfigurationError(
                    f"augmentation settings: {name}={list(axes)} names an axis that a "
                    f"{n_sp}D batch does not have; use axes below {n_sp} (e.g. from "
                    f"default_augmentation_config({n_sp}))"
                )
        if self.patch_size is not None and (len(self.patch_size) != n_sp or any(
                p > s for p, s in zip(self.patch_size, data.shape[2:]))):
            raise ValueError(f"the output patch {list(self.patch_size)} must fit in the input "
                             f"{list(data.shape[2:])}; crop input_patch_size() in the loader")
        if seg is None:
            return
        if not isinstance(seg, torch.Tensor) or seg.dtype not in _SEG_DTYPES:
            kind = getattr(seg, "dtype", type(seg))
            raise TypeError(f"seg must be an integer tensor (uint8 or int64), got {kind}")
        if (seg.ndim != data.ndim or seg.shape[0] != data.shape[0]
                or seg.shape[2:] != data.shape[2:]):
            raise ValueError(
                f"seg shape {tuple(seg.shape)} does not match data shape {tuple(data.shape)}; "
                "expected (B, 1, *spatial)"
            )
        if seg.device != data.device:
            raise ValueError(f"seg is on {seg.device} but data is on {data.device}")
