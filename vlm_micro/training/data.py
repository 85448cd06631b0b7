"""Training data: labelled tiles as arrays, the split by image, and balanced sampling."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vlm_micro.errors import AnnotationError
from vlm_micro.labeling.vocabulary import Vocabulary

log = logging.getLogger(__name__)


@dataclass
class TileData:
    """Labelled tiles ready for training or scoring.

    Attributes
    ----------
    tiles : (n, size, size, 3) uint8 ndarray
    class_index : (n,) int64 ndarray
        Index into the vocabulary's cell types; -1 where the tile has no cell type label.
    state_index : (n,) int64 ndarray
        0 for normal, ``k + 1`` for anomaly kind ``k``; -1 where unknown (no anomaly
        label, or anomalous of an unnamed kind).
    anomaly : (n,) int64 ndarray
        1 anomalous, 0 normal, -1 unknown.
    modalities : list of str
    image_ids : (n,) object ndarray
        The image each tile comes from (its file path), the unit of the train and
        validation split. The file path and not the table's ``image_id`` is used, so
        one file listed under two ids can never land in both sets.
    """

    tiles: np.ndarray
    class_index: np.ndarray
    state_index: np.ndarray
    anomaly: np.ndarray
    modalities: list[str]
    image_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.class_index)

    def subset(self, rows: np.ndarray) -> "TileData":
        """Return the tiles at integer positions ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        return TileData(self.tiles[rows], self.class_index[rows], self.state_index[rows], self.anomaly[rows],
                        [self.modalities[k] for k in rows], self.image_ids[rows])


def build_tile_data(table: pd.DataFrame, tiles: np.ndarray, modalities: list[str], vocabulary: Vocabulary) -> TileData:
    """Encode the labels of a standard annotation table as indices (rows in table order)."""
    class_lookup = {name: k for k, name in enumerate(vocabulary.class_names)}
    kind_lookup = {name: k + 1 for k, name in enumerate(vocabulary.anomaly_kind_names)}
    class_index = np.array([class_lookup.get(name, -1) for name in table["cell_type"]], dtype=np.int64)
    anomaly = table["anomaly"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    kinds = table["anomaly_kind"].tolist()
    state_index = np.where(anomaly == 0, 0, -1).astype(np.int64)
    for row in np.flatnonzero(anomaly == 1):
        state_index[row] = kind_lookup.get(kinds[row], -1)
    return TileData(np.asarray(tiles), class_index, state_index, anomaly, list(modalities),
                    table["image_path"].astype(str).to_numpy(dtype=object))


def split_by_image(image_ids, class_index, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split tile positions into training and validation sets, whole images at a time.

    Images are grouped by their most frequent cell type. About ``val_fraction`` of the
    images of each group (at least one when the group has two or more images) go to
    validation, so every common class is validated even when each image shows one
    class. Random whole images are added when that leaves validation with less than
    two thirds of ``val_fraction`` of the tiles. No image contributes tiles to both
    sets, and at least one image is left for training.

    Returns
    -------
    train_rows, val_rows : int64 ndarrays of tile positions

    Raises
    ------
    AnnotationError
        When there are fewer than two images.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    image_ids = np.asarray(image_ids, dtype=object)
    frame = pd.DataFrame({"image_id": image_ids, "class_index": np.asarray(class_index)})
    images = sorted(frame["image_id"].unique())
    if len(images) < 2:
        raise AnnotationError(
            f"annotations come from {len(images)} image; the train/validation split is by image, so annotate at least two"
        )
    majority = frame.groupby("image_id")["class_index"].agg(lambda values: values.value_counts().idxmax())
    rng = np.random.default_rng(seed)
    val_images: set = set()
    for _, members in sorted(majority.groupby(majority).groups.items()):
        members = sorted(members)
        if len(members) < 2:
            continue
        n_val = max(1, int(round(val_fraction * len(members))))
        n_val = min(n_val, len(members) - 1)
        val_images.update(rng.permutation(np.array(members, dtype=object))[:n_val].tolist())
    # Groups of one image contribute nothing above, so random whole images are added
    # until validation has at least two thirds of its share of the tiles.
    tiles_per_image = frame["image_id"].value_counts()
    minimum_val_tiles = (2 / 3) * val_fraction * len(image_ids)
    for image_id in rng.permutation(np.array(images, dtype=object)):
        val_tiles = tiles_per_image[list(val_images)].sum() if val_images else 0
        if val_tiles >= minimum_val_tiles or len(val_images) >= len(images) - 1:
            break
        val_images.add(image_id)
    is_val = np.array([image_id in val_images for image_id in image_ids])
    log.info("split by image: %d training images (%d tiles), %d validation images (%d tiles)",
             len(images) - len(val_images), int((~is_val).sum()), len(val_images), int(is_val.sum()))
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def sampling_weights(data: TileData, anomaly_share: float = 0.5) -> np.ndarray:
    """Return per-tile sampling probabilities that balance cell types and anomaly states.

    A mixture: ``1 - anomaly_share`` of the mass is spread evenly over cell types (each
    class equally likely, tiles within a class equally likely), ``anomaly_share`` evenly
    over anomaly states (normal and each kind). Tiles without the label in question get
    no mass from that half; a half without any labelled tile gives its mass to the other.
    """
    weights = np.zeros(len(data), dtype=np.float64)
    halves = [(data.class_index, 1.0 - anomaly_share), (data.state_index, anomaly_share)]
    halves = [(index, share) for index, share in halves if (index >= 0).any() and share > 0]
    total_share = sum(share for _, share in halves)
    for index, share in halves:
        labels, counts = np.unique(index[index >= 0], return_counts=True)
        per_label = share / total_share / len(labels)
        for label, count in zip(labels, counts):
            weights[index == label] += per_label / count
    return weights / weights.sum()
