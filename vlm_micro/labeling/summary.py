"""Image-level summary of a labelled tile table: composition, uncertainty, anomalies."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from vlm_micro.labeling.vocabulary import Vocabulary

log = logging.getLogger(__name__)


def summarize_image(tiles_df: pd.DataFrame, cells_df: pd.DataFrame | None, vocabulary: Vocabulary) -> dict:
    """Summarise the labels of one image.

    Parameters
    ----------
    tiles_df : DataFrame
        Tile table with the prediction columns of :meth:`Labeler.predict` (at least
        ``cell_type``, ``uncertain``, ``anomaly_score``, ``is_anomalous``,
        ``anomaly_kind``, ``prob_<class>``) and the tile columns ``y``, ``x``,
        ``height``, ``width`` and, for the cells placement, ``cell_id``.
    cells_df : DataFrame or None
        Detected cells (``cell_id``, ``centroid_y``, ``centroid_x``). When given and not
        empty, composition counts cells: each cell takes the label of the tile with its
        ``cell_id``, or else of the first tile whose box contains its centroid. Cells
        without a tile are counted as ``n_unlabelled``.
    vocabulary : Vocabulary

    Returns
    -------
    dict, JSON-serialisable
        ``unit`` ("cells" or "tiles"), ``n_units``, ``n_tiles``, ``n_unlabelled``,
        ``counts`` and ``fractions`` per class (fractions of labelled units),
        ``dominant_class``, ``uncertain_fraction``, ``anomaly_rate``,
        ``mean_anomaly_score``, ``anomaly_kind_counts`` per kind, and
        ``pooled_probabilities`` (mean ``prob_<class>`` over tiles). Tile-based rates
        are None for an image without tiles.
    """
    classes = list(vocabulary.class_names)
    labels, unit, unlabelled = _unit_labels(tiles_df, cells_df)
    counts = {name: int((labels == name).sum()) for name in classes}
    labelled = sum(counts.values())
    fractions = {name: (counts[name] / labelled if labelled else 0.0) for name in classes}
    dominant = max(classes, key=lambda name: counts[name]) if labelled else None

    n_tiles = int(len(tiles_df))
    kinds = tiles_df["anomaly_kind"].fillna("") if n_tiles else pd.Series([], dtype=object)
    return {
        "unit": unit,
        "n_units": int(labelled + unlabelled),
        "n_tiles": n_tiles,
        "n_unlabelled": int(unlabelled),
        "counts": counts,
        "fractions": fractions,
        "dominant_class": dominant,
        "uncertain_fraction": _mean(tiles_df, "uncertain"),
        "anomaly_rate": _mean(tiles_df, "is_anomalous"),
        "mean_anomaly_score": _mean(tiles_df, "anomaly_score"),
        "anomaly_kind_counts": {name: int((kinds == name).sum()) for name in vocabulary.anomaly_kind_names},
        "pooled_probabilities": {name: _mean(tiles_df, f"prob_{name}") for name in classes},
    }


def _mean(frame: pd.DataFrame, column: str) -> float | None:
    if len(frame) == 0 or column not in frame:
        return None
    value = pd.to_numeric(frame[column], errors="coerce").astype(float).mean()
    return None if np.isnan(value) else float(value)


def _unit_labels(tiles_df: pd.DataFrame, cells_df: pd.DataFrame | None) -> tuple[np.ndarray, str, int]:
    """Return the labels to count, the unit name and the number of units without a label."""
    if cells_df is None or len(cells_df) == 0:
        return tiles_df["cell_type"].to_numpy(dtype=object) if len(tiles_df) else np.array([], dtype=object), "tiles", 0
    labels = _labels_by_cell_id(tiles_df, cells_df)
    missing = pd.isna(labels)
    if missing.any() and {"centroid_y", "centroid_x"} <= set(cells_df.columns):
        labels[missing] = _labels_by_position(tiles_df, cells_df.loc[missing])
    labels = pd.Series(labels, dtype=object)
    unlabelled = int(labels.isna().sum())
    return labels.dropna().to_numpy(dtype=object), "cells", unlabelled


# Plane columns that the pipeline adds to both tables; cell ids repeat across planes.
_PLANE_KEYS = ("series", "frame")


def _labels_by_cell_id(tiles_df: pd.DataFrame, cells_df: pd.DataFrame) -> np.ndarray:
    labels = np.full(len(cells_df), None, dtype=object)
    if "cell_id" not in tiles_df or "cell_id" not in cells_df or len(tiles_df) == 0:
        return labels
    keys = ["cell_id"] + [key for key in _PLANE_KEYS if key in tiles_df and key in cells_df]
    first = tiles_df.dropna(subset=["cell_id"]).drop_duplicates(keys)
    if len(first) == 0:
        return labels
    left = cells_df[keys].astype({"cell_id": "int64"}).reset_index(drop=True)
    right = first[keys + ["cell_type"]].astype({"cell_id": "int64"})
    merged = left.merge(right, on=keys, how="left", sort=False)
    return merged["cell_type"].to_numpy(dtype=object)


_CELL_CHUNK = 1024  # cells tested against all tile boxes at once


def _labels_by_position(tiles_df: pd.DataFrame, cells: pd.DataFrame) -> np.ndarray:
    """Return the label of the first tile whose level-0 box contains each cell centroid."""
    labels = np.full(len(cells), None, dtype=object)
    if len(tiles_df) == 0:
        return labels
    top = tiles_df["y"].to_numpy(dtype=np.float64)
    left = tiles_df["x"].to_numpy(dtype=np.float64)
    bottom = top + tiles_df["height"].to_numpy(dtype=np.float64)
    right = left + tiles_df["width"].to_numpy(dtype=np.float64)
    names = tiles_df["cell_type"].to_numpy(dtype=object)
    centroids = cells[["centroid_y", "centroid_x"]].to_numpy(dtype=np.float64)
    for start in range(0, len(centroids), _CELL_CHUNK):
        cy = centroids[start:start + _CELL_CHUNK, :1]
        cx = centroids[start:start + _CELL_CHUNK, 1:]
        inside = (top <= cy) & (cy < bottom) & (left <= cx) & (cx < right)
        hit = inside.any(axis=1)
        first = inside.argmax(axis=1)
        labels[start:start + len(cy)][hit] = names[first[hit]]
    return labels
