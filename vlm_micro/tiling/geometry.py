"""Tile geometry: scale to the model's pixel size, pyramid level choice, tile placement.

All tile coordinates are level-0 pixels of the view, as (row, column) of the top-left
corner plus a height and width. A tile covers ``region_px`` level-0 pixels per side and
is resampled to ``tile_size_px`` pixels at the target pixel size when read.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from vlm_micro.errors import ConfigError

log = logging.getLogger(__name__)

# A pyramid level may be up to this much coarser than requested and still be chosen. So
# a level at downsample 4 serves a request for 3.96 (a 0.505 um/px scan tiled at 2 um/px),
# where level 0 would mean reading 16 times as many pixels.
LEVEL_TOLERANCE = 0.02


@dataclass(frozen=True)
class TileScale:
    """Size of tiles in level-0 pixels and the pyramid level they are read from."""

    downsample: float  # level-0 pixels per pixel at the target pixel size
    tile_size_px: int  # tile side at the target pixel size
    region_px: int  # tile side in level-0 pixels
    stride_px: int  # distance between grid tiles in level-0 pixels
    level: int  # pyramid level that tiles are read from
    uncalibrated: bool  # True when tiles are cut at native scale for lack of a pixel size


def tile_scale(view, target_pixel_size_um: float | None, tile_size_px: int, overlap_px: int = 0) -> TileScale:
    """Compute the level-0 size of one tile and the pyramid level to read it from.

    Parameters
    ----------
    view : ImageView
        The image; its ``pixel_size_um`` is the level-0 pixel size.
    target_pixel_size_um : float or None
        Pixel size the model expects, in um/px. None cuts tiles at native scale.
    tile_size_px : int
        Tile side in pixels at the target pixel size.
    overlap_px : int
        Overlap of neighbouring grid tiles in pixels at the target pixel size.

    Returns
    -------
    TileScale
    """
    if isinstance(tile_size_px, bool) or not isinstance(tile_size_px, (int, np.integer)) or tile_size_px < 1:
        raise ConfigError(
            f"invalid tile size {tile_size_px!r}: expected a positive integer number of pixels; "
            "check model.tile_size_px or the model's vlm_micro.json"
        )
    if overlap_px >= tile_size_px:
        raise ConfigError(
            f"tiling.overlap_px: {overlap_px} must be smaller than the tile size {tile_size_px} px; lower it"
        )
    if target_pixel_size_um is not None and not target_pixel_size_um > 0:
        raise ConfigError(
            f"invalid target pixel size {target_pixel_size_um!r} um/px: must be greater than 0; "
            "check model.pixel_size_um or the model's vlm_micro.json"
        )

    uncalibrated = view.pixel_size_um is None or target_pixel_size_um is None
    downsample = 1.0 if uncalibrated else float(target_pixel_size_um) / float(view.pixel_size_um)
    region_px = max(1, int(round(tile_size_px * downsample)))
    stride_px = max(1, int(round((tile_size_px - overlap_px) * downsample)))
    level = choose_level(view, downsample)
    return TileScale(downsample, int(tile_size_px), region_px, stride_px, level, uncalibrated)


def choose_level(view, downsample: float) -> int:
    """Return the coarsest pyramid level that is not coarser than ``downsample`` (2% slack)."""
    best = 0
    for index, level in enumerate(view.levels):
        if level.downsample <= downsample * (1 + LEVEL_TOLERANCE):
            best = index
    return best


def grid_origins(length: int, region_px: int, stride_px: int) -> np.ndarray:
    """Return tile start positions along one axis, from 0 until the axis is covered.

    The last tile may extend past ``length`` (it is padded when read). An axis shorter
    than one tile gets one tile at 0.
    """
    if length <= region_px:
        return np.zeros(1, dtype=np.int64)
    count = 1 + math.ceil((length - region_px) / stride_px)
    return np.arange(count, dtype=np.int64) * stride_px


def grid_boxes(shape: tuple[int, int], scale: TileScale) -> np.ndarray:
    """Return grid tiles of an image as an (n, 4) int64 array of (y, x, height, width).

    Tiles run row by row from the top-left corner (0, 0) with the stride of ``scale``.
    """
    rows, cols = shape
    ys = grid_origins(rows, scale.region_px, scale.stride_px)
    xs = grid_origins(cols, scale.region_px, scale.stride_px)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    boxes = np.empty((yy.size, 4), dtype=np.int64)
    boxes[:, 0] = yy.ravel()
    boxes[:, 1] = xx.ravel()
    boxes[:, 2:] = scale.region_px
    return boxes


def centred_boxes(centroid_y: np.ndarray, centroid_x: np.ndarray, scale: TileScale) -> np.ndarray:
    """Return one tile centred on each point, as an (n, 4) int64 array of (y, x, height, width)."""
    half = scale.region_px / 2.0
    boxes = np.empty((len(centroid_y), 4), dtype=np.int64)
    boxes[:, 0] = np.floor(np.asarray(centroid_y, dtype=float) + 0.5 - half).astype(np.int64)
    boxes[:, 1] = np.floor(np.asarray(centroid_x, dtype=float) + 0.5 - half).astype(np.int64)
    boxes[:, 2:] = scale.region_px
    return boxes


def is_edge(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return True for each (y, x, height, width) box that extends past the image."""
    rows, cols = shape
    y, x, height, width = boxes.T
    return (y < 0) | (x < 0) | (y + height > rows) | (x + width > cols)


