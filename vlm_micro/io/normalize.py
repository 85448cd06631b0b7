"""Intensity normalisation and the channel composite that make RGB uint8 planes.

Raw planes are (rows, columns, channels) arrays of any dtype. Each channel maps its
low percentile to 0 and its high percentile to 1 (NaN to 0), then the channels are
coloured and added into RGB. Percentiles come from a low-resolution sample of the
whole plane, computed once per view, so every tile of a view is scaled alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

RENDER_MODES = ("rgb", "rgb-normalised", "composite")

# Percentiles are computed on at most this many values per channel (a regular
# subsample of the low-resolution plane) to bound their cost.
_MAX_PERCENTILE_VALUES = 1 << 20


def _work_dtype(dtype: np.dtype) -> type:
    # float32 keeps 24 bits of mantissa, too few for 32- and 64-bit integers and float64.
    dtype = np.dtype(dtype)
    if dtype.itemsize >= 4 and dtype.kind in "iu" or dtype == np.float64:
        return np.float64
    return np.float32


def _finite_values(values: np.ndarray) -> np.ndarray:
    values = values.ravel()
    if values.size > _MAX_PERCENTILE_VALUES:
        values = values[:: -(-values.size // _MAX_PERCENTILE_VALUES)]
    if values.dtype.kind in "fc":
        values = values[np.isfinite(values)]
    return values


def _limits_of(values: np.ndarray, percentiles: Sequence[float]) -> tuple[float, float]:
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if high <= low:
        # Sparse signal, such as a few spots above a flat background, can put both
        # percentiles on the background. The full range then keeps the signal visible.
        low, high = float(values.min()), float(values.max())
    return low, high


def intensity_limits(sample: np.ndarray, percentiles: Sequence[float], joint: bool = False) -> np.ndarray:
    """Compute the (low, high) intensity of each channel from a sample plane.

    Parameters
    ----------
    sample : (rows, columns, C) ndarray
        Low-resolution raw plane of any numeric dtype; NaN and infinite values are
        ignored.
    percentiles : (low, high) floats in 0..100
    joint : bool
        Use the values of all channels for one shared (low, high), which keeps the
        colour balance of RGB data.

    Returns
    -------
    limits : (C, 2) float64 ndarray
        ``limits[c] = (low, high)``; ``high == low`` for a constant channel.
    """
    sample = np.asarray(sample)
    channels = sample.shape[-1]
    if joint:
        low, high = _limits_of(_finite_values(sample), percentiles)
        return np.tile(np.array([low, high], dtype=np.float64), (channels, 1))
    limits = np.empty((channels, 2), dtype=np.float64)
    for channel in range(channels):
        limits[channel] = _limits_of(_finite_values(sample[..., channel]), percentiles)
    return limits


def normalize(raw: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Map each channel from (low, high) to 0..1, clipping outside; NaN becomes 0.

    Parameters
    ----------
    raw : (rows, columns, C) ndarray
    limits : (C, 2) ndarray from :func:`intensity_limits`

    Returns
    -------
    normalized : (rows, columns, C) float32 ndarray in 0..1
        A constant channel (``high == low``) maps to 0.
    """
    work = _work_dtype(raw.dtype)
    low = limits[:, 0].astype(work)
    span = limits[:, 1] - limits[:, 0]
    # An infinite span maps a constant channel to 0 without dividing by zero.
    span = np.where(span > 0, span, np.inf).astype(work)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        out = (raw.astype(work, copy=False) - low) / span
    np.clip(out, 0.0, 1.0, out=out)
    out = out.astype(np.float32, copy=False)
    np.nan_to_num(out, copy=False, nan=0.0)
    return out


def composite(normalized: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Colour and add normalised channels into RGB uint8.

    Parameters
    ----------
    normalized : (rows, columns, C) float ndarray in 0..1
    colors : (C, 3) float ndarray in 0..1
        RGB colour of each channel.

    Returns
    -------
    rgb : (rows, columns, 3) uint8 ndarray
        The sum of the coloured channels, clipped at full intensity.
    """
    rgb = normalized @ np.asarray(colors, dtype=np.float32)
    return _to_uint8(rgb * 255.0)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(values, nan=0.0)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


@dataclass
class Renderer:
    """Turns raw (rows, columns, C) planes of one view into RGB uint8.

    Attributes
    ----------
    mode : str
        ``"rgb"``: uint8 RGB(A) data passed through, alpha dropped.
        ``"rgb-normalised"``: RGB(A) data of another dtype, scaled by one (low, high)
        shared by the three colour channels.
        ``"composite"``: each channel normalised, coloured and added.
    limits : (C, 2) ndarray or None
        Intensity limits; None in ``"rgb"`` mode.
    colors : (C, 3) ndarray or None
        Channel colours; None outside ``"composite"`` mode.
    invert : bool
        Map high values to dark (TIFF MinIsWhite data) in ``"composite"`` mode.
    """

    mode: str
    limits: np.ndarray | None = None
    colors: np.ndarray | None = None
    invert: bool = False

    def render(self, raw: np.ndarray) -> np.ndarray:
        """Render a raw (rows, columns, C) plane as (rows, columns, 3) uint8."""
        if self.mode == "rgb":
            rgb = raw if raw.shape[-1] == 3 else raw[..., :3]
            return rgb if rgb.dtype == np.uint8 else _to_uint8(rgb)
        if self.mode == "rgb-normalised":
            return _to_uint8(normalize(raw[..., :3], self.limits[:3]) * 255.0)
        normalized = normalize(raw, self.limits)
        if self.invert:
            normalized = 1.0 - normalized
        return composite(normalized, self.colors)

    def describe(self) -> dict:
        """Return the rendering as a JSON-able dict for the plane record."""
        info = {"rendering": self.mode}
        if self.invert:
            info["inverted"] = True
        if self.limits is not None:
            info["intensity_limits"] = [[float(low), float(high)] for low, high in self.limits]
        return info


def make_renderer(mode: str, sample: np.ndarray, percentiles: Sequence[float], colors=None,
                  invert: bool = False) -> Renderer:
    """Build a Renderer whose limits come from a raw (rows, columns, C) sample plane."""
    if mode not in RENDER_MODES:
        raise ValueError(f"unknown rendering mode {mode!r}")
    if mode == "rgb":
        return Renderer(mode)
    if mode == "rgb-normalised":
        return Renderer(mode, intensity_limits(sample[..., :3], percentiles, joint=True))
    colors = np.asarray(colors, dtype=np.float32).reshape(-1, 3)
    if len(colors) != sample.shape[-1]:
        raise ValueError(f"{len(colors)} colours for {sample.shape[-1]} channels")
    return Renderer(mode, intensity_limits(sample, percentiles), colors, invert)
