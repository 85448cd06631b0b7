"""Per-tile cell type columns from class probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd


def cell_type_columns(probabilities: np.ndarray, class_names: list[str], uncertain_probability: float,
                      uncertain_margin: float) -> pd.DataFrame:
    """Turn class probabilities into the cell type columns of the labels table.

    Parameters
    ----------
    probabilities : (n, n_classes) ndarray
        Softmax probabilities, rows summing to 1, columns in ``class_names`` order.
    class_names : list of str
    uncertain_probability, uncertain_margin : float
        A tile is uncertain when its top probability is below ``uncertain_probability``
        or the top-1 minus top-2 probability is below ``uncertain_margin``.

    Returns
    -------
    DataFrame with n rows and the columns cell_type, cell_type_prob, cell_type_top3
    (``"a:0.91;b:0.05;c:0.02"``), cell_type_margin, uncertain and ``prob_<class>``
    for each class.
    """
    return pd.DataFrame(cell_type_arrays(probabilities, class_names, uncertain_probability, uncertain_margin))


def cell_type_arrays(probabilities: np.ndarray, class_names: list[str], uncertain_probability: float,
                     uncertain_margin: float) -> dict[str, np.ndarray]:
    """Return the columns of :func:`cell_type_columns` as a dict of arrays, in column order."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n, n_classes = probabilities.shape
    order = np.argsort(-probabilities, axis=1, kind="stable")
    rows = np.arange(n)
    top1 = probabilities[rows, order[:, 0]] if n_classes else np.zeros(n)
    top2 = probabilities[rows, order[:, 1]] if n_classes > 1 else np.zeros(n)
    names = np.asarray(class_names, dtype=object)
    top3 = [
        ";".join(f"{names[index]}:{probabilities[row, index]:.2f}" for index in order[row, :3])
        for row in range(n)
    ]
    margin = top1 - top2
    columns = {
        "cell_type": names[order[:, 0]] if n else np.array([], dtype=object),
        "cell_type_prob": top1,
        "cell_type_top3": np.array(top3, dtype=object),
        "cell_type_margin": margin,
        "uncertain": (top1 < uncertain_probability) | (margin < uncertain_margin),
    }
    for index, name in enumerate(class_names):
        columns[f"prob_{name}"] = probabilities[:, index]
    return columns
