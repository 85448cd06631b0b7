"""Tile plans: where the tiles of one view are, which are kept, and their QC."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vlm_micro.tiling.foreground import box_fractions, foreground_mask, low_resolution_rgb
from vlm_micro.tiling.geometry import TileScale, centred_boxes, grid_boxes, is_edge, tile_scale
from vlm_micro.tiling.nuclei import detect_nuclei
from vlm_micro.tiling.qc import TileQCAccumulator, qc_flags, summarize_qc
from vlm_micro.tiling.reading import iter_tile_batches

log = logging.getLogger(__name__)

TILE_COLUMNS = (
    "tile_id", "y", "x", "height", "width", "level", "is_edge", "placement", "cell_id",
    "foreground_fraction", "focus", "saturated_fraction", "qc_flags",
)
QC_BATCH_SIZE = 64  # tiles read at a time to measure QC


@dataclass
class TilePlan:
    """Tiles of one view with their QC, and the detected cells for the ``cells`` placement.

    Attributes
    ----------
    tiles : DataFrame
        One row per kept tile, with the columns of ``TILE_COLUMNS``:

        - ``tile_id``: 0, 1, ...
        - ``y``, ``x``, ``height``, ``width``: level-0 pixels covered, padding included
        - ``level``: pyramid level read
        - ``is_edge``: True when the tile extends past the image and is padded
        - ``placement``: ``"grid"`` or ``"cells"``
        - ``cell_id``: Int64, NA for grid tiles
        - ``foreground_fraction``, ``focus`` (variance of the Laplacian),
          ``saturated_fraction``
        - ``qc_flags``: ';'-joined flags, '' when fine
    cells : DataFrame or None
        Per-nucleus table of :func:`detect_nuclei` with ``tile_id`` filled in, or None
        for the ``grid`` placement.
    qc : dict
        Image-level summary, see :func:`plan_tiles`.
    """

    tiles: pd.DataFrame
    cells: pd.DataFrame | None
    qc: dict


def plan_tiles(view, settings, target_pixel_size_um: float | None, tile_size_px: int,
               measure_qc: bool = True) -> TilePlan:
    """Place tiles on a view at the model's pixel size and measure their QC.

    Parameters
    ----------
    view : ImageView
    settings : TileSettings
    target_pixel_size_um : float or None
        Pixel size the model expects, in um/px. When it or the view's pixel size is
        None, tiles are cut at native scale and ``qc["uncalibrated"]`` is True.
    tile_size_px : int
        Tile side at the target pixel size; one tile covers ``tile_size_px *
        target_pixel_size_um`` micrometres whatever the scanner.
    measure_qc : bool
        Read every kept tile to measure ``focus`` and ``saturated_fraction``. With
        False the tiles are not read: these columns stay NaN, ``qc_flags`` holds only
        ``edge``, and the caller can fill the QC during its own read pass with
        :class:`TileQCAccumulator` and :func:`apply_tile_qc`.

    Returns
    -------
    TilePlan
        ``qc`` contains ``n_tiles``, ``n_skipped_background``, ``foreground_fraction``
        (of the image), ``mean_focus``, ``saturated_fraction``,
        ``out_of_focus_fraction``, ``saturated_tile_fraction``, ``warnings``,
        ``uncalibrated``, ``pixel_size_um``, ``target_pixel_size_um``, ``scale``
        (level-0 pixels per target pixel), ``region_px``, ``level``, ``tile_size_px``,
        ``placement`` and, for cells, ``n_cells``.

    Notes
    -----
    Grid tiles below ``settings.min_foreground`` are skipped and counted. Cell tiles
    are never skipped because each is centred on a detected nucleus. Reading is lazy:
    foreground comes from a low-resolution view and QC reads tiles in batches.
    Measuring QC reads every kept tile, so for a whole slide it costs about as much as
    the labelling read itself.
    """
    scale = tile_scale(view, target_pixel_size_um, tile_size_px, settings.overlap_px)
    mask = foreground_mask(low_resolution_rgb(view, settings.thumbnail_px), view.modality)
    if settings.placement == "cells":
        cells = detect_nuclei(view, settings, view.pixel_size_um, foreground=mask)
        cells["tile_id"] = pd.array(np.arange(len(cells)), dtype="Int64")
        boxes = centred_boxes(cells["centroid_y"].to_numpy(), cells["centroid_x"].to_numpy(), scale)
        fractions = box_fractions(mask, boxes, view.shape)
        cell_ids, n_skipped = cells["cell_id"].to_numpy(), 0
    else:
        cells, cell_ids = None, None
        boxes = grid_boxes(view.shape, scale)
        fractions = box_fractions(mask, boxes, view.shape)
        keep = fractions >= settings.min_foreground
        boxes, fractions, n_skipped = boxes[keep], fractions[keep], int((~keep).sum())

    tiles = _tile_table(boxes, fractions, scale, view, settings.placement, cell_ids)
    accumulator = TileQCAccumulator(view, tiles, scale.tile_size_px)
    if measure_qc:
        for positions, batch in iter_tile_batches(view, tiles, scale.tile_size_px, QC_BATCH_SIZE):
            accumulator.add(positions, batch)
    _set_qc_columns(tiles, accumulator.focus, accumulator.saturated_fraction, settings)
    qc = summarize_qc(tiles, n_skipped, float(mask.mean()) if mask.size else 0.0, settings)
    rows, cols = view.shape
    side = scale.region_px
    largest_fraction = min(rows, side) * min(cols, side) / side**2  # of a tile that covers the most image
    if len(tiles) == 0 and settings.placement == "grid" and largest_fraction < settings.min_foreground:
        # The tile, padded beyond the image, cannot reach min_foreground whatever the
        # image shows, so lowering the threshold is not the advice to give.
        qc["warnings"] = [
            f"the image ({cols} x {rows} px) is too small for tiles of {scale.region_px} px at its scale: a padded "
            f"tile cannot reach the minimum foreground fraction {settings.min_foreground:g}; check the pixel size "
            "or label larger images"
        ]
    qc.update(_scale_summary(view, scale, target_pixel_size_um, settings.placement))
    qc["warnings"].extend(_scale_warnings(view, scale, target_pixel_size_um))
    if cells is not None:
        qc["n_cells"] = int(len(cells))
        if len(cells) == 0:
            qc["warnings"].append("no nuclei detected; check the modality or use tiling.placement: grid")
    log.info(
        "%s: %d tiles kept, %d skipped as background, %d warnings",
        view.path, qc["n_tiles"], qc["n_skipped_background"], len(qc["warnings"]),
    )
    return TilePlan(tiles=tiles, cells=cells, qc=qc)


def _tile_table(boxes, fractions, scale: TileScale, view, placement: str, cell_ids) -> pd.DataFrame:
    count = len(boxes)
    if cell_ids is None:
        cell_column = pd.array([pd.NA] * count, dtype="Int64")
    else:
        cell_column = pd.array(np.asarray(cell_ids, dtype=np.int64), dtype="Int64")
    tiles = pd.DataFrame({
        "tile_id": np.arange(count, dtype=np.int64),
        "y": boxes[:, 0].astype(np.int64),
        "x": boxes[:, 1].astype(np.int64),
        "height": boxes[:, 2].astype(np.int64),
        "width": boxes[:, 3].astype(np.int64),
        "level": np.full(count, scale.level, dtype=np.int64),
        "is_edge": is_edge(boxes, view.shape).astype(bool),
        "placement": pd.Series([placement] * count, dtype=object),
        "cell_id": cell_column,
        "foreground_fraction": np.asarray(fractions, dtype=np.float64),
        "focus": np.full(count, np.nan),
        "saturated_fraction": np.full(count, np.nan),
        "qc_flags": pd.Series([""] * count, dtype=object),
    })
    return tiles[list(TILE_COLUMNS)]


def _set_qc_columns(tiles: pd.DataFrame, focus: np.ndarray, saturated: np.ndarray, settings) -> None:
    """Fill ``focus``, ``saturated_fraction`` and ``qc_flags`` of ``tiles`` in place."""
    tiles["focus"] = np.asarray(focus, dtype=np.float64)
    tiles["saturated_fraction"] = np.asarray(saturated, dtype=np.float64)
    flags = qc_flags(focus, saturated, tiles["is_edge"].to_numpy(), settings.min_focus, settings.max_saturated_fraction)
    tiles["qc_flags"] = pd.Series(flags, index=tiles.index, dtype=object)


def apply_tile_qc(plan: TilePlan, focus: np.ndarray, saturated_fraction: np.ndarray, settings) -> None:
    """Set the QC of a plan's tiles, measured outside :func:`plan_tiles`, and update its summary.

    Parameters
    ----------
    plan : TilePlan
        Plan from :func:`plan_tiles`, usually with ``measure_qc=False``; changed in place.
    focus, saturated_fraction : (n,) float ndarray
        One value per row of ``plan.tiles``, for example from
        :class:`TileQCAccumulator`.
    settings : TileSettings
        The settings the plan was made with (QC thresholds).

    Notes
    -----
    ``qc_flags`` and the QC keys of ``plan.qc`` (``mean_focus``, ``saturated_fraction``,
    ``out_of_focus_fraction``, ``saturated_tile_fraction`` and the QC warnings) are
    recomputed. Warnings about the pixel size and the nuclei are kept.
    """
    focus = np.asarray(focus, dtype=np.float64)
    saturated_fraction = np.asarray(saturated_fraction, dtype=np.float64)
    if focus.shape != (len(plan.tiles),) or saturated_fraction.shape != (len(plan.tiles),):
        raise ValueError(f"expected one focus and one saturated fraction per tile ({len(plan.tiles)}), "
                         f"got shapes {focus.shape} and {saturated_fraction.shape}")
    n_skipped, image_foreground = plan.qc["n_skipped_background"], plan.qc["foreground_fraction"]
    previous = summarize_qc(plan.tiles, n_skipped, image_foreground, settings)["warnings"]
    _set_qc_columns(plan.tiles, focus, saturated_fraction, settings)
    summary = summarize_qc(plan.tiles, n_skipped, image_foreground, settings)
    other_warnings = [warning for warning in plan.qc["warnings"] if warning not in previous]
    plan.qc.update(summary)
    plan.qc["warnings"] = summary["warnings"] + other_warnings


def _scale_summary(view, scale: TileScale, target_pixel_size_um, placement: str) -> dict:
    return {
        "uncalibrated": scale.uncalibrated,
        "pixel_size_um": view.pixel_size_um,
        "target_pixel_size_um": target_pixel_size_um,
        "scale": scale.downsample,
        "region_px": scale.region_px,
        "level": scale.level,
        "tile_size_px": scale.tile_size_px,
        "placement": placement,
    }


def _scale_warnings(view, scale: TileScale, target_pixel_size_um) -> list[str]:
    if scale.uncalibrated and view.pixel_size_um is None:
        return ["pixel size unknown, so tiles are cut at native scale; give pixel_size_um in the sample sheet"]
    if scale.uncalibrated:
        return ["the model declares no pixel size, so tiles are cut at native scale"]
    if scale.downsample < 1.0:
        return [
            f"image pixel size {view.pixel_size_um:g} um/px is coarser than the model's "
            f"{target_pixel_size_um:g} um/px, so tiles are upsampled {1.0 / scale.downsample:.1f}x"
        ]
    return []
