"""Read planned tiles from a view and resample them to the model's pixel size."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from PIL import Image

from vlm_micro.tiling.geometry import level_box

log = logging.getLogger(__name__)


def resample_tile(region: np.ndarray, tile_size_px: int) -> np.ndarray:
    """Resample an RGB uint8 region to a square tile of side ``tile_size_px``.

    See :func:`resample_region`; returns ``region`` itself when it already has that size.
    """
    return resample_region(region, (tile_size_px, tile_size_px))


def resample_region(region: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample an RGB uint8 region to ``shape``.

    Parameters
    ----------
    region : (rows, columns, 3) uint8 ndarray
    shape : (rows, columns)
        Output size in pixels.

    Returns
    -------
    resampled : (shape[0], shape[1], 3) uint8 ndarray
        The region itself when it already has that size. An integer shrink factor on
        both axes uses the block mean. Any other factor uses Pillow's bilinear
        resampling, which is antialiased because its filter support grows with the
        shrink factor.
    """
    rows, cols = region.shape[:2]
    out_rows, out_cols = shape
    if rows == out_rows and cols == out_cols:
        return region
    image = Image.fromarray(np.ascontiguousarray(region))
    factor_y, rest_y = divmod(rows, out_rows)
    factor_x, rest_x = divmod(cols, out_cols)
    if rest_y == 0 and rest_x == 0:
        return np.asarray(image.reduce((factor_x, factor_y)))
    return np.asarray(image.resize((out_cols, out_rows), Image.Resampling.BILINEAR))


def read_box(view, y: int, x: int, height: int, width: int, level: int, shape: tuple[int, int]) -> np.ndarray:
    """Read a box given in level-0 pixels from a pyramid level and resample it to ``shape``.

    Returns
    -------
    region : (shape[0], shape[1], 3) uint8 ndarray
        Parts outside the image are filled with the view's pad value.
    """
    downsample = view.levels[level].downsample
    level_y, level_x, level_height, level_width = level_box(y, x, height, width, downsample)
    region = view.read_region(level_y, level_x, level_height, level_width, level)
    return resample_region(region, shape)


def read_tiles(view, tiles_df: pd.DataFrame, tile_size_px: int, rows=None) -> np.ndarray:
    """Read tiles of a tile table at the target pixel size.

    Parameters
    ----------
    view : ImageView
    tiles_df : DataFrame
        Tile table with columns ``y``, ``x``, ``height``, ``width`` (level-0 pixels) and
        ``level``, as :func:`plan_tiles` writes it.
    tile_size_px : int
        Tile side at the target pixel size.
    rows : sequence of int, optional
        Row positions (not index labels) to read; all rows by default.

    Returns
    -------
    tiles : (n, tile_size_px, tile_size_px, 3) uint8 ndarray

    Notes
    -----
    Tiles that follow each other in the table on one row of the same level, touching
    or overlapping, are read with one :meth:`~vlm_micro.io.view.ImageView.read_region`
    call per run of at most :data:`MAX_RUN_PIXELS` pixels, and then cut apart. Grid
    plans list tiles row by row, so most tiles of a batch share a few calls. The
    pixels are the same as reading each tile on its own.
    """
    table = tiles_df if rows is None else tiles_df.iloc[np.asarray(rows, dtype=np.int64)]
    boxes = table[["y", "x", "height", "width", "level"]].to_numpy(dtype=np.int64)
    out = np.empty((len(boxes), tile_size_px, tile_size_px, 3), dtype=np.uint8)
    shape = (tile_size_px, tile_size_px)
    for level, level_y, level_height, run in _row_runs(view, boxes):
        run_x = run[0][1]
        run_width = max(x + width for _, x, width in run) - run_x
        region = view.read_region(level_y, run_x, level_height, run_width, level)
        for index, x, width in run:
            out[index] = resample_region(region[:, x - run_x : x - run_x + width], shape)
    return out


# Maximum pixels of one region read that serves several tiles of a row.
MAX_RUN_PIXELS = 1 << 22


def _row_runs(view, boxes: np.ndarray):
    """Group tiles into runs that one region read covers.

    Yields ``(level, y, height, run)`` in pixels of the level, where ``run`` lists
    ``(index in boxes, x, width)`` of consecutive tiles with the same level, ``y`` and
    size, each starting at or before the end of the previous one and to its right.
    """
    run, key, run_x, run_end = [], None, 0, 0
    for index, (y, x, height, width, level) in enumerate(boxes):
        downsample = view.levels[level].downsample
        level_y, level_x, level_height, level_width = level_box(y, x, height, width, downsample)
        tile_key = (int(level), level_y, level_height, level_width)
        extends = (
            tile_key == key
            and run_x <= level_x <= run_end
            and (max(run_end, level_x + level_width) - run_x) * level_height <= MAX_RUN_PIXELS
        )
        if run and not extends:
            yield key[0], key[1], key[2], run
            run = []
        if not run:
            key, run_x, run_end = tile_key, level_x, level_x
        run.append((index, level_x, level_width))
        run_end = max(run_end, level_x + level_width)
    if run:
        yield key[0], key[1], key[2], run


def iter_tile_batches(
    view, tiles_df: pd.DataFrame, tile_size_px: int, batch_size: int, *, read_ahead: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Read the tiles of a tile table in batches.

    Parameters
    ----------
    view : ImageView
    tiles_df : DataFrame
        Tile table as :func:`read_tiles` takes it.
    tile_size_px : int
        Tile side at the target pixel size.
    batch_size : int
        Maximum tiles per batch.
    read_ahead : bool
        Read the next batch in a background thread while the caller works on the
        current one, so that at most two batches are in memory. False reads each batch
        when it is requested and keeps one batch in memory at a time.

    Yields
    ------
    positions : (k,) int64 ndarray
        Row positions in ``tiles_df`` of the tiles in this batch.
    batch : (k, tile_size_px, tile_size_px, 3) uint8 ndarray
        The tiles at the target pixel size, with ``k <= batch_size``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts = list(range(0, len(tiles_df), batch_size))

    def read(start: int) -> tuple[np.ndarray, np.ndarray]:
        positions = np.arange(start, min(start + batch_size, len(tiles_df)), dtype=np.int64)
        return positions, read_tiles(view, tiles_df, tile_size_px, rows=positions)

    if not read_ahead or len(starts) < 2:
        for start in starts:
            yield read(start)
        return
    # Leaving the with block (also when the caller stops early) waits for the batch
    # being read, so no thread outlives the generator.
    with ThreadPoolExecutor(1, thread_name_prefix="vlm-micro-tiles") as executor:
        pending = executor.submit(read, starts[0])
        for next_start in starts[1:] + [None]:
            batch = pending.result()
            if next_start is not None:
                pending = executor.submit(read, next_start)
            yield batch
