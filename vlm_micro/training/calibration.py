"""Temperature scaling of zero-shot class probabilities.

The labeller turns cosine similarities into probabilities with ``softmax(s / T)``. A
temperature ``T`` fitted on labelled validation tiles (minimum negative log-likelihood)
makes those probabilities match the observed accuracy better than the model's learned
logit scale does. It is stored as ``temperature`` in ``vlm_micro.json``. The anomaly
score gets its own ``anomaly_temperature``, fitted on normal and anomalous tiles.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

MIN_TEMPERATURE = 1e-3
MAX_TEMPERATURE = 10.0
TEMPERATURE_KEYS = ("temperature", "anomaly_temperature")  # keys in vlm_micro.json


def negative_log_likelihood(similarity: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Return the mean NLL of ``targets`` under ``softmax(similarity / temperature)``."""
    logits = similarity.astype(np.float64) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(logits).sum(axis=1))
    return float(np.mean(log_norm - logits[np.arange(len(targets)), targets]))


def fit_temperature(similarity: np.ndarray, targets: np.ndarray) -> float:
    """Fit the softmax temperature that minimises the NLL of the true classes.

    Parameters
    ----------
    similarity : (n, n_classes) float ndarray
        Cosine similarities between tile embeddings and class embeddings.
    targets : (n,) int ndarray
        True class index of each tile.

    Returns
    -------
    float
        Temperature in [1e-3, 10], found by a bounded scalar search over log T.

    Raises
    ------
    ValueError
        When there are no tiles.
    """
    from scipy.optimize import minimize_scalar

    similarity = np.asarray(similarity, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) == 0:
        raise ValueError("fit_temperature needs at least one labelled tile")
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(similarity, targets, float(np.exp(log_t))),
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    temperature = float(np.exp(result.x))
    log.info("fitted temperature %.4f (NLL %.4f) on %d tiles", temperature, float(result.fun), len(targets))
    return temperature


def anomaly_log_loss(state_similarity: np.ndarray, anomaly: np.ndarray, temperature: float) -> float:
    """Return the mean binary cross-entropy of the zero-shot anomaly score at ``temperature``."""
    logits = state_similarity.astype(np.float64) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(logits).sum(axis=1))
    log_p_normal = logits[:, 0] - log_norm
    p_normal = np.exp(log_p_normal)
    log_p_anomalous = np.log(np.clip(1.0 - p_normal, 1e-12, 1.0))
    return float(-np.mean(np.where(anomaly == 1, log_p_anomalous, log_p_normal)))


def fit_anomaly_temperature(state_similarity: np.ndarray, anomaly: np.ndarray) -> float:
    """Fit the temperature of the normal-versus-kinds softmax that minimises the anomaly log loss.

    Parameters
    ----------
    state_similarity : (n, 1 + n_kinds) float ndarray
        Cosine similarities to the normal ensemble (column 0) and each kind ensemble.
    anomaly : (n,) int ndarray
        1 for anomalous tiles, 0 for normal ones.

    Notes
    -----
    With this temperature the score ``1 - p(normal)`` is a calibrated probability of an
    anomaly on the fitting data, so the labeller's anomaly threshold of 0.5 sits where
    both errors cost the same.
    """
    from scipy.optimize import minimize_scalar

    state_similarity = np.asarray(state_similarity, dtype=np.float64)
    anomaly = np.asarray(anomaly, dtype=np.int64)
    result = minimize_scalar(
        lambda log_t: anomaly_log_loss(state_similarity, anomaly, float(np.exp(log_t))),
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    temperature = float(np.exp(result.x))
    log.info("fitted anomaly temperature %.4f (log loss %.4f) on %d tiles", temperature, float(result.fun), len(anomaly))
    return temperature


def fit_model_temperatures(loaded, vocabulary, data) -> dict:
    """Fit ``temperature`` on cell type labels and ``anomaly_temperature`` on anomaly labels.

    Parameters
    ----------
    loaded : LoadedModel
    vocabulary : Vocabulary
    data : TileData
        Labelled validation tiles.

    Returns
    -------
    dict
        The keys whose labels exist in ``data`` (both, one or none), ready to merge into
        ``vlm_micro.json``.
    """
    from vlm_micro.evaluation.predict import zero_shot_scores

    scores = zero_shot_scores(loaded, vocabulary, data.tiles, data.modalities)
    out = {}
    labelled = data.class_index >= 0
    if labelled.any():
        out["temperature"] = fit_temperature(scores.class_similarity[labelled], data.class_index[labelled])
    known = data.anomaly >= 0
    if known.any() and len(np.unique(data.anomaly[known])) == 2:
        out["anomaly_temperature"] = fit_anomaly_temperature(scores.state_similarity[known], data.anomaly[known])
    return out


def class_ece(loaded, vocabulary, data, n_bins: int = 15) -> float | None:
    """Return the expected calibration error of cell type probabilities, or None without labels."""
    from vlm_micro.evaluation.metrics import expected_calibration_error
    from vlm_micro.evaluation.predict import zero_shot_scores

    labelled = data.class_index >= 0
    if not labelled.any():
        return None
    scores = zero_shot_scores(loaded, vocabulary, data.tiles[labelled], [m for m, keep in zip(data.modalities, labelled) if keep])
    probabilities = scores.class_probabilities
    correct = np.argmax(probabilities, axis=1) == data.class_index[labelled]
    return expected_calibration_error(probabilities.max(axis=1), correct, n_bins)
