"""Foreground detection on a low-resolution view of an image."""

from __future__ import annotations

import logging
import math

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import filters

from vlm_micro.tiling.geometry import choose_level

log = logging.getLogger(__name__)

# A pyramid level with at most this many pixels is read in one piece for the
# low-resolution view; larger levels are read block by block.
MAX_WHOLE_LEVEL_PIXELS = 4096 * 4096
BLOCK_PX = 2048  # side of the blocks read from larger levels, in level pixels

# Minimum contrast, in grey levels 0-255, between foreground and background. Below it
# the image counts as empty, so a blank field does not get half its noise as foreground.
MIN_CONTRAST = 10.0
MIN_TISSUE_SATURATION = 0.1  # HSV saturation that marks stained tissue in brightfield
# Above this fraction of pixels over the triangle threshold, the background is not the
# main histogram peak (confluent cells), and Otsu's threshold is used instead.
DENSE_FRACTION = 0.6


def low_resolution_rgb(view, max_side: int) -> np.ndarray:
    """Return the whole view as RGB uint8 with its longer side at most ``max_side``.

    Reads the coarsest pyramid level that is fine enough, in blocks when that level is
    large, so memory stays bounded whatever the image size. A pyramid level whose
    longer side lies between ``max_side / 2`` and ``max_side`` is returned as it is.
    Slide pyramids often shrink by 4 per level, so the finer level would decode 16
    times the pixels (about 0.1 s of a 10,000 px slide's tiling) for a foreground mask.

    Returns
    -------
    rgb : (rows, columns, 3) uint8 ndarray
        That pyramid level, or the level-0 shape divided by one factor on both axes,
        rounded.
    """
    rows, cols = view.shape
    downsample = max(1.0, max(rows, cols) / max_side)
    for index, level in enumerate(view.levels):
        if index and max_side / 2 <= max(level.shape) <= max_side:
            return view.read_region(0, 0, *level.shape, index)
    out_shape = (max(1, round(rows / downsample)), max(1, round(cols / downsample)))
    level = choose_level(view, downsample)
    level_rows, level_cols = view.levels[level].shape
    if level_rows * level_cols <= MAX_WHOLE_LEVEL_PIXELS:
        image = view.read_region(0, 0, level_rows, level_cols, level)
    else:
        factor = max(1, int(downsample / view.levels[level].downsample))
        image = _read_level_reduced(view, level, factor)
    return _resize(image, out_shape)