def level_box(y: int, x: int, height: int, width: int, downsample: float) -> tuple[int, int, int, int]:
    """Convert a level-0 box to pixels of a level with the given downsample."""
    if downsample == 1.0:
        return int(y), int(x), int(height), int(width)
    return (
        int(round(y / downsample)),
        int(round(x / downsample)),
        max(1, int(round(height / downsample))),
        max(1, int(round(width / downsample))),
    )


def valid_window(box, shape: tuple[int, int], tile_size_px: int) -> tuple[slice, slice]:
    """Return the part of a resampled tile that lies inside the image, as (rows, columns) slices.

    The box is (y, x, height, width) in level-0 pixels; the slices index the
    ``tile_size_px`` square tile and leave out the padding, rounded inwards.
    """
    y, x, height, width = (int(v) for v in box)
    rows, cols = shape
    top = math.ceil((max(y, 0) - y) / height * tile_size_px)
    bottom = math.floor((min(y + height, rows) - y) / height * tile_size_px)
    left = math.ceil((max(x, 0) - x) / width * tile_size_px)
    right = math.floor((min(x + width, cols) - x) / width * tile_size_px)
    return slice(top, max(top, bottom)), slice(left, max(left, right))


def valid_windows(boxes: np.ndarray, shape: tuple[int, int], tile_size_px: int) -> np.ndarray:
    """Return :func:`valid_window` of many boxes at once.

    Parameters
    ----------
    boxes : (n, 4) int ndarray
        (y, x, height, width) in level-0 pixels.
    shape : (rows, columns)
        Level-0 image shape.
    tile_size_px : int

    Returns
    -------
    windows : (n, 4) int64 ndarray
        (top, bottom, left, right) of the part of each resampled tile inside the image.
    """
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    y, x, height, width = boxes.T
    rows, cols = shape
    top = np.ceil((np.maximum(y, 0) - y) / height * tile_size_px).astype(np.int64)
    bottom = np.floor((np.minimum(y + height, rows) - y) / height * tile_size_px).astype(np.int64)
    left = np.ceil((np.maximum(x, 0) - x) / width * tile_size_px).astype(np.int64)
    right = np.floor((np.minimum(x + width, cols) - x) / width * tile_size_px).astype(np.int64)
    return np.stack([top, np.maximum(top, bottom), left, np.maximum(left, right)], axis=1)
