"""Rasters of tile and cell predictions on a coarse grid of the image plane.

One raster serves three purposes: the colour overlay and the anomaly heat map in the
reports, and the label map export. A grid placement maps each tile to one raster pixel
(the raster pixel is one tile stride). A cells placement paints one disk per cell on a
raster at a fixed downsample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import numpy as np
import pandas as pd

# Longer side of the label raster of a cells placement, in pixels. Cells smaller than
# one raster pixel still get one pixel.
MAX_CELL_RASTER_PX = 4096


@dataclass(frozen=True)
class TileRaster:
    """Positions of tiles (or cells) on a raster of the level-0 plane.

    Attributes
    ----------
    downsample : float
        Level-0 pixels per raster pixel.
    index : (rows, columns) int64 ndarray
        Row position in the tile table of the tile painted at each raster pixel, or -1
        where there is none.
    """

    downsample: float
    index: np.ndarray

    def values(self, per_tile: np.ndarray, fill) -> np.ndarray:
        """Return ``per_tile[index]`` as a raster, with ``fill`` where there is no tile.

        ``per_tile`` has one entry (a scalar or a vector such as RGBA) per tile row, and the
        raster has shape ``index.shape + per_tile.shape[1:]``.
        """
        per_tile = np.asarray(per_tile)
        dtype = np.result_type(per_tile.dtype, np.asarray(fill).dtype)
        out = np.full(self.index.shape + per_tile.shape[1:], fill, dtype=dtype)
        mask = self.index >= 0
        if per_tile.size:
            out[mask] = per_tile[self.index[mask]]
        return out

    def extent(self) -> tuple[float, float, float, float]:
        """Return the raster's (left, right, bottom, top) in level-0 pixels for ``imshow``."""
        rows, cols = self.index.shape
        return 0.0, cols * self.downsample, rows * self.downsample, 0.0


def grid_stride(tiles: pd.DataFrame, fallback: int) -> int:
    """Estimate the stride of a grid placement in level-0 pixels.

    Grid tiles start at multiples of the stride from (0, 0), so the greatest common
    divisor of the tile origins is the stride. In a sparse image where every second tile
    was skipped it is a multiple of the stride, which still places each tile correctly.
    """
    if tiles.empty:
        return max(1, int(fallback))
    origins = np.concatenate([tiles["y"].to_numpy(), tiles["x"].to_numpy()]).astype(np.int64)
    origins = np.unique(np.abs(origins[origins != 0]))
    size = int(max(tiles["height"].max(), tiles["width"].max()))
    if origins.size == 0:
        return max(1, size)
    stride = int(reduce(math.gcd, origins.tolist()))
    # A stride far below the tile size means the origins are not on a regular grid.
    return stride if stride * 4 >= size else max(1, size)


def grid_raster(tiles: pd.DataFrame, shape: tuple[int, int], stride: int) -> TileRaster:
    """Map each grid tile to the raster pixel at its origin divided by ``stride``."""
    rows, cols = (max(1, math.ceil(length / stride)) for length in shape)
    index = np.full((rows, cols), -1, dtype=np.int64)
    if not tiles.empty:
        r = np.rint(tiles["y"].to_numpy(dtype=float) / stride).astype(np.int64)
        c = np.rint(tiles["x"].to_numpy(dtype=float) / stride).astype(np.int64)
        inside = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
        index[r[inside], c[inside]] = np.arange(len(tiles))[inside]
    return TileRaster(float(stride), index)


def cell_raster(tiles: pd.DataFrame, cells: pd.DataFrame | None, shape: tuple[int, int]) -> TileRaster:
    """Paint one disk per cell-centred tile, sized by the cell's area where known."""
    from skimage.draw import disk

    downsample = max(1.0, max(shape) / MAX_CELL_RASTER_PX)
    rows, cols = (max(1, math.ceil(length / downsample)) for length in shape)
    index = np.full((rows, cols), -1, dtype=np.int64)
    centres_y, centres_x, radii = cell_disks(tiles, cells)
    # Paint large cells first so that small cells lying on top of them stay visible.
    for position in np.argsort(-radii, kind="stable"):
        radius = max(0.5, radii[position] / downsample)
        rr, cc = disk((centres_y[position] / downsample, centres_x[position] / downsample), radius, shape=(rows, cols))
        if rr.size == 0:
            r = int(centres_y[position] // downsample)
            c = int(centres_x[position] // downsample)
            if 0 <= r < rows and 0 <= c < cols:
                index[r, c] = position
            continue
        index[rr, cc] = position
    return TileRaster(downsample, index)


def cell_disks(tiles: pd.DataFrame, cells: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return centre rows, centre columns and radii in level-0 pixels of each tile's cell.

    The centre is the cell centroid from the cell table when the tile has a ``cell_id``
    found there, else the tile centre. The radius is that of a disk with the cell's
    area, else a quarter of the tile side.
    """
    centre_y = tiles["y"].to_numpy(dtype=float) + tiles["height"].to_numpy(dtype=float) / 2
    centre_x = tiles["x"].to_numpy(dtype=float) + tiles["width"].to_numpy(dtype=float) / 2
    radius = np.minimum(tiles["height"].to_numpy(dtype=float), tiles["width"].to_numpy(dtype=float)) / 4
    if cells is not None and "cell_id" in tiles and "cell_id" in cells and len(cells):
        table = cells.drop_duplicates("cell_id").set_index("cell_id")
        ids = tiles["cell_id"]
        for column, target in (("centroid_y", centre_y), ("centroid_x", centre_x)):
            if column in table:
                found = pd.to_numeric(ids.map(table[column]), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                target[np.isfinite(found)] = found[np.isfinite(found)]
        if "area_px" in table:
            area = pd.to_numeric(ids.map(table["area_px"]), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            known = np.isfinite(area) & (area > 0)
            radius[known] = np.sqrt(area[known] / np.pi)
    return centre_y, centre_x, radius


def plane_raster(tiles: pd.DataFrame, cells: pd.DataFrame | None, shape: tuple[int, int],
                 placement: str, fallback_stride: int) -> TileRaster:
    """Build the raster of the placement that produced ``tiles``."""
    if placement == "cells":
        return cell_raster(tiles, cells, shape)
    return grid_raster(tiles, shape, grid_stride(tiles, fallback_stride))
