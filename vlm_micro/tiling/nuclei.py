"""Nucleus detection with scikit-image, region by region at a working resolution.

Steps per region:

1. nuclear channel: grey of the composite for fluorescence, haematoxylin from colour
   deconvolution for brightfield;
2. Gaussian smoothing, then a mask of pixels above both one global threshold for the
   image (see ``signal_threshold``) and the local mean plus ``LOCAL_OFFSET``, so
   touching nuclei with a dimmer gap come apart;
3. hole filling, then a watershed on the smoothed distance transform, seeded by its
   local maxima;
4. a size filter on the equivalent diameter.
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
THRESHOLD_SAMPLES = 8  # regions read to set the global threshold of a large image
LOCAL_OFFSET = 3.0  # grey levels above the local mean that nuclei must exceed
HAEMATOXYLIN_FULL_SCALE = 0.3  # optical density of haematoxylin mapped to grey level 255


@dataclass(frozen=True)
class _WorkScale:
    downsample: float  # level-0 pixels per working pixel
    min_diameter: float  # in working pixels
    max_diameter: float
    level: int  # pyramid level read for detection


def detect_nuclei(
    view, settings, pixel_size_um: float | None, *, foreground: np.ndarray | None = None
) -> pd.DataFrame:
    """Detect nuclei in a view.

    Parameters
    ----------
    view : ImageView
    settings : TileSettings or CellSettings
        Size limits of the nuclei: micrometres when ``pixel_size_um`` is given, pixels
        otherwise.
    pixel_size_um : float or None
        Level-0 pixel size in um/px; None for uncalibrated images.
    foreground : (rows, columns) bool ndarray, optional
        Low-resolution foreground mask of the whole view (see :func:`foreground_mask`),
        used to skip empty regions of large images. When None, it is computed from the
        view if the image is large enough to need it.

    Returns
    -------
    cells : DataFrame
        One row per nucleus, with the columns of ``CELL_COLUMNS``:

        - ``cell_id``: 0, 1, ...
        - ``centroid_y``, ``centroid_x``, ``area_px``: level-0 pixels
        - ``area_um2``: NaN when uncalibrated
        - ``mean_intensity``: nuclear channel in grey levels 0-255. For brightfield,
          255 is a haematoxylin optical density of 0.3 or more.
        - ``eccentricity``: 0 for a circle
        - ``tile_id``: Int64, NA until tiles are placed

    Notes
    -----
    Images whose working-resolution side exceeds ``SINGLE_REGION_PX`` are processed in
    regions of ``REGION_PX`` working pixels with a margin, and only regions that contain
    foreground in a low-resolution mask, so memory does not grow with the image size.
    A nucleus belongs to the region whose core contains its centroid.
    """
    cell_settings = settings.cells if isinstance(settings, TileSettings) else settings
    if not isinstance(cell_settings, CellSettings):
        raise TypeError(f"settings must be TileSettings or CellSettings, got {type(settings).__name__}")
    scale = _work_scale(view, cell_settings, pixel_size_um)
    work_rows = math.ceil(view.shape[0] / scale.downsample)
    work_cols = math.ceil(view.shape[1] / scale.downsample)

    regions = list(_regions(view, (work_rows, work_cols), scale, foreground))
    threshold = _global_threshold(view, scale, [core for core, _ in regions])
    found = []
    for core, margin in regions if threshold is not None else []:
        found.extend(_detect_in_region(view, scale, core, margin, threshold))
    cells = _cells_table(found, pixel_size_um)
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


def _regions(view, work_shape: tuple[int, int], scale: _WorkScale, mask: np.ndarray | None):
    """Yield (core, margin) boxes in working pixels: core (y, x, height, width), margin in px."""
    rows, cols = work_shape
    if max(rows, cols) <= SINGLE_REGION_PX:
        yield (0, 0, rows, cols), 0
        return
    margin = int(math.ceil(2 * scale.max_diameter)) + 2
    if mask is None:
        mask = foreground_mask(low_resolution_rgb(view, 1024), view.modality)
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
    channels = rgb.astype(np.float32)
    return (channels[..., 0] + channels[..., 1] + channels[..., 2]) / 3.0


def _read_signal(view, scale: _WorkScale, box) -> np.ndarray:
    """Read a (y, x, height, width) box of working pixels as the nuclear channel."""
    y, x, height, width = box
    ds = scale.downsample
    rgb = read_box(
        view, int(round(y * ds)), int(round(x * ds)), int(round(height * ds)), int(round(width * ds)),
        scale.level, (height, width),
    )
    return nuclear_channel(rgb, view.modality)


def _global_threshold(view, scale: _WorkScale, cores: list) -> float | None:
    """Compute one nucleus threshold for the whole image, from up to ``THRESHOLD_SAMPLES`` regions.

    One threshold keeps detection consistent across regions. Returns None when there
    is no region or the sampled signal has less than ``MIN_CONTRAST`` of contrast.
    """
    if not cores:
        return None
    picks = np.unique(np.linspace(0, len(cores) - 1, min(THRESHOLD_SAMPLES, len(cores))).round().astype(int))
    samples = [ndi.gaussian_filter(_read_signal(view, scale, cores[k]), sigma=1.0).ravel() for k in picks]
    pooled = np.concatenate(samples)
    low, high = np.percentile(pooled, [1.0, 99.9])
    if high - low < MIN_CONTRAST:
        return None
    return signal_threshold(pooled)


def _detect_in_region(view, scale: _WorkScale, core, margin: int, threshold: float | None) -> list[dict]:
    top, left, height, width = core
    y0, x0 = top - margin, left - margin
    signal = _read_signal(view, scale, (y0, x0, height + 2 * margin, width + 2 * margin))
    labels = segment_nuclei(signal, scale.min_diameter, scale.max_diameter, threshold)
    ds = scale.downsample
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


def segment_nuclei(
    signal: np.ndarray, min_diameter: float, max_diameter: float, threshold: float | None = None
) -> np.ndarray:
    """Segment nuclei in a nuclear-channel image.

    Parameters
    ----------
    signal : (rows, columns) float ndarray
        Nuclear signal in grey levels 0-255, bright nuclei on a dark background.
    min_diameter, max_diameter : float
        Limits of the equivalent diameter of kept nuclei, in pixels.
    threshold : float, optional
        Global threshold on the smoothed signal; computed from ``signal`` when None.

    Returns
    -------
    labels : (rows, columns) int32 ndarray
        0 for background and a positive label per nucleus. Labels of objects removed by
        the size filter are missing, so the labels need not be consecutive.
    """
    smooth = ndi.gaussian_filter(signal.astype(np.float32, copy=False), sigma=1.0)
    if threshold is None:
        low, high = np.percentile(smooth, [1.0, 99.9])
        if high - low < MIN_CONTRAST:
            return np.zeros(signal.shape, dtype=np.int32)
        threshold = signal_threshold(smooth)

    block_size = max(3, int(round(max_diameter)) | 1)
    local = filters.threshold_local(smooth, block_size=block_size, offset=-LOCAL_OFFSET)
    mask = (smooth > threshold) & (smooth > local)
    mask = ndi.binary_fill_holes(mask)

    distance = filters.gaussian(ndi.distance_transform_edt(mask), sigma=1.0)
    min_distance = max(2, int(round(0.6 * min_diameter)))
    peaks = feature.peak_local_max(
        distance, min_distance=min_distance, labels=measure.label(mask), exclude_border=False
    )
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    labels = segmentation.watershed(-distance, markers, mask=mask)

    areas = np.bincount(labels.ravel())
    diameters = np.sqrt(4.0 * areas / np.pi)
    keep = (diameters >= min_diameter) & (diameters <= max_diameter)
    keep[0] = False
    return np.where(keep[labels], labels, 0).astype(np.int32)


def _cells_table(found: list[dict], pixel_size_um: float | None) -> pd.DataFrame:
    cells = pd.DataFrame(found, columns=["centroid_y", "centroid_x", "area_px", "mean_intensity", "eccentricity"])
    cells = cells.astype(float)
    cells.insert(0, "cell_id", np.arange(len(cells), dtype=np.int64))
    area_um2 = cells["area_px"] * pixel_size_um**2 if pixel_size_um else np.nan
    cells.insert(4, "area_um2", area_um2)
    cells["tile_id"] = pd.array([pd.NA] * len(cells), dtype="Int64")
    return cells[list(CELL_COLUMNS)]
