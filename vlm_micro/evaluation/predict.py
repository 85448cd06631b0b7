"""Zero-shot predictions for annotated tiles, computed as the labeller computes them.

:func:`predict_tiles` uses :class:`vlm_micro.labeling.Labeler` when that class is
available, so evaluation measures exactly what the pipeline writes. Training uses
:func:`zero_shot_scores` directly for its validation metrics, because the labeller may
cache text embeddings by model checksum and the weights change at every step there.
Both follow the same rules. Class probabilities are a softmax over the cosine
similarities to the class prompt ensembles, times the logit scale. The anomaly score is
``1 - p(normal)`` from a softmax over the normal ensemble and one ensemble per anomaly
kind, times the anomaly logit scale.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from vlm_micro.labeling import zero_shot
from vlm_micro.labeling.vocabulary import Vocabulary

log = logging.getLogger(__name__)


@dataclass
class ZeroShotScores:
    """Zero-shot outputs for n tiles, in the order of the input tiles."""

    class_similarity: np.ndarray  # (n, n_classes) cosine similarity to class ensembles
    state_similarity: np.ndarray  # (n, 1 + n_kinds) cosine similarity; column 0 is normal
    scale: float  # logit scale of the class probabilities
    anomaly_scale: float  # logit scale of the normal-versus-kinds softmax

    @property
    def class_probabilities(self) -> np.ndarray:
        """(n, n_classes) softmax probabilities."""
        return _softmax(self.scale * self.class_similarity)

    @property
    def anomaly_score(self) -> np.ndarray:
        """(n,) anomaly score in [0, 1]: one minus the probability of the normal state."""
        return 1.0 - _softmax(self.anomaly_scale * self.state_similarity)[:, 0]

    @property
    def anomaly_kind_index(self) -> np.ndarray:
        """(n,) index of the most likely anomaly kind (ignoring the normal state)."""
        return np.argmax(self.state_similarity[:, 1:], axis=1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=1, keepdims=True)


@torch.no_grad()
def zero_shot_scores(loaded, vocabulary: Vocabulary, tiles: np.ndarray, modalities: list[str],
                     batch_size: int = 256) -> ZeroShotScores:
    """Score tiles against the class and anomaly prompt ensembles of ``vocabulary``.

    Parameters
    ----------
    loaded : LoadedModel
        The model (put in eval mode for the call and restored afterwards).
    tiles : (n, rows, columns, 3) uint8 ndarray
    modalities : list of str, length n
        Picks the class templates per tile, as the labeller does per image.
    batch_size : int
        Tiles per forward pass.
    """
    model = loaded.model
    was_training = model.training
    model.eval()
    try:
        batches = [zero_shot.encode_tiles(loaded, tiles[start:start + batch_size])
                   for start in range(0, len(tiles), batch_size)]
        image_embeddings = torch.cat(batches) if batches else torch.zeros((0, 1))
        modalities = np.asarray(modalities, dtype=object)
        class_similarity = np.zeros((len(tiles), len(vocabulary.class_names)), dtype=np.float32)
        for modality in sorted(set(modalities)):
            rows = np.flatnonzero(modalities == modality)
            class_embeddings = zero_shot.class_embeddings(loaded, vocabulary, modality or None)
            class_similarity[rows] = (image_embeddings[rows] @ class_embeddings.T).numpy()
        state_embeddings = state_ensembles(loaded, vocabulary)
        state_similarity = (image_embeddings @ state_embeddings.T).numpy() if len(tiles) else np.zeros((0, 1))
        scale = zero_shot.logit_scale(loaded)
        anomaly_scale = zero_shot.anomaly_logit_scale(loaded)
    finally:
        model.train(was_training)
    return ZeroShotScores(class_similarity, state_similarity.astype(np.float32), float(scale), float(anomaly_scale))


def state_ensembles(loaded, vocabulary: Vocabulary) -> torch.Tensor:
    """Return the normal ensemble then one ensemble per anomaly kind, shape (1 + n_kinds, dim)."""
    kinds = vocabulary.anomaly_prompts()
    prompts = [vocabulary.normal_prompts()] + [kinds[name] for name in vocabulary.anomaly_kind_names]
    return torch.stack([zero_shot.prompt_ensemble(loaded, texts) for texts in prompts])


def predict_tiles(loaded, vocabulary: Vocabulary, tiles: np.ndarray, modalities: list[str],
                  batch_size: int = 256, use_labeler: bool = True, label_settings: dict | None = None) -> pd.DataFrame:
    """Predict cell type, class probabilities and anomaly score for every tile.

    Parameters
    ----------
    label_settings : dict, optional
        The ``labeling`` config section for the labeller (modality, thresholds, normal
        references); its text embedding cache is switched off here.

    Returns
    -------
    pandas.DataFrame
        One row per tile: ``cell_type`` (predicted), ``cell_type_prob``, ``prob_<class>``
        for each class, ``anomaly_score`` and ``anomaly_kind``. With the labeller,
        ``anomaly_kind`` is '' below its anomaly threshold; without it, it is the most
        likely kind whatever the score.
    """
    if use_labeler:
        labeler_frame = _predict_with_labeler(loaded, vocabulary, tiles, modalities, batch_size, label_settings)
        if labeler_frame is not None:
            return labeler_frame
    scores = zero_shot_scores(loaded, vocabulary, tiles, modalities, batch_size)
    return scores_to_frame(scores, vocabulary)


def scores_to_frame(scores: ZeroShotScores, vocabulary: Vocabulary) -> pd.DataFrame:
    """Turn :class:`ZeroShotScores` into the prediction table of :func:`predict_tiles`."""
    probabilities = scores.class_probabilities
    names = np.asarray(vocabulary.class_names, dtype=object)
    kinds = np.asarray(vocabulary.anomaly_kind_names, dtype=object)
    frame = pd.DataFrame({
        "cell_type": names[np.argmax(probabilities, axis=1)] if len(probabilities) else [],
        "cell_type_prob": probabilities.max(axis=1) if len(probabilities) else [],
    })
    for k, name in enumerate(vocabulary.class_names):
        frame[f"prob_{name}"] = probabilities[:, k]
    frame["anomaly_score"] = scores.anomaly_score
    frame["anomaly_kind"] = kinds[scores.anomaly_kind_index] if len(probabilities) else []
    return frame


def _predict_with_labeler(loaded, vocabulary, tiles, modalities, batch_size, label_settings) -> pd.DataFrame | None:
    """Run :meth:`Labeler.predict` per modality; None when the labeller is not installed."""
    try:
        from vlm_micro.labeling.labeler import Labeler
        from vlm_micro.labeling.settings import LabelSettings
    except ImportError:
        return None
    settings = LabelSettings.from_dict({**(label_settings or {}), "text_cache": None})
    labeler = Labeler(loaded, vocabulary, settings)
    modalities = np.asarray(modalities, dtype=object)
    parts = []
    for modality in sorted(set(modalities)):
        rows = np.flatnonzero(modalities == modality)
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            frame = labeler.predict(tiles[chunk], modality or None)
            frame.index = chunk
            parts.append(frame)
    if not parts:
        return None
    frame = pd.concat(parts).sort_index()
    columns = ["cell_type", "cell_type_prob"] + [f"prob_{name}" for name in vocabulary.class_names]
    columns += ["anomaly_score", "anomaly_kind"]
    return frame[columns].reset_index(drop=True)