def _read_level_reduced(view, level: int, factor: int) -> np.ndarray:
    """Read a whole level block by block, shrinking each block by the block mean."""
    level_rows, level_cols = view.levels[level].shape
    block = factor * max(1, BLOCK_PX // factor)
    out = np.empty((math.ceil(level_rows / factor), math.ceil(level_cols / factor), 3), dtype=np.uint8)
    for top in range(0, level_rows, block):
        height = min(block, level_rows - top)
        for left in range(0, level_cols, block):
            width = min(block, level_cols - left)
            region = Image.fromarray(view.read_region(top, left, height, width, level))
            reduced = np.asarray(region.reduce(factor)) if factor > 1 else np.asarray(region)
            out_top, out_left = top // factor, left // factor
            out[out_top : out_top + reduced.shape[0], out_left : out_left + reduced.shape[1]] = reduced
    return out


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize by area averaging (Pillow's box filter), the block mean for integer factors."""
    if image.shape[:2] == tuple(shape):
        return image
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((shape[1], shape[0]), Image.Resampling.BOX)
    return np.asarray(resized)


def foreground_mask(rgb: np.ndarray, modality: str) -> np.ndarray:
    """Detect cells or tissue in a low-resolution RGB uint8 image.

    Parameters
    ----------
    rgb : (rows, columns, 3) uint8 ndarray
    modality : str
        ``"fluorescence"``: foreground is brighter than the dark background, found by
        :func:`signal_threshold` on the maximum over channels. ``"brightfield"``:
        foreground is darker than the bright background (Otsu's threshold on grey) or
        stained (HSV saturation above ``MIN_TISSUE_SATURATION``).

    Returns
    -------
    mask : (rows, columns) bool ndarray
        All False when the image has less than ``MIN_CONTRAST`` grey levels of contrast.
    """
    if modality == "brightfield":
        return _brightfield_mask(rgb)
    return _fluorescence_mask(rgb)


def _fluorescence_mask(rgb: np.ndarray) -> np.ndarray:
    brightest = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    signal = ndi.gaussian_filter(brightest.astype(np.float32), sigma=1.0)
    low, high = np.percentile(signal, [1.0, 99.9])
    if high - low < MIN_CONTRAST:
        return np.zeros(signal.shape, dtype=bool)
    threshold = max(signal_threshold(signal), low + MIN_CONTRAST)
    return signal > threshold


def signal_threshold(signal: np.ndarray) -> float:
    """Return a threshold between a dark background and brighter objects.

    Uses the triangle method, which finds the foot of the background peak and so
    ignores a few very bright objects that would pull Otsu's threshold above dimmer
    ones. When the background is not the main peak (more than ``DENSE_FRACTION`` of
    the pixels above the threshold), Otsu's method is used instead.
    """
    threshold = float(filters.threshold_triangle(signal))
    if (signal > threshold).mean() > DENSE_FRACTION:
        threshold = float(filters.threshold_otsu(signal))
    return threshold


def _brightfield_mask(rgb: np.ndarray) -> np.ndarray:
    red, green, blue = (rgb[..., k].astype(np.float32) for k in range(3))
    grey = ndi.gaussian_filter((red + green + blue) / 3.0, sigma=1.0)
    brightest = np.maximum(np.maximum(red, green), blue)
    darkest = np.minimum(np.minimum(red, green), blue)
    saturation = ndi.gaussian_filter((brightest - darkest) / np.maximum(brightest, 1.0), sigma=1.0)

    background = float(np.percentile(grey, 99.0))
    dark = np.zeros(grey.shape, dtype=bool)
    if background - float(np.percentile(grey, 1.0)) >= MIN_CONTRAST:
        threshold = min(filters.threshold_otsu(grey), background - MIN_CONTRAST)
        dark = grey < threshold
    stained = saturation > MIN_TISSUE_SATURATION
    mask = dark | stained
    min_size = max(4, mask.size // 20000)
    mask = remove_small_components(mask, min_size)
    return ndi.binary_fill_holes(mask)


def remove_small_components(mask: np.ndarray, max_size: int) -> np.ndarray:
    """Return ``mask`` without its 4-connected components of ``max_size`` pixels or fewer."""
    labels, count = ndi.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes > max_size
    keep[0] = False
    return keep[labels]


def box_fractions(mask: np.ndarray, boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Compute the fraction of each box covered by a low-resolution mask.

    Parameters
    ----------
    mask : (mask_rows, mask_columns) bool ndarray
        Mask of the whole image at low resolution.
    boxes : (n, 4) int ndarray
        (y, x, height, width) in level-0 pixels; parts outside the image count as
        background.
    shape : (rows, columns)
        Level-0 shape of the image.

    Returns
    -------
    fractions : (n,) float64 ndarray
        Values in [0, 1]. A box smaller than one mask pixel takes the value of the mask
        pixels it touches.
    """
    if len(boxes) == 0:
        return np.zeros(0)
    mask_rows, mask_cols = mask.shape
    scale_y, scale_x = mask_rows / shape[0], mask_cols / shape[1]
    integral = np.zeros((mask_rows + 1, mask_cols + 1), dtype=np.int64)
    integral[1:, 1:] = mask.astype(np.int64).cumsum(axis=0).cumsum(axis=1)

    y, x, height, width = (boxes[:, k].astype(np.float64) for k in range(4))
    top = np.clip(np.floor(y * scale_y), 0, mask_rows).astype(np.int64)
    bottom = np.clip(np.ceil((y + height) * scale_y), 0, mask_rows).astype(np.int64)
    left = np.clip(np.floor(x * scale_x), 0, mask_cols).astype(np.int64)
    right = np.clip(np.ceil((x + width) * scale_x), 0, mask_cols).astype(np.int64)
    covered = integral[bottom, right] - integral[top, right] - integral[bottom, left] + integral[top, left]
    box_area = np.maximum(height * scale_y * width * scale_x, (bottom - top) * (right - left))
    return np.clip(covered / np.maximum(box_area, 1e-12), 0.0, 1.0)
