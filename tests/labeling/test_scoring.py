"""Cell type columns: top-3 string, margin and the uncertain flag."""

from __future__ import annotations

import numpy as np

from vlm_micro.labeling.scoring import cell_type_columns


def test_cell_type_columns_values():
    probabilities = np.array([[0.05, 0.91, 0.04], [0.2, 0.3, 0.5]])
    frame = cell_type_columns(probabilities, ["a", "b", "c"], 0.5, 0.1)
    assert frame["cell_type"].tolist() == ["b", "c"]
    assert frame["cell_type_prob"].tolist() == [0.91, 0.5]
    assert frame["cell_type_top3"].tolist() == ["b:0.91;a:0.05;c:0.04", "c:0.50;b:0.30;a:0.20"]
    assert np.allclose(frame["cell_type_margin"], [0.86, 0.2])
    assert frame["prob_a"].tolist() == [0.05, 0.2]


def test_uncertain_by_probability_and_margin():
    probabilities = np.array([
        [0.90, 0.05, 0.05],  # confident
        [0.45, 0.20, 0.35],  # top probability below 0.5
        [0.52, 0.46, 0.02],  # margin 0.06 below 0.1
        [0.50, 0.39, 0.11],  # top probability exactly at the threshold
    ])
    frame = cell_type_columns(probabilities, ["a", "b", "c"], 0.5, 0.1)
    assert frame["uncertain"].tolist() == [False, True, True, False]
    assert frame["uncertain"].dtype == bool


def test_uncertain_thresholds_configurable():
    probabilities = np.array([[0.6, 0.3, 0.1]])
    assert not cell_type_columns(probabilities, ["a", "b", "c"], 0.5, 0.1)["uncertain"][0]
    assert cell_type_columns(probabilities, ["a", "b", "c"], 0.7, 0.1)["uncertain"][0]
    assert cell_type_columns(probabilities, ["a", "b", "c"], 0.5, 0.4)["uncertain"][0]


def test_single_class_and_no_rows():
    frame = cell_type_columns(np.ones((2, 1)), ["only"], 0.5, 0.1)
    assert frame["cell_type_top3"].tolist() == ["only:1.00", "only:1.00"]
    assert frame["cell_type_margin"].tolist() == [1.0, 1.0]
    empty = cell_type_columns(np.zeros((0, 3)), ["a", "b", "c"], 0.5, 0.1)
    assert len(empty) == 0
    assert "prob_c" in empty
