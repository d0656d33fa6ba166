"""Intensity normalisation per channel.

* ``ct``: clip to the dataset's foreground percentiles 0.5 / 99.5, then subtract the foreground
  mean and divide by the foreground std (global statistics from the fingerprint: CT is
  quantitative, so all cases share one transform).
* ``zscore``: per case, subtract the mean and divide by the std (inside the non-zero mask when
  cropping removed a large background).
* ``rgb``: divide by 255 (to 0-1).
* ``none``: unchanged.
"""

from __future__ import annotations

import numpy as np

from selfconfig.errors import PlansError

SCHEMES = ("ct", "zscore", "rgb", "none")


def expand_schemes(file_channel_schemes: list[str], num_channels: int) -> list[str]:
    """One scheme per *data* channel (an RGB file gives three channels)."""
    out: list[str] = []
    for s in file_channel_schemes:
        out += [s] * (3 if s == "rgb" else 1)
    if len(out) != num_channels:
        raise PlansError(f"plans give normalisation for {len(out)} channel(s) but the image has {num_channels}")
    return out


def normalize(image: np.ndarray, schemes: list[str], intensity_properties: dict[str, dict[str, float]],
              mask: np.ndarray | None = None) -> np.ndarray:
    """Normalise ``image`` (C, Z, Y, X) channel by channel; returns float32."""
    out = np.empty(image.shape, dtype=np.float32)
    per_channel = expand_schemes(schemes, image.shape[0])
    for c, scheme in enumerate(per_channel):
        x = image[c].astype(np.float32, copy=False)
        if scheme == "ct":
            p = intensity_properties[str(c)]
            lo, hi = p["percentile_00_5"], p["percentile_99_5"]
            out[c] = (np.clip(x, lo, hi) - p["mean"]) / max(p["std"], 1e-8)
        elif scheme == "zscore":
            region = x[mask] if mask is not None and mask.any() else x
            mean, std = float(region.mean()), float(region.std())
            y = (x - mean) / max(std, 1e-8)
            if mask is not None and mask.any():
                y[~mask] = 0.0
            out[c] = y
        elif scheme == "rgb":
            out[c] = x / 255.0
        elif scheme == "none":
            out[c] = x
        else:
            raise PlansError(f"unknown normalisation scheme {scheme!r}; expected one of {SCHEMES}")
    return out
