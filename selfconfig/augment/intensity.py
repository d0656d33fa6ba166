"""Intensity transforms on rows of a batch.

A *row* is one channel of one sample: the batch ``(B, C, *spatial)`` viewed as
``(B * C, *spatial)``. Every function here receives only the selected rows (already gathered) and
per-row parameters as tensors on the rows' device, and returns the transformed rows. Nothing
here loops over samples; label maps never come here.
"""

from __future__ import annotations

import math

import torch

_EPS = 1e-7


def _per_row(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Reshape a (N,) parameter so it broadcasts over the spatial axes of (N, *spatial) rows."""
    return values.to(device=rows.device, dtype=rows.dtype).reshape(
        (-1,) + (1,) * (rows.ndim - 1)
    )


def _mean_std(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row mean and (unbiased) std of (N, M) rows; two plain passes, much faster on CPU
    than ``torch.std`` for a few long rows."""
    mean = flat.mean(dim=1, keepdim=True)
    centred = flat - mean
    var = (centred * centred).sum(dim=1, keepdim=True) / max(flat.shape[1] - 1, 1)
    return mean, var.sqrt()


def add_gaussian_noise(
    rows: torch.Tensor, std: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """rows + N(0, std^2); ``generator`` lives on the rows' device."""
    noise = torch.randn(rows.shape, generator=generator, device=rows.device, dtype=rows.dtype)
    return rows.add_(noise.mul_(_per_row(std, rows)))


def gaussian_blur(rows: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a different sigma per row and per axis.

    ``sigma`` is (N, n_spatial). Borders are mirrored (scipy's ``reflect``). The kernel radius
    is 3 sigma of the widest kernel in the call; narrower kernels are zero-padded to that size,
    which lets every row share one shifted-sum pass per axis.
    """
    n = rows.shape[0]
    for axis in range(rows.ndim - 1):
        s = sigma[:, axis].to(torch.float64)
        radius = max(1, int(math.ceil(3.0 * float(s.max()))))
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
        weights = torch.exp(-0.5 * (offsets.reshape(1, -1) / s.clamp_min(1e-3).reshape(-1, 1)) ** 2)
        weights = weights / weights.sum(1, keepdim=True)
        weights = weights.to(device=rows.device, dtype=rows.dtype)
        dim = axis + 1
        size = rows.shape[dim]
        padded = rows.index_select(dim, _reflect_index(size, radius).to(rows.device))
        out = torch.zeros_like(rows)
        shape = [n] + [1] * (rows.ndim - 1)
        for k in range(2 * radius + 1):
            out.add_(padded.narrow(dim, k, size) * weights[:, k].reshape(shape))
        rows = out
    return rows


def _reflect_index(size: int, radius: int) -> torch.Tensor:
    """Indices of a symmetric (d c b a | a b c d | d c b a) padding by ``radius`` on each side."""
    idx = torch.arange(-radius, size + radius) % (2 * size)
    return torch.where(idx >= size, 2 * size - 1 - idx, idx)


def multiply_brightness(rows: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return rows.mul_(_per_row(factor, rows))


def adjust_contrast(rows: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale the deviation from the row mean by ``factor``, then clip to the row's old range."""
    flat = rows.reshape(rows.shape[0], -1)
    mean = flat.mean(dim=1, keepdim=True)
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    flat = flat.sub_(mean).mul_(_per_row(factor, flat)).add_(mean)
    return torch.maximum(torch.minimum(flat, high), low).reshape(rows.shape)


def simulate_low_resolution(
    rows: torch.Tensor, zoom: torch.Tensor, ignore_axes: tuple[int, ...] = ()
) -> torch.Tensor:
    """Nearest downsampling to ``round(size * zoom)`` then linear upsampling back, per row.

    Equivalent to ``F.interpolate(mode='nearest-exact')`` followed by
    ``F.interpolate(mode='linear'/'bilinear'/'trilinear', align_corners=False)`` for every row on
    its own, but batched: linear interpolation is separable, so each axis is two gathers and a
    lerp with per-row indices and weights.
    """
    n = rows.shape[0]
    zoom = zoom.to(torch.float64)
    for axis in range(rows.ndim - 1):
        if axis in ignore_axes:
            continue
        dim = axis + 1
        size = rows.shape[dim]
        small = torch.clamp(torch.round(zoom * size), min=1).reshape(n, 1)  # (N, 1)
        if bool((small == size).all()):
            continue
        out_pos = torch.arange(size, dtype=torch.float64).reshape(1, size)
        # linear upsampling small -> size (align_corners=False): position on the small grid
        pos = ((out_pos + 0.5) * small / size - 0.5).clamp_min(0.0)
        lo = pos.floor()
        w = pos - lo
        hi = torch.minimum(lo + 1, small - 1)
        # nearest-exact downsampling size -> small: small index j reads floor((j+.5)*size/small)
        src_lo = ((lo + 0.5) * size / small).floor().clamp(max=size - 1).long()
        src_hi = ((hi + 0.5) * size / small).floor().clamp(max=size - 1).long()
        view = [n] + [1] * (rows.ndim - 1)
        view[dim] = size
        a = rows.gather(dim, src_lo.to(rows.device).reshape(view).expand(rows.shape))
        b = rows.gather(dim, src_hi.to(rows.device).reshape(view).expand(rows.shape))
        rows = torch.lerp(a, b, w.to(device=rows.device, dtype=rows.dtype).reshape(view))
    return rows


def adjust_gamma(
    rows: torch.Tensor, gamma: torch.Tensor, invert: bool, retain_stats: bool
) -> torch.Tensor:
    """Range-preserving gamma: rescale each row to [0, 1], raise to ``gamma``, rescale back.

    ``invert`` applies it to the negated image (brightens dark regions instead of bright ones).
    ``retain_stats`` restores each row's mean and standard deviation afterwards, as nnU-Net does.
    """
    shape = rows.shape
    flat = rows.reshape(shape[0], -1)
    if invert:
        flat = flat.neg_()
    if retain_stats:
        mean, std = _mean_std(flat)
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    span = high - low + _EPS
    flat = flat.sub_(low).div_(span).pow_(_per_row(gamma, flat)).mul_(span).add_(low)
    if retain_stats:
        new_mean, new_std = _mean_std(flat)
        flat = flat.sub_(new_mean).mul_(std / (new_std + 1e-8)).add_(mean)
    if invert:
        flat = flat.neg_()
    return flat.reshape(shape)
