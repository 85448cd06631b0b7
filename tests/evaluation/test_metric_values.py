"""Metrics on hand-made labels and scores, checked against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vlm_micro.evaluation.evaluate import compute_metrics
from vlm_micro.evaluation.metrics import (
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    roc_auc,
)
from vlm_micro.labeling.vocabulary import parse_vocabulary

TRUTH = ["a", "a", "a", "b", "b", "c"]
PREDICTED = ["a", "a", "b", "b", "c", "c"]


def test_confusion_matrix_rows_are_truth():
    matrix = confusion_matrix(TRUTH, PREDICTED, ["a", "b", "c"])
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_classification_metrics_by_hand():
    metrics = classification_metrics(TRUTH, PREDICTED, ["a", "b", "c"])
    assert metrics["n"] == 6
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # Recall a = 2/3, b = 1/2, c = 1; precision a = 1, b = 1/2, c = 1/2.
    assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5]
    assert metrics["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert metrics["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": f1[0], "support": 3})
    assert metrics["per_class"]["c"]["precision"] == pytest.approx(0.5)


def test_macro_f1_ignores_absent_classes():
    metrics = classification_metrics(["a", "b"], ["a", "b"], ["a", "b", "c"])
    assert metrics["macro_f1"] == 1.0
    assert metrics["per_class"]["c"]["support"] == 0
    assert macro_f1(["a", "b"], ["a", "a"]) == pytest.approx((2 / 3 + 0) / 2)


def test_labels_outside_order_are_appended():
    metrics = classification_metrics(["a", "z"], ["a", "z"], ["a"])
    assert metrics["labels"] == ["a", "z"]


def test_roc_auc_by_hand_with_ties():
    # Pairs (positive, negative): (0.8, 0.1) win, (0.8, 0.4) win, (0.4, 0.1) win, (0.4, 0.4) tie.
    assert roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.1, 0.4]) == pytest.approx(3.5 / 4)
    assert roc_auc([1, 0], [0.2, 0.9]) == 0.0
    assert roc_auc([1, 1], [0.2, 0.9]) is None


def test_expected_calibration_error_by_hand():
    # Bin (0.8, 0.867]: two tiles of confidence 0.85, one correct -> gap 0.35, weight 0.5.
    # Bin (0.267, 0.333]: two tiles of confidence 0.3, both wrong -> gap 0.3, weight 0.5.
    error = expected_calibration_error([0.85, 0.85, 0.3, 0.3], [True, False, False, False])
    assert error == pytest.approx(0.5 * 0.35 + 0.5 * 0.3)
    assert expected_calibration_error([1.0, 1.0], [True, True]) == pytest.approx(0.0)
    assert math.isnan(expected_calibration_error([], []))


def test_compute_metrics_on_prediction_table():
    vocabulary = parse_vocabulary({
        "cell_types": [{"name": "a", "synonyms": ["a cells"]}, {"name": "b", "synonyms": ["b cells"]},
                       {"name": "c", "synonyms": ["c cells"]}],
        "templates": {"default": ["{}."]},
        "anomaly": {"normal_states": ["normal {}"], "kinds": [{"name": "blur", "states": ["blurry {}"]}],
                    "templates": ["{}."]},
    })

    table = pd.DataFrame({
        "cell_type": TRUTH + [""],
        "cell_type_pred": PREDICTED + ["a"],
        "cell_type_prob": [0.9, 0.8, 0.6, 0.7, 0.5, 0.9, 0.4],
        "anomaly": pd.array([0, 0, 1, 0, 1, pd.NA, 0], dtype="Int64"),
        "anomaly_kind": ["", "", "blur", "", "blur", "", ""],
        "anomaly_kind_pred": ["blur"] * 7,
        "anomaly_score": [0.1, 0.2, 0.9, 0.3, 0.25, 0.5, 0.0],
        "modality": ["fluorescence"] * 3 + ["brightfield"] * 4,
    })
    metrics = compute_metrics(table, vocabulary)

    assert metrics["n_tiles"] == 7
    assert metrics["n_cell_type_tiles"] == 6
    assert metrics["n_anomaly_tiles"] == 6
    assert metrics["macro_f1"] == pytest.approx(classification_metrics(TRUTH, PREDICTED)["macro_f1"])
    # Anomalous scores 0.9 and 0.25 against normal 0.1, 0.2, 0.3, 0.0: 3 + 4 wins of 8 pairs.
    assert metrics["anomaly_auroc"] == pytest.approx(7 / 8)
    assert metrics["anomaly_kind_accuracy"] == 1.0
    assert metrics["per_modality"]["fluorescence"]["n_tiles"] == 3
    # Brightfield: anomalous 0.25 beats normal 0.0 but not normal 0.3.
    assert metrics["per_modality"]["brightfield"]["anomaly_auroc"] == pytest.approx(0.5)
    assert 0.0 <= metrics["ece"] <= 1.0
    assert np.array(metrics["confusion_matrix"]).sum() == 6
