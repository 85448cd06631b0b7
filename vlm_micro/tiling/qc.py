"""Quality measures per tile and their summary per image."""

from __future__ import annotations

import numpy as np
import pandas as pd

# ITU-R BT.709 luma weights, as in skimage.color.rgb2gray.
_LUMA = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)

# Share of tiles with a flag above which the image summary carries a warning.
WARN_FRACTION = 0.1


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
    grey = (tile.reshape(-1, 3).astype(np.float32) @ _LUMA).reshape(tile.shape[:2])
    laplacian = (
        grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * grey[1:-1, 1:-1]
    )
    return float(laplacian.var(dtype=np.float64))


def saturated_fraction(tile: np.ndarray, modality: str) -> float:
    """Compute the fraction of clipped pixels in a tile.

    A pixel is clipped when any channel is at 255 in fluorescence. In brightfield, 255
    is the normal glass background, so a pixel counts when any channel is at 0 (stain
    too dense for the detector). NaN for an empty tile.
    """
    if tile.size == 0:
        return float("nan")
    clipped_value = 0 if modality == "brightfield" else 255
    # OR-ing the three channels is much faster than .any() over a length-3 axis.
    equal = tile == clipped_value
    clipped = equal[..., 0] | equal[..., 1] | equal[..., 2]
    return float(np.count_nonzero(clipped)) / clipped.size


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
