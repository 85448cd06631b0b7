"""Zero-shot scoring core: tiles and prompts to normalised embeddings and probabilities.

Tiles arrive as RGB uint8 arrays built by the project (never PIL conversions of 16-bit
or float data). They are resized to the model's input size when needed and normalised
with the model's own mean and std.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from vlm_micro.labeling.vocabulary import Vocabulary


def tiles_to_tensor(tiles: np.ndarray, image_size: int, mean, std) -> torch.Tensor:
    """Convert RGB uint8 tiles to a normalised float tensor.

    Parameters
    ----------
    tiles : (n, rows, columns, 3) uint8 ndarray
    image_size : int
        Model input side; tiles of another size are resized bilinearly (antialiased).
    mean, std : sequence of 3 floats
        The model's normalisation constants for values in [0, 1].

    Returns
    -------
    (n, 3, image_size, image_size) float32 tensor
    """
    tiles = np.asarray(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
        raise ValueError(f"tiles must be (n, rows, columns, 3) uint8, got {tiles.shape} {tiles.dtype}")
    batch = torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2).float().div_(255.0)
    if batch.shape[-2:] != (image_size, image_size):
        batch = F.interpolate(batch, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (batch - mean_t) / std_t


@torch.no_grad()
def encode_texts(loaded, prompts: list[str]) -> torch.Tensor:
    """Return L2-normalised text embeddings, shape (len(prompts), embed_dim), float32 on CPU."""
    tokens = loaded.tokenizer(list(prompts)).to(loaded.device)
    features = loaded.model.encode_text(tokens).float()
    return F.normalize(features, dim=-1).cpu()


@torch.no_grad()
def encode_tiles(loaded, tiles: np.ndarray) -> torch.Tensor:
    """Return L2-normalised image embeddings of RGB uint8 tiles, float32 on CPU."""
    return encode_batch(loaded, tiles_to_tensor(tiles, loaded.image_size, loaded.mean, loaded.std))


@torch.no_grad()
def encode_batch(loaded, batch: torch.Tensor) -> torch.Tensor:
    """Return L2-normalised image embeddings of a preprocessed batch.

    Parameters
    ----------
    loaded : LoadedModel
    batch : (n, 3, image_size, image_size) float32 tensor
        Output of :func:`tiles_to_tensor`.

    Returns
    -------
    (n, embed_dim) float32 tensor on the CPU
        The forward pass runs under the model's autocast precision.
    """
    autocast = getattr(loaded, "autocast", None)
    context = autocast() if autocast is not None else contextlib.nullcontext()
    batch = batch.to(loaded.device, non_blocking=True)
    with context:
        features = loaded.model.encode_image(batch)
    return F.normalize(features.float(), dim=-1).cpu()


def prompt_ensemble(loaded, prompts: list[str]) -> torch.Tensor:
    """Return the normalised mean embedding of a list of prompts, shape (embed_dim,)."""
    return F.normalize(encode_texts(loaded, prompts).mean(dim=0), dim=-1)


def class_embeddings(loaded, vocabulary: Vocabulary, modality: str | None) -> torch.Tensor:
    """Return one prompt-ensemble embedding per cell type, shape (n_classes, embed_dim)."""
    prompts = vocabulary.class_prompts(modality)
    return torch.stack([prompt_ensemble(loaded, prompts[name]) for name in vocabulary.class_names])


def logit_scale(loaded) -> float:
    """Return the multiplier applied to cosine similarities before the softmax.

    A temperature fitted on labelled data (stored with the model) wins over the model's
    own learned logit scale.
    """
    if loaded.temperature:
        return 1.0 / loaded.temperature
    return float(loaded.model.logit_scale.exp().item())


def anomaly_logit_scale(loaded) -> float:
    """Return the multiplier for the anomaly state softmax.

    ``anomaly_temperature`` in the model's ``vlm_micro.json`` wins; otherwise the same
    scale as for cell types (:func:`logit_scale`).
    """
    value = (getattr(loaded, "meta", None) or {}).get("anomaly_temperature")
    if value:
        return 1.0 / float(value)
    return logit_scale(loaded)


def class_probabilities(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, scale: float) -> np.ndarray:
    """Return softmax probabilities, shape (n_images, n_texts), from normalised embeddings."""
    logits = scale * image_embeddings @ text_embeddings.T
    return torch.softmax(logits, dim=-1).numpy()
