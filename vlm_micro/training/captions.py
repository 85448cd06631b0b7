"""Training captions built from the labelling vocabulary, tokenised once.

Every caption belongs to a group: one group per cell type (synonyms times the templates
of a modality) and one per anomaly state (``normal`` and each anomaly kind: state phrases
times anomaly templates). A training tile gets one caption sampled from its cell type's
group and one from its state's group, so one image embedding learns to match both the
cell type prompts and the anomaly prompts that the labeller compares it with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vlm_micro.labeling.vocabulary import Vocabulary

MODALITIES = ("fluorescence", "brightfield", "default")


@dataclass
class CaptionBank:
    """All training captions with their tokens and groups.

    Attributes
    ----------
    captions : list of str
        Unique caption texts.
    tokens : (n_captions, context_length) int64 tensor
    groups : (n_captions,) int64 tensor
        Cell type index ``c`` for class captions, ``n_classes + s`` for state captions
        (state 0 is normal, state ``k`` is anomaly kind ``k - 1``).
    n_classes : int
    class_pools : dict
        ``(modality, class index)`` -> int64 array of caption indices.
    state_pools : dict
        State index -> int64 array of caption indices.
    """

    captions: list[str]
    tokens: torch.Tensor
    groups: torch.Tensor
    n_classes: int
    class_pools: dict
    state_pools: dict

    def class_pool(self, modality: str, class_index: int) -> np.ndarray:
        """Return the caption indices for a cell type in images of ``modality``."""
        key = (modality if modality in MODALITIES else "default", class_index)
        return self.class_pools[key]


def build_caption_bank(vocabulary: Vocabulary, tokenizer) -> CaptionBank:
    """Build every class and state caption of ``vocabulary`` and tokenise them.

    Class captions of a modality use that modality's templates plus the default
    templates, so the model also learns the prompts used for images of unknown modality.
    """
    captions: list[str] = []
    groups: list[int] = []
    index: dict[tuple[str, int], int] = {}

    def add(text: str, group: int) -> int:
        key = (text, group)
        if key not in index:
            index[key] = len(captions)
            captions.append(text)
            groups.append(group)
        return index[key]

    n_classes = len(vocabulary.class_names)
    default_prompts = vocabulary.class_prompts("default")
    class_pools = {}
    for modality in MODALITIES:
        prompts = vocabulary.class_prompts(modality)
        for c, name in enumerate(vocabulary.class_names):
            texts = list(dict.fromkeys(prompts[name] + default_prompts[name]))
            class_pools[(modality, c)] = np.array([add(text, c) for text in texts], dtype=np.int64)

    state_prompts = [vocabulary.normal_prompts()] + [vocabulary.anomaly_prompts()[k] for k in vocabulary.anomaly_kind_names]
    state_pools = {
        s: np.array([add(text, n_classes + s) for text in texts], dtype=np.int64) for s, texts in enumerate(state_prompts)
    }
    tokens = tokenizer(captions)
    return CaptionBank(captions, tokens, torch.tensor(groups, dtype=torch.int64), n_classes, class_pools, state_pools)


def sample_captions(bank: CaptionBank, class_index: np.ndarray, state_index: np.ndarray, modalities: list[str],
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sample a cell type caption and an anomaly state caption for every tile.

    Parameters
    ----------
    class_index, state_index : (n,) int arrays
        Cell type index and state index of each tile; -1 where unknown.
    modalities : list of str, length n
        Picks the templates of the cell type captions.
    rng : numpy.random.Generator
        Source of randomness (seeded by the caller for reproducibility).

    Returns
    -------
    class_captions, state_captions : (n,) int64 ndarrays
        Caption indices into ``bank``; -1 where the tile has no such label.
    """
    class_captions = np.full(len(class_index), -1, dtype=np.int64)
    state_captions = np.full(len(class_index), -1, dtype=np.int64)
    for i, (c, s) in enumerate(zip(class_index, state_index)):
        if c >= 0:
            pool = bank.class_pool(modalities[i], int(c))
            class_captions[i] = pool[rng.integers(len(pool))]
        if s >= 0:
            pool = bank.state_pools[int(s)]
            state_captions[i] = pool[rng.integers(len(pool))]
    return class_captions, state_captions


def positive_mask(caption_groups: torch.Tensor, class_index: torch.Tensor, state_index: torch.Tensor,
                  n_classes: int) -> torch.Tensor:
    """Return the (n_images, n_captions) bool matrix of matching image-caption pairs.

    A caption matches every image of its cell type (class captions) or of its anomaly
    state (state captions), so tiles of one class are not pushed away from each other's
    captions as they would be with one positive per row.
    """
    state_group = torch.where(state_index >= 0, state_index + n_classes, torch.full_like(state_index, -2))
    class_group = torch.where(class_index >= 0, class_index, torch.full_like(class_index, -2))
    groups = caption_groups.unsqueeze(0)
    return (groups == class_group.unsqueeze(1)) | (groups == state_group.unsqueeze(1))
