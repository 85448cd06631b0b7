"""Text-side embeddings of the vocabulary, with an on-disk cache.

For one model, vocabulary and modality this module computes the class embeddings (prompt
ensembles over synonyms times templates), the normal-state ensemble, one ensemble per
anomaly kind, and the embedding of every single anomaly prompt (used to show which
prompts a tile matched). Text encoding runs in float32 whatever the inference
precision, so a cache entry does not depend on it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vlm_micro.atomic import atomic_path
from vlm_micro.labeling.vocabulary import Vocabulary
from vlm_micro.labeling.zero_shot import encode_texts

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the content of a cache file changes


@dataclass(frozen=True)
class TextEmbeddings:
    """L2-normalised text embeddings for one model, vocabulary and modality.

    Attributes
    ----------
    class_names : list of str
    classes : (n_classes, embed_dim) float32 ndarray
    normal : (embed_dim,) float32 ndarray
        Ensemble of the normal-state prompts.
    kind_names : list of str
    kinds : (n_kinds, embed_dim) float32 ndarray
        One ensemble per anomaly kind.
    anomaly_prompts : list of str
        Every anomaly prompt, kinds in vocabulary order.
    anomaly_prompt_embeddings : (n_prompts, embed_dim) float32 ndarray
    """

    class_names: list[str]
    classes: np.ndarray
    normal: np.ndarray
    kind_names: list[str]
    kinds: np.ndarray
    anomaly_prompts: list[str]
    anomaly_prompt_embeddings: np.ndarray


def build_text_embeddings(loaded, vocabulary: Vocabulary, modality: str | None) -> TextEmbeddings:
    """Encode the vocabulary's prompts with ``loaded`` for one modality (no cache)."""
    class_prompts = vocabulary.class_prompts(modality)
    classes = [_ensemble(encode_texts(loaded, class_prompts[name])) for name in vocabulary.class_names]
    normal = _ensemble(encode_texts(loaded, vocabulary.normal_prompts()))

    kind_prompts = vocabulary.anomaly_prompts()
    prompts: list[str] = []
    kinds = []
    prompt_embeddings = []
    for name in vocabulary.anomaly_kind_names:
        embeddings = encode_texts(loaded, kind_prompts[name])
        kinds.append(_ensemble(embeddings))
        prompt_embeddings.append(embeddings)
        prompts.extend(kind_prompts[name])
    return TextEmbeddings(
        class_names=list(vocabulary.class_names),
        classes=torch.stack(classes).numpy().astype(np.float32),
        normal=normal.numpy().astype(np.float32),
        kind_names=list(vocabulary.anomaly_kind_names),
        kinds=torch.stack(kinds).numpy().astype(np.float32),
        anomaly_prompts=prompts,
        anomaly_prompt_embeddings=torch.cat(prompt_embeddings).numpy().astype(np.float32),
    )


def _ensemble(embeddings: torch.Tensor) -> torch.Tensor:
    return F.normalize(embeddings.mean(dim=0), dim=-1)


def cache_key(model_checksum: str, vocabulary_checksum: str, modality: str | None) -> str:
    """Return the cache key of one model, vocabulary and modality."""
    text = f"{CACHE_FORMAT}|{model_checksum}|{vocabulary_checksum}|{modality or 'default'}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cached_text_embeddings(loaded, vocabulary: Vocabulary, modality: str | None,
                           cache_dir: str | Path | None) -> TextEmbeddings:
    """Return text embeddings from ``cache_dir``, computing and storing them on a miss.

    The cache file is ``<cache_dir>/<key>.npz``, keyed by the model checksum, the
    vocabulary checksum and the modality, and written atomically. A file that cannot be
    read is logged and replaced. ``cache_dir`` None disables the cache.
    """
    if not cache_dir:
        return build_text_embeddings(loaded, vocabulary, modality)
    key = cache_key(loaded.checksum, vocabulary.checksum(), modality)
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file():
        try:
            embeddings = _read_cache(path, key)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("text embedding cache %s is unreadable (%s); recomputing it", path, exc)
        else:
            log.debug("text embeddings for modality %s read from %s", modality, path)
            return embeddings
    embeddings = build_text_embeddings(loaded, vocabulary, modality)
    try:
        _write_cache(path, key, embeddings)
    except OSError as exc:
        log.warning("cannot write text embedding cache %s (%s); continuing without it", path, exc)
    return embeddings


def _write_cache(path: Path, key: str, embeddings: TextEmbeddings) -> None:
    arrays = {
        "key": np.array(key),
        "class_names": np.array(embeddings.class_names, dtype=np.str_),
        "classes": embeddings.classes,
        "normal": embeddings.normal,
        "kind_names": np.array(embeddings.kind_names, dtype=np.str_),
        "kinds": embeddings.kinds,
        "anomaly_prompts": np.array(embeddings.anomaly_prompts, dtype=np.str_),
        "anomaly_prompt_embeddings": embeddings.anomaly_prompt_embeddings,
    }
    with atomic_path(path) as tmp:
        # A file handle, because np.savez appends ".npz" to a path that lacks it.
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def _read_cache(path: Path, key: str) -> TextEmbeddings:
    with np.load(path, allow_pickle=False) as data:
        if str(data["key"]) != key:
            raise ValueError("key mismatch")
        return TextEmbeddings(
            class_names=[str(name) for name in data["class_names"]],
            classes=data["classes"].astype(np.float32),
            normal=data["normal"].astype(np.float32),
            kind_names=[str(name) for name in data["kind_names"]],
            kinds=data["kinds"].astype(np.float32),
            anomaly_prompts=[str(prompt) for prompt in data["anomaly_prompts"]],
            anomaly_prompt_embeddings=data["anomaly_prompt_embeddings"].astype(np.float32),
        )
