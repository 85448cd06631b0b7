"""Anomaly scores from normalised embeddings: zero-shot state prompts and a few-shot memory bank.

Zero-shot, in the manner of WinCLIP: a tile is compared with one prompt ensemble for
the normal state and one per anomaly kind. The softmax over these similarities, at the
model's logit scale, gives p(normal), and the score is ``1 - p(normal)``.

Few-shot: the embeddings of tiles known to be normal form a memory bank. A tile's
distance is ``1 - max cosine similarity`` to the bank. The distance is mapped to [0, 1]
by a logistic curve whose centre and width are fitted on the leave-one-out distances of
the references themselves, so the mapping adapts to how tight the normal class is in
the model's embedding space.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

_CHUNK_ROWS = 4096  # query rows per similarity block, bounding memory to 4096 x bank size
_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
CENTRE_SIGMAS = 3.0  # the few-shot score is 0.5 at the median reference distance plus this many sigmas


def softmax(logits: np.ndarray) -> np.ndarray:
    """Return the softmax over the last axis, computed stably in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)


def zero_shot_anomaly(embeddings: np.ndarray, normal: np.ndarray, kinds: np.ndarray, scale: float):
    """Score tiles against the normal and anomaly-kind prompt ensembles.

    Parameters
    ----------
    embeddings : (n, embed_dim) ndarray
        L2-normalised image embeddings.
    normal : (embed_dim,) ndarray
        Normal-state ensemble.
    kinds : (n_kinds, embed_dim) ndarray
        One ensemble per anomaly kind.
    scale : float
        Logit scale that multiplies the cosine similarities.

    Returns
    -------
    score : (n,) float64 ndarray
        ``1 - p(normal)`` from the softmax over ``[normal, kind_1, ..., kind_k]``, in [0, 1].
    kind_probabilities : (n, n_kinds) float64 ndarray
        Softmax over the kinds only: the probability of each kind given that the tile is
        anomalous. Rows sum to 1.
    """
    texts = np.vstack([np.asarray(normal)[None, :], np.asarray(kinds)])
    logits = scale * (np.asarray(embeddings, dtype=np.float64) @ texts.T.astype(np.float64))
    probabilities = softmax(logits)
    return 1.0 - probabilities[:, 0], softmax(logits[:, 1:])


def top_prompts(embeddings: np.ndarray, prompt_embeddings: np.ndarray, prompts: list[str], k: int = 3) -> list[str]:
    """Return, per tile, the ``k`` prompts with the highest cosine similarity, ';'-joined."""
    similarities = np.asarray(embeddings) @ np.asarray(prompt_embeddings).T
    k = min(k, len(prompts))
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
    cleaned = [prompt.replace(";", ",") for prompt in prompts]
    return [";".join(cleaned[index] for index in row) for row in order]


def nearest_similarity(queries: np.ndarray, bank: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """Return the maximum cosine similarity of each query to the bank, shape (n,).

    With ``exclude_self`` the queries are the bank itself and each row ignores its own
    entry (leave-one-out).
    """
    queries = np.asarray(queries, dtype=np.float32)
    bank = np.asarray(bank, dtype=np.float32)
    out = np.empty(len(queries), dtype=np.float64)
    for start in range(0, len(queries), _CHUNK_ROWS):
        block = queries[start:start + _CHUNK_ROWS] @ bank.T
        if exclude_self:
            rows = np.arange(block.shape[0])
            block[rows, rows + start] = -np.inf
        out[start:start + len(block)] = block.max(axis=1)
    return out


@dataclass(frozen=True)
class MemoryBank:
    """Normal reference embeddings and the distance-to-score mapping fitted on them.

    Attributes
    ----------
    embeddings : (m, embed_dim) float32 ndarray
        L2-normalised reference embeddings, m >= 2.
    centre : float
        Cosine distance that maps to a score of 0.5.
    width : float
        Distance scale of the logistic curve. ``centre`` is ``CENTRE_SIGMAS`` widths above
        the median leave-one-out distance.
    """

    embeddings: np.ndarray
    centre: float
    width: float

    @classmethod
    def fit(cls, embeddings: np.ndarray) -> "MemoryBank":
        """Build a bank from at least two reference embeddings and fit its score mapping."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) < 2:
            raise ValueError(f"a memory bank needs at least 2 reference embeddings, got shape {embeddings.shape}")
        loo = np.clip(1.0 - nearest_similarity(embeddings, embeddings, exclude_self=True), 0.0, 2.0)
        median = float(np.median(loo))
        mad_sigma = _MAD_TO_SIGMA * float(np.median(np.abs(loo - median)))
        # The floor keeps the curve finite when the references are (near) duplicates.
        width = max(mad_sigma, 0.1 * median, 1e-4)
        centre = median + CENTRE_SIGMAS * width
        log.info("memory bank of %d references: median distance %.4f, centre %.4f, width %.4f",
                 len(embeddings), median, centre, width)
        return cls(embeddings=embeddings, centre=centre, width=width)

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """Return the nearest-neighbour cosine distance of each query, shape (n,), in [0, 2]."""
        return np.clip(1.0 - nearest_similarity(queries, self.embeddings), 0.0, 2.0)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Return few-shot anomaly scores in [0, 1], shape (n,)."""
        z = (self.distances(queries) - self.centre) / self.width
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


def combine_scores(zero_shot: np.ndarray, few_shot: np.ndarray | None, few_shot_weight: float) -> np.ndarray:
    """Return the final anomaly score: the zero-shot score, or a weighted mean with the few-shot score."""
    if few_shot is None:
        return np.asarray(zero_shot, dtype=np.float64)
    return (1.0 - few_shot_weight) * np.asarray(zero_shot) + few_shot_weight * np.asarray(few_shot)
