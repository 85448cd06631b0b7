"""Quality measures per tile and their summary per image."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vlm_micro.tiling.geometry import valid_windows

# ITU-R BT.709 luma weights, as in skimage.color.rgb2gray.
_LUMA = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)

# Share of tiles with a flag above which the image summary carries a warning.
WARN_FRACTION = 0.1

# Tiles of a batch are measured in groups of at most this many pixels (one tile when a
# tile is larger). A group's float32 intermediates then stay in the CPU caches, and
# the grey conversion (a matrix-vector product) stays below the sizes at which
# OpenBLAS starts threads, which made it 5 times slower on a loaded 2-core machine.
_GROUP_PIXELS = 1 << 16


def focus_measure(tile: np.ndarray) -> float:
    """Compute the variance of the Laplacian of a tile, a standard sharpness measure.

    Parameters
    ----------
    tile : (rows, columns, 3) uint8 ndarray
        The tile at the target pixel size, without padding.

    Returns
    -------
    focus : float
        Variance of the 4-neighbour Laplacian of the grey tile (BT.709 luma, grey
        levels 0-255), over interior pixels so the tile border adds no edge. NaN when
        the tile has fewer than 3 x 3 pixels. Sharp tissue scores in the hundreds, a
        blurred or empty tile close to 0.
    """
    if tile.shape[0] < 3 or tile.shape[1] < 3:
        return float("nan")
    return float(_laplacian_variance(tile[None])[0])


def _laplacian_variance(tiles: np.ndarray) -> np.ndarray:
    """Return the variance of the Laplacian of each (k, rows, columns, 3) uint8 tile, rows and columns >= 3."""
    count, rows, cols, _ = tiles.shape
    grey = (tiles.reshape(-1, 3).astype(np.float32) @ _LUMA).reshape(count, rows, cols)
    laplacian = grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1]
    laplacian += grey[:, 1:-1, :-2]
    laplacian += grey[:, 1:-1, 2:]
    laplacian -= 4.0 * grey[:, 1:-1, 1:-1]
    size = (rows - 2) * (cols - 2)
    values = laplacian.reshape(count, size)
    mean_square = np.einsum("ij,ij->i", values, values).astype(np.float64) / size
    mean = _laplacian_sum(grey) / size
    return np.maximum(mean_square - mean * mean, 0.0)


def _laplacian_sum(grey: np.ndarray) -> np.ndarray:
    """Return the sum of the interior Laplacian of each (k, rows, columns) grey tile.

    The sum telescopes. The second differences down one column add up to the first
    difference at the bottom edge minus the one at the top edge, and likewise along a
    row. So only the two outer rows and columns at each edge are read.
    """
    def edges(first, second, last_but_one, last):
        return (last.astype(np.float64) - last_but_one) - (second.astype(np.float64) - first)

    along_rows = edges(grey[:, 0, 1:-1], grey[:, 1, 1:-1], grey[:, -2, 1:-1], grey[:, -1, 1:-1])
    along_cols = edges(grey[:, 1:-1, 0], grey[:, 1:-1, 1], grey[:, 1:-1, -2], grey[:, 1:-1, -1])
    return along_rows.sum(axis=1) + along_cols.sum(axis=1)


def saturated_fraction(tile: np.ndarray, modality: str) -> float:
    """Compute the fraction of clipped pixels in a tile.

    A pixel is clipped when any channel is at 255 in fluorescence. In brightfield, 255
    is the normal glass background, so a pixel counts when any channel is at 0 (stain
    too dense for the detector). NaN for an empty tile.
    """
    if tile.size == 0:
        return float("nan")
    return float(_clipped_fractions(tile[None], modality)[0])


def _clipped_fractions(tiles: np.ndarray, modality: str) -> np.ndarray:
    """Return the clipped fraction of each (k, rows, columns, 3) uint8 tile with pixels."""
    count = len(tiles)
    clipped_value = 0 if modality == "brightfield" else 255
    samples = tiles.reshape(count, -1)
    # Most tiles have no clipped sample at all, which one min or max shows cheaply.
    extreme = samples.min(axis=1) if clipped_value == 0 else samples.max(axis=1)
    fractions = np.zeros(count, dtype=np.float64)
    pixels = tiles.shape[1] * tiles.shape[2]
    for index in np.flatnonzero(extreme == clipped_value):
        # OR-ing the three channels is much faster than .any() over a length-3 axis.
        equal = tiles[index] == clipped_value
        clipped = equal[..., 0] | equal[..., 1] | equal[..., 2]
        fractions[index] = np.count_nonzero(clipped) / pixels
    return fractions


def measure_tile_qc(batch: np.ndarray, modality: str, windows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Compute the focus and saturated fraction of each tile of a batch.

    Parameters
    ----------
    batch : (k, rows, columns, 3) uint8 ndarray
        Tiles at the target pixel size, as :func:`~vlm_micro.tiling.iter_tile_batches`
        yields them.
    modality : str
        ``"fluorescence"`` or ``"brightfield"``; sets which value counts as clipped.
    windows : (k, 4) int ndarray, optional
        ``(top, bottom, left, right)`` of the part of each tile that lies inside the
        image, as :func:`~vlm_micro.tiling.geometry.valid_windows` returns them. QC
        ignores the rest (padding). Whole tiles by default.

    Returns
    -------
    focus : (k,) float64 ndarray
        As :func:`focus_measure` of each tile's window.
    saturated_fraction : (k,) float64 ndarray
        As :func:`saturated_fraction` of each tile's window.
    """
    batch = np.asarray(batch)
    if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
        raise ValueError(f"batch must be a (k, rows, columns, 3) uint8 array, got {batch.shape} {batch.dtype}")
    count, rows, cols, _ = batch.shape
    if windows is None:
        windows = np.tile(np.array([0, rows, 0, cols], dtype=np.int64), (count, 1))
    windows = np.asarray(windows, dtype=np.int64).reshape(count, 4)
    focus = np.full(count, np.nan)
    saturated = np.full(count, np.nan)

    whole = (windows == [0, rows, 0, cols]).all(axis=1)
    whole_positions = np.flatnonzero(whole)
    group = max(1, _GROUP_PIXELS // max(1, rows * cols))
    for start in range(0, len(whole_positions), group):
        positions = whole_positions[start : start + group]
        if positions[-1] - positions[0] + 1 == len(positions):
            tiles = batch[positions[0] : positions[-1] + 1]  # a view, no copy
        else:
            tiles = batch[positions]
        if rows >= 3 and cols >= 3:
            focus[positions] = _laplacian_variance(tiles)
        if rows * cols:
            saturated[positions] = _clipped_fractions(tiles, modality)

    for position in np.flatnonzero(~whole):
        top, bottom, left, right = windows[position]
        inside = batch[position, top:bottom, left:right]
        focus[position] = focus_measure(inside)
        saturated[position] = saturated_fraction(inside, modality)
    return focus, saturated


class TileQCAccumulator:
    """Focus and saturated fraction of the tiles of one tile table, filled batch by batch.

    A read pass that needs the tiles anyway (labelling) can measure QC on the way, so
    a slide is decoded once::

        plan = plan_tiles(view, settings, target_pixel_size_um, tile_size_px, measure_qc=False)
        accumulator = TileQCAccumulator(view, plan.tiles, tile_size_px)
        for positions, batch in iter_tile_batches(view, plan.tiles, tile_size_px, batch_size):
            accumulator.add(positions, batch)
            ...
        apply_tile_qc(plan, accumulator.focus, accumulator.saturated_fraction, settings)

    Parameters
    ----------
    view : ImageView
        Supplies the level-0 shape (to leave out padding) and the modality.
    tiles_df : DataFrame
        Tile table with ``y``, ``x``, ``height`` and ``width`` in level-0 pixels.
    tile_size_px : int
        Tile side at the target pixel size.

    Attributes
    ----------
    focus, saturated_fraction : (n,) float64 ndarray
        One value per row of ``tiles_df``, NaN until its batch is added.
    """

    def __init__(self, view, tiles_df: pd.DataFrame, tile_size_px: int) -> None:
        boxes = tiles_df[["y", "x", "height", "width"]].to_numpy(dtype=np.int64)
        self.modality = view.modality
        self.windows = valid_windows(boxes, view.shape, tile_size_px)
        self.focus = np.full(len(boxes), np.nan)
        self.saturated_fraction = np.full(len(boxes), np.nan)

    def add(self, positions: np.ndarray, batch: np.ndarray) -> None:
        """Measure the tiles of one batch; ``positions`` are their row positions in the table."""
        positions = np.asarray(positions, dtype=np.int64)
        focus, saturated = measure_tile_qc(batch, self.modality, self.windows[positions])
        self.focus[positions] = focus
        self.saturated_fraction[positions] = saturated


def qc_flags(
    focus: np.ndarray, saturated: np.ndarray, edge: np.ndarray, min_focus: float, max_saturated_fraction: float
) -> list[str]:
    """Return the ';'-joined QC flags of each tile ('' when none applies)."""
    flags = []
    for tile_focus, tile_saturated, tile_edge in zip(focus, saturated, edge):
        names = []
        if np.isfinite(tile_focus) and tile_focus < min_focus:
            names.append("out_of_focus")
        if np.isfinite(tile_saturated) and tile_saturated > max_saturated_fraction:
            names.append("saturated")
        if tile_edge:
            names.append("edge")
        flags.append(";".join(names))
    return flags


def summarize_qc(tiles: pd.DataFrame, n_skipped: int, image_foreground: float, settings) -> dict:
    """Summarize the QC of the kept tiles of one image.

    Parameters
    ----------
    tiles : DataFrame
        Kept tiles with ``focus``, ``saturated_fraction`` and ``qc_flags`` columns.
    n_skipped : int
        Number of grid tiles skipped as background.
    image_foreground : float
        Foreground fraction of the whole image.
    settings : TileSettings

    Returns
    -------
    qc : dict
        ``n_tiles``, ``n_skipped_background``, ``foreground_fraction``, ``mean_focus``,
        ``saturated_fraction`` (mean over tiles), ``out_of_focus_fraction``,
        ``saturated_tile_fraction`` and ``warnings`` (one-line strings). Means are None
        without tiles.
    """
    flags = [set(text.split(";")) for text in tiles["qc_flags"]]
    out_of_focus = float(np.mean(["out_of_focus" in names for names in flags])) if flags else 0.0
    saturated = float(np.mean(["saturated" in names for names in flags])) if flags else 0.0
    qc = {
        "n_tiles": int(len(tiles)),
        "n_skipped_background": int(n_skipped),
        "foreground_fraction": float(image_foreground),
        "mean_focus": _mean_or_none(tiles["focus"]),
        "saturated_fraction": _mean_or_none(tiles["saturated_fraction"]),
        "out_of_focus_fraction": out_of_focus,
        "saturated_tile_fraction": saturated,
        "warnings": [],
    }
    if len(tiles) == 0 and settings.placement == "grid":
        qc["warnings"].append(
            f"no tile reaches the minimum foreground fraction {settings.min_foreground:g}; "
            "lower tiling.min_foreground if the image is not empty"
        )
    if out_of_focus >= WARN_FRACTION:
        qc["warnings"].append(
            f"{out_of_focus:.0%} of tiles look out of focus (variance of the Laplacian below {settings.min_focus:g})"
        )
    if saturated >= WARN_FRACTION:
        qc["warnings"].append(
            f"{saturated:.0%} of tiles have more than {settings.max_saturated_fraction:.0%} saturated pixels"
        )
    return qc


def _mean_or_none(values: pd.Series) -> float | None:
    finite = values[np.isfinite(values.to_numpy(dtype=float))]
    return float(finite.mean()) if len(finite) else None
