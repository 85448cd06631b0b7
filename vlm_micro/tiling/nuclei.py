"""Nucleus detection with scikit-image, region by region at a working resolution.

Steps per region: nuclear channel (grey of the composite for fluorescence, haematoxylin
from colour deconvolution for brightfield), Gaussian smoothing, a threshold that must
pass both a fraction of Otsu's global threshold and a local mean (so touching nuclei
with a dimmer gap come apart), hole filling, a watershed on the distance transform
seeded by its local maxima, and a size filter on the equivalent diameter.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage import color, feature, filters, measure, segmentation

from vlm_micro.tiling.foreground import MIN_CONTRAST, foreground_mask, low_resolution_rgb, signal_threshold
from vlm_micro.tiling.geometry import choose_level
from vlm_micro.tiling.reading import read_box
from vlm_micro.tiling.settings import CellSettings, TileSettings

log = logging.getLogger(__name__)

CELL_COLUMNS = (
    "cell_id", "centroid_y", "centroid_x", "area_px", "area_um2", "mean_intensity", "eccentricity", "tile_id",
)
# The working resolution gives the smallest nucleus about this diameter in pixels.
WORK_MIN_DIAMETER_PX = 8.0
REGION_PX = 1024  # core side of the regions processed one at a time, in working pixels
SINGLE_REGION_PX = 2048  # images up to this side at working resolution are one region
GLOBAL_THRESHOLD_FRACTION = 1.0  # fraction of Otsu's threshold that nuclei must exceed
LOCAL_OFFSET = 3.0  # grey levels above the local mean that nuclei must exceed
HAEMATOXYLIN_FULL_SCALE = 0.3  # optical density of haematoxylin mapped to grey level 255


@dataclass(frozen=True)
class _WorkScale:
    downsample: float  # level-0 pixels per working pixel
    min_diameter: float  # in working pixels
    max_diameter: float
    level: int  # pyramid level read for detection


def detect_nuclei(view, settings, pixel_size_um: float | None) -> pd.DataFrame:
    """Detect nuclei in a view.

    Parameters
    ----------
    view : ImageView
    settings : TileSettings or CellSettings
        Size limits of the nuclei: micrometres when ``pixel_size_um`` is given, pixels
        otherwise.
    pixel_size_um : float or None
        Level-0 pixel size in um/px; None for uncalibrated images.

    Returns
    -------
    cells : DataFrame
        One row per nucleus with columns ``cell_id`` (0, 1, ...), ``centroid_y``,
        ``centroid_x`` (level-0 pixels), ``area_px`` (level-0 pixels), ``area_um2``
        (NaN when uncalibrated), ``mean_intensity`` (nuclear channel in grey levels
        0-255; for brightfield 255 is a haematoxylin optical density of 0.3 or more),
        ``eccentricity`` (0 for a circle) and ``tile_id`` (Int64, NA until tiles are
        placed).

    Notes
    -----
    Images whose working-resolution side exceeds ``SINGLE_REGION_PX`` are processed in
    regions of ``REGION_PX`` working pixels with a margin, and only regions that contain
    foreground in a low-resolution mask, so memory does not grow with the image size.
    A nucleus belongs to the region whose core holds its centroid.
    """
    cell_settings = settings.cells if isinstance(settings, TileSettings) else settings
    if not isinstance(cell_settings, CellSettings):
        raise TypeError(f"settings must be TileSettings or CellSettings, got {type(settings).__name__}")
    scale = _work_scale(view, cell_settings, pixel_size_um)
    work_rows = math.ceil(view.shape[0] / scale.downsample)
    work_cols = math.ceil(view.shape[1] / scale.downsample)

    found = []
    for core, margin in _regions(view, (work_rows, work_cols), scale):
        found.extend(_detect_in_region(view, scale, core, margin))
    cells = _cells_table(found, scale, pixel_size_um)
    log.info("%s: %d nuclei detected at %.2f level-0 px per working px", view.path, len(cells), scale.downsample)
    return cells


def _work_scale(view, cell_settings: CellSettings, pixel_size_um: float | None) -> _WorkScale:
    if pixel_size_um:
        min_diameter = cell_settings.min_diameter_um / pixel_size_um
        max_diameter = cell_settings.max_diameter_um / pixel_size_um
    else:
        min_diameter, max_diameter = cell_settings.min_diameter_px, cell_settings.max_diameter_px
    downsample = max(1.0, min_diameter / WORK_MIN_DIAMETER_PX)
    level = choose_level(view, downsample)
    return _WorkScale(downsample, min_diameter / downsample, max_diameter / downsample, level)


def _regions(view, work_shape: tuple[int, int], scale: _WorkScale):
    """Yield (core, margin) boxes in working pixels: core (y, x, height, width), margin in px."""
    rows, cols = work_shape
    if max(rows, cols) <= SINGLE_REGION_PX:
        yield (0, 0, rows, cols), 0
        return
    margin = int(math.ceil(2 * scale.max_diameter)) + 2
    thumbnail = low_resolution_rgb(view, 1024)
    mask = foreground_mask(thumbnail, view.modality)
    scale_y, scale_x = mask.shape[0] / rows, mask.shape[1] / cols
    for top in range(0, rows, REGION_PX):
        for left in range(0, cols, REGION_PX):
            height, width = min(REGION_PX, rows - top), min(REGION_PX, cols - left)
            window = mask[
                int(top * scale_y) : max(int(top * scale_y) + 1, math.ceil((top + height) * scale_y)),
                int(left * scale_x) : max(int(left * scale_x) + 1, math.ceil((left + width) * scale_x)),
            ]
            if window.any():
                yield (top, left, height, width), margin


def nuclear_channel(rgb: np.ndarray, modality: str) -> np.ndarray:
    """Return the nuclear signal of an RGB uint8 image as float32 grey levels 0-255.

    Fluorescence: the mean over channels (grey of the composite). Brightfield:
    haematoxylin optical density from ``skimage.color.rgb2hed``, with
    ``HAEMATOXYLIN_FULL_SCALE`` mapped to 255.
    """
    if modality == "brightfield":
        haematoxylin = color.rgb2hed(rgb)[..., 0]
        return np.clip(haematoxylin * (255.0 / HAEMATOXYLIN_FULL_SCALE), 0, 255).astype(np.float32)
    return rgb.astype(np.float32).mean(axis=2)


def _detect_in_region(view, scale: _WorkScale, core, margin: int) -> list[dict]:
    top, left, height, width = core
    y0, x0 = top - margin, left - margin
    shape = (height + 2 * margin, width + 2 * margin)
    ds = scale.downsample
    rgb = read_box(
        view, int(round(y0 * ds)), int(round(x0 * ds)), int(round(shape[0] * ds)), int(round(shape[1] * ds)),
        scale.level, shape,
    )
    signal = nuclear_channel(rgb, view.modality)
    labels = segment_nuclei(signal, scale.min_diameter, scale.max_diameter)
    found = []
    for region in measure.regionprops(labels, intensity_image=signal):
        cy, cx = region.centroid
        if not (margin <= cy < margin + height and margin <= cx < margin + width):
            continue
        found.append({
            "centroid_y": (y0 + cy + 0.5) * ds - 0.5,
            "centroid_x": (x0 + cx + 0.5) * ds - 0.5,
            "area_px": float(region.area) * ds * ds,
            "mean_intensity": float(region.intensity_mean),
            "eccentricity": float(region.eccentricity),
        })
    return found


def segment_nuclei(signal: np.ndarray, min_diameter: float, max_diameter: float) -> np.ndarray:
    """Segment nuclei in a nuclear-channel image.

    Parameters
    ----------
    signal : (rows, columns) float ndarray
        Nuclear signal in grey levels 0-255, bright nuclei on a dark background.
    min_diameter, max_diameter : float
        Limits of the equivalent diameter of kept nuclei, in pixels.

    Returns
    -------
    labels : (rows, columns) int32 ndarray
        0 for background, 1.. for nuclei (labels of removed objects are left out).
    """
    smooth = filters.gaussian(signal, sigma=1.0, preserve_range=True)
    low, high = np.percentile(smooth, [1.0, 99.9])
    if high - low < MIN_CONTRAST:
        return np.zeros(signal.shape, dtype=np.int32)

    block_size = max(3, int(round(max_diameter)) | 1)
    local = filters.threshold_local(smooth, block_size=block_size, offset=-LOCAL_OFFSET)
    mask = (smooth > GLOBAL_THRESHOLD_FRACTION * signal_threshold(smooth)) & (smooth > local)
    mask = ndi.binary_fill_holes(mask)

    distance = filters.gaussian(ndi.distance_transform_edt(mask), sigma=1.0)
    min_distance = max(2, int(round(0.6 * min_diameter)))
    peaks = feature.peak_local_max(distance, min_distance=min_distance, labels=measure.label(mask), exclude_border=False)
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    labels = segmentation.watershed(-distance, markers, mask=mask)

    areas = np.bincount(labels.ravel())
    diameters = np.sqrt(4.0 * areas / np.pi)
    keep = (diameters >= min_diameter) & (diameters <= max_diameter)
    keep[0] = False
    return np.where(keep[labels], labels, 0).astype(np.int32)


def _cells_table(found: list[dict], scale: _WorkScale, pixel_size_um: float | None) -> pd.DataFrame:
    cells = pd.DataFrame(found, columns=["centroid_y", "centroid_x", "area_px", "mean_intensity", "eccentricity"])
    cells = cells.astype(float)
    cells.insert(0, "cell_id", np.arange(len(cells), dtype=np.int64))
    area_um2 = cells["area_px"] * pixel_size_um**2 if pixel_size_um else np.nan
    cells.insert(4, "area_um2", area_um2)
    cells["tile_id"] = pd.array([pd.NA] * len(cells), dtype="Int64")
    return cells[list(CELL_COLUMNS)]
