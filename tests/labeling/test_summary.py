"""Image summaries: composition from tiles or cells, uncertainty and anomaly rates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vlm_micro.labeling import summarize_image


def _tiles(vocabulary, cell_types, cell_ids=None):
    n = len(cell_types)
    frame = pd.DataFrame({
        "tile_id": np.arange(n),
        "y": [0] * n, "x": [64 * i for i in range(n)], "height": 64, "width": 64,
        "cell_type": cell_types,
        "uncertain": [i % 2 == 0 for i in range(n)],
        "anomaly_score": np.linspace(0.0, 0.9, n),
        "is_anomalous": np.linspace(0.0, 0.9, n) >= 0.5,
        "anomaly_kind": ["debris" if s >= 0.5 else "" for s in np.linspace(0.0, 0.9, n)],
    })
    for name in vocabulary.class_names:
        frame[f"prob_{name}"] = [1.0 if t == name else 0.0 for t in cell_types]
    frame["cell_id"] = pd.array(cell_ids if cell_ids is not None else [pd.NA] * n, dtype="Int64")
    return frame


def test_summary_from_tiles(vocabulary):
    tiles = _tiles(vocabulary, ["alpha", "alpha", "beta", "gamma"])
    summary = summarize_image(tiles, None, vocabulary)
    assert summary["unit"] == "tiles"
    assert summary["n_units"] == 4
    assert summary["counts"] == {"alpha": 2, "beta": 1, "gamma": 1}
    assert summary["fractions"] == {"alpha": 0.5, "beta": 0.25, "gamma": 0.25}
    assert summary["dominant_class"] == "alpha"
    assert summary["uncertain_fraction"] == 0.5
    assert summary["anomaly_rate"] == 0.5
    assert summary["mean_anomaly_score"] == pytest.approx(0.45)
    assert summary["anomaly_kind_counts"] == {"debris": 2, "blur": 0}
    assert summary["pooled_probabilities"]["alpha"] == 0.5
    json.dumps(summary)


def test_summary_cells_inherit_tile_label_by_cell_id(vocabulary):
    tiles = _tiles(vocabulary, ["alpha", "beta", "beta"], cell_ids=[10, 11, 12])
    cells = pd.DataFrame({"cell_id": [10, 11, 12, 13], "centroid_y": [5.0] * 4, "centroid_x": [5.0, 70.0, 140.0, 900.0]})
    summary = summarize_image(tiles, cells, vocabulary)
    assert summary["unit"] == "cells"
    assert summary["counts"] == {"alpha": 1, "beta": 2, "gamma": 0}
    assert summary["n_unlabelled"] == 1
    assert summary["n_units"] == 4
    assert summary["fractions"]["beta"] == pytest.approx(2 / 3)


def test_summary_cells_inherit_grid_tile_by_position(vocabulary):
    tiles = _tiles(vocabulary, ["alpha", "gamma"])
    cells = pd.DataFrame({"cell_id": [1, 2, 3], "centroid_y": [10.0, 20.0, 30.0], "centroid_x": [10.0, 70.0, 100.0]})
    summary = summarize_image(tiles, cells, vocabulary)
    assert summary["unit"] == "cells"
    assert summary["counts"] == {"alpha": 1, "beta": 0, "gamma": 2}
    assert summary["n_unlabelled"] == 0


def test_summary_empty_image(vocabulary):
    summary = summarize_image(_tiles(vocabulary, []), None, vocabulary)
    assert summary["n_units"] == 0
    assert summary["fractions"] == {"alpha": 0.0, "beta": 0.0, "gamma": 0.0}
    assert summary["dominant_class"] is None
    assert summary["anomaly_rate"] is None
    assert summary["mean_anomaly_score"] is None
    json.dumps(summary)


def test_summary_cell_ids_repeat_across_frames(vocabulary):
    tiles = _tiles(vocabulary, ["alpha", "beta"], cell_ids=[1, 1])
    tiles["frame"] = [0, 1]
    cells = pd.DataFrame({"cell_id": [1, 1], "frame": [0, 1], "centroid_y": [5.0, 5.0], "centroid_x": [5.0, 5.0]})
    summary = summarize_image(tiles, cells, vocabulary)
    assert summary["counts"] == {"alpha": 1, "beta": 1, "gamma": 0}
