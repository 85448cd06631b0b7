"""Per-image counts and rates, computed from the tile and cell tables.

The report, ``images.tsv`` and ``conditions.tsv`` all take their numbers from
:func:`image_stats`, so the three always agree.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from vlm_micro.reporting.results import ImageResult


def bool_column(tiles: pd.DataFrame, name: str) -> np.ndarray:
    """Return a boolean column as a numpy array; False where missing or NA."""
    if name not in tiles:
        return np.zeros(len(tiles), dtype=bool)
    return tiles[name].astype("boolean").fillna(False).to_numpy(dtype=bool)


def float_column(tiles: pd.DataFrame, name: str) -> np.ndarray:
    """Return a numeric column as float64; NaN where missing."""
    if name not in tiles:
        return np.full(len(tiles), np.nan)
    return pd.to_numeric(tiles[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def image_stats(result: ImageResult, classes: list[str] | None = None) -> dict:
    """Count tiles per predicted cell type and compute uncertainty and anomaly rates.

    Every tile counts towards its most probable class, uncertain tiles included, and the
    uncertain share is reported on its own. Fractions are of all labelled tiles of all
    planes of the image.

    Returns
    -------
    dict
        With the keys ``n_tiles``, ``counts``, ``uncertain_counts`` and ``fractions``
        (dicts by class, for ``classes``, by default the result's class names), ``uncertain_fraction``, ``anomaly_rate`` and
        ``mean_anomaly_score`` (NaN without tiles), ``n_anomalous``,
        ``anomaly_kind_counts`` (anomalous tiles per kind), ``n_cells`` (None for grid
        placement) and ``cell_counts`` (dict by class, empty for grid placement).
    """
    classes = result.class_names if classes is None else classes
    tiles = result.tiles if result.tiles is not None else pd.DataFrame()
    n_tiles = len(tiles)
    labels = tiles["cell_type"].astype(str).to_numpy() if "cell_type" in tiles else np.array([], dtype=str)
    uncertain = bool_column(tiles, "uncertain")
    anomalous = bool_column(tiles, "is_anomalous")
    scores = float_column(tiles, "anomaly_score")

    counts = {name: int(np.sum(labels == name)) for name in classes}
    uncertain_counts = {name: int(np.sum((labels == name) & uncertain)) for name in classes}
    fractions = {name: counts[name] / n_tiles if n_tiles else math.nan for name in classes}
    kinds = tiles["anomaly_kind"].astype(str).to_numpy() if "anomaly_kind" in tiles else np.array([], dtype=str)
    kind_counts = {}
    for kind in result.anomaly_kinds + sorted(set(kinds[anomalous]) - set(result.anomaly_kinds) - {""}):
        kind_counts[kind] = int(np.sum(anomalous & (kinds == kind)))

    n_cells, cell_counts = _cell_counts(result, classes)
    return {
        "n_tiles": n_tiles,
        "counts": counts,
        "uncertain_counts": uncertain_counts,
        "fractions": fractions,
        "uncertain_fraction": float(uncertain.mean()) if n_tiles else math.nan,
        "anomaly_rate": float(anomalous.mean()) if n_tiles else math.nan,
        "n_anomalous": int(anomalous.sum()),
        "mean_anomaly_score": float(np.nanmean(scores)) if n_tiles and np.isfinite(scores).any() else math.nan,
        "anomaly_kind_counts": kind_counts,
        "n_cells": n_cells,
        "cell_counts": cell_counts,
    }


def _cell_counts(result: ImageResult, classes: list[str]) -> tuple[int | None, dict]:
    """Count detected cells per type; (None, {}) when the ``cells`` placement did not run."""
    cells = result.cells
    if cells is None:
        summary_cells = (result.status.get("summary") or {}).get("n_cells")
        if result.placement == "cells" and isinstance(summary_cells, int):
            return summary_cells, {}
        return None, {}
    if "cell_type" in cells:
        labels = cells["cell_type"].astype(str).to_numpy()
    elif result.tiles is not None and "cell_id" in result.tiles and "cell_id" in cells:
        by_cell = result.tiles.dropna(subset=["cell_id"]).drop_duplicates("cell_id").set_index("cell_id")["cell_type"]
        labels = cells["cell_id"].map(by_cell).astype(str).to_numpy()
    else:
        return len(cells), {}
    return len(cells), {name: int(np.sum(labels == name)) for name in classes}
