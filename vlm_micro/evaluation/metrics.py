"""Classification, ranking and calibration metrics on plain arrays.

Written with numpy and scipy only, so evaluation does not need scikit-learn. The
definitions follow scikit-learn's. Macro-F1 averages the per-class F1 over the classes
that occur in the truth or the predictions. Balanced accuracy is the mean recall over
the classes that occur in the truth. AUROC is the Mann-Whitney statistic with ties
counted as one half.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, labels: list[str]) -> np.ndarray:
    """Count (true, predicted) label pairs.

    Parameters
    ----------
    y_true, y_pred : sequence of str, length n
    labels : list of str
        Row and column order. Pairs with a label outside ``labels`` are not counted.

    Returns
    -------
    (len(labels), len(labels)) int64 ndarray
        Rows are true labels, columns are predicted labels.
    """
    index = {label: k for k, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for truth, prediction in zip(y_true, y_pred):
        if truth in index and prediction in index:
            matrix[index[truth], index[prediction]] += 1
    return matrix


def classification_metrics(y_true, y_pred, labels: list[str] | None = None) -> dict:
    """Compute accuracy, balanced accuracy, macro-F1 and per-class precision and recall.

    Parameters
    ----------
    y_true, y_pred : sequence of str, length n
    labels : list of str, optional
        Class order for ``per_class`` and ``confusion_matrix``; the sorted union of
        ``y_true`` and ``y_pred`` by default. Classes in ``labels`` that occur in neither
        are listed with zero support and left out of the averages.

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``labels``,
        ``confusion_matrix`` (nested lists, rows true) and ``per_class`` mapping each
        label to ``precision``, ``recall``, ``f1`` and ``support``. Precision of a class
        that is never predicted, and recall of a class without support, are 0.0.
    """
    y_true = [str(value) for value in y_true]
    y_pred = [str(value) for value in y_pred]
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    present = set(y_true) | set(y_pred)
    if labels is None:
        labels = sorted(present)
    else:
        labels = list(labels) + sorted(present - set(labels))
    matrix = confusion_matrix(y_true, y_pred, labels)

    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    hits = np.diag(matrix)
    precision = np.divide(hits, predicted, out=np.zeros(len(labels)), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(len(labels)), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(len(labels)), where=denominator > 0)

    occurring = (support > 0) | (predicted > 0)
    n = len(y_true)
    return {
        "n": n,
        "accuracy": float(hits.sum() / n) if n else float("nan"),
        "balanced_accuracy": float(recall[support > 0].mean()) if support.any() else float("nan"),
        "macro_f1": float(f1[occurring].mean()) if occurring.any() else float("nan"),
        "labels": labels,
        "confusion_matrix": matrix.tolist(),
        "per_class": {
            label: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k, label in enumerate(labels)
        },
    }


def macro_f1(y_true, y_pred) -> float:
    """Return the macro-averaged F1 over the classes in the truth or the predictions."""
    return classification_metrics(y_true, y_pred)["macro_f1"]


def roc_auc(y_true, scores) -> float | None:
    """Return the area under the ROC curve, or None when only one class is present.

    Parameters
    ----------
    y_true : sequence of {0, 1} or bool, length n
        1 marks a positive (for anomaly scores: an anomalous tile).
    scores : sequence of float, length n
        Higher means more likely positive.

    Notes
    -----
    Computed as the Mann-Whitney U statistic from average ranks, so tied scores count
    one half, as in scikit-learn's ``roc_auc_score``.
    """
    from scipy.stats import rankdata

    y_true = np.asarray(y_true, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.shape != scores.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but scores has shape {scores.shape}")
    n_positive = int(y_true.sum())
    n_negative = int(y_true.size - n_positive)
    if n_positive == 0 or n_negative == 0:
        return None
    ranks = rankdata(scores)
    u_statistic = ranks[y_true].sum() - n_positive * (n_positive + 1) / 2.0
    return float(u_statistic / (n_positive * n_negative))


def expected_calibration_error(confidence, correct, n_bins: int = 15) -> float:
    """Return the expected calibration error of top-class probabilities.

    Parameters
    ----------
    confidence : sequence of float in [0, 1], length n
        Probability of the predicted class.
    correct : sequence of bool, length n
        Whether the predicted class is the true class.
    n_bins : int
        Equal-width confidence bins on [0, 1].

    Returns
    -------
    float
        Sum over bins of (bin size / n) * |accuracy in bin - mean confidence in bin|;
        NaN for empty input.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidence.size == 0:
        return float("nan")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    # Bin k covers confidences in (k/n_bins, (k+1)/n_bins], and confidence 0 goes to bin 0.
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    error = 0.0
    for k in range(n_bins):
        members = bins == k
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            error += members.mean() * gap
    return float(error)
