"""Label tiles with cell types and anomaly scores from one open_clip model."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from vlm_micro.errors import ConfigError
from vlm_micro.labeling import zero_shot
from vlm_micro.labeling.anomaly import MemoryBank, combine_scores, top_prompts, zero_shot_anomaly
from vlm_micro.labeling.prefetch import prefetch
from vlm_micro.labeling.scoring import cell_type_arrays
from vlm_micro.labeling.settings import LabelSettings
from vlm_micro.labeling.text import TextEmbeddings, cached_text_embeddings
from vlm_micro.labeling.vocabulary import Vocabulary

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
PREFETCH_DEPTH = 2  # batches read and preprocessed ahead of the model
TOP_ANOMALY_PROMPTS = 3
MAX_MEMORY_BANK = 20000  # larger sets of reference tiles are subsampled to this many


class Labeler:
    """Cell type and anomaly labelling of tiles with one model and vocabulary.

    Parameters
    ----------
    loaded_model : LoadedModel
    vocabulary : Vocabulary
    settings : LabelSettings, optional
        Defaults when None.
    threads : int, optional
        torch intra-op threads (``torch.set_num_threads``), overriding ``settings.threads``.
    read_settings, tile_settings : optional
        How image files in ``settings.normal_references`` are read and tiled.
    target_pixel_size_um : float, optional
        Pixel size (um/px) that image references are resampled to, by default the
        model's ``pixel_size_um``. Pass the value the labelled tiles use.
    """

    def __init__(self, loaded_model, vocabulary: Vocabulary, settings: LabelSettings | None = None,
                 threads: int | None = None, read_settings=None, tile_settings=None,
                 target_pixel_size_um: float | None = None):
        self.loaded = loaded_model
        self.vocabulary = vocabulary
        self.settings = settings or LabelSettings()
        threads = threads or self.settings.threads
        if threads:
            torch.set_num_threads(int(threads))
        self.class_scale = zero_shot.logit_scale(loaded_model)
        self.anomaly_scale = zero_shot.anomaly_logit_scale(loaded_model)
        self._read_settings = read_settings
        self._tile_settings = tile_settings
        self._target_pixel_size_um = target_pixel_size_um or loaded_model.pixel_size_um
        self._text: dict[str, TextEmbeddings] = {}
        self._memory_bank: MemoryBank | None = None
        self._references_pending = bool(self.settings.normal_references)

    @property
    def memory_bank(self) -> MemoryBank | None:
        """Few-shot memory bank of normal references, or None when there are none (yet)."""
        return self._memory_bank

    def modality_for(self, image_modality: str | None) -> str | None:
        """Return the template modality: the setting when forced, else the image's."""
        if self.settings.modality != "auto":
            return self.settings.modality
        return image_modality or None

    def text_embeddings(self, modality: str | None) -> TextEmbeddings:
        """Return the (cached) text embeddings for a template modality."""
        key = modality or "default"
        if key not in self._text:
            self._text[key] = cached_text_embeddings(self.loaded, self.vocabulary, modality, self.settings.text_cache)
        return self._text[key]

    def encode(self, tiles: np.ndarray) -> np.ndarray:
        """Return L2-normalised embeddings of RGB uint8 tiles (n, S, S, 3), shape (n, embed_dim) float32."""
        batch = zero_shot.tiles_to_tensor(tiles, self.loaded.image_size, self.loaded.mean, self.loaded.std)
        return zero_shot.encode_batch(self.loaded, batch).numpy()

    def set_normal_references(self, tiles: np.ndarray, batch_size: int | None = None) -> MemoryBank:
        """Embed tiles known to be normal and use them as the few-shot memory bank.

        Parameters
        ----------
        tiles : (m, S, S, 3) uint8 ndarray
            At least two tiles, at the same pixel size and tile size as the tiles labelled later.
        """
        if len(tiles) < 2:
            raise ConfigError(f"'labeling.normal_references' gave {len(tiles)} tile(s); the few-shot score needs at least 2 normal tiles")
        if len(tiles) > MAX_MEMORY_BANK:
            keep = np.sort(np.random.default_rng(0).choice(len(tiles), MAX_MEMORY_BANK, replace=False))
            log.info("subsampling %d normal reference tiles to %d", len(tiles), MAX_MEMORY_BANK)
            tiles = tiles[keep]
        size = batch_size or self.settings.batch_size or DEFAULT_BATCH_SIZE
        embeddings = np.concatenate([self.encode(tiles[start:start + size]) for start in range(0, len(tiles), size)])
        self._memory_bank = MemoryBank.fit(embeddings)
        self._references_pending = False
        return self._memory_bank

    def _ensure_references(self, tile_size_px: int) -> None:
        if not self._references_pending:
            return
        from vlm_micro.labeling.references import load_reference_tiles

        tiles = load_reference_tiles(self.settings.normal_references, tile_size_px, self._target_pixel_size_um,
                                     self._read_settings, self._tile_settings)
        self.set_normal_references(tiles)

    def predict(self, tiles: np.ndarray, modality: str | None = None) -> pd.DataFrame:
        """Label RGB uint8 tiles.

        Parameters
        ----------
        tiles : (n, S, S, 3) uint8 ndarray
        modality : str, optional
            Modality of the image the tiles come from (``fluorescence`` or
            ``brightfield``). It picks the prompt templates unless the settings force one.

        Returns
        -------
        DataFrame with n rows: cell type columns (see :func:`cell_type_columns`), the
        anomaly columns (see :meth:`score_embeddings`) and ``embedding``.
        """
        tiles = np.asarray(tiles)
        if len(tiles) == 0:
            return self._empty_frame(modality)
        if tiles.ndim == 4:
            self._ensure_references(int(tiles.shape[1]))
        return self.score_embeddings(self.encode(tiles), modality)

    def _empty_frame(self, modality: str | None) -> pd.DataFrame:
        embed_dim = self.text_embeddings(self.modality_for(modality)).classes.shape[1]
        return self.score_embeddings(np.zeros((0, embed_dim), np.float32), modality)

    def score_embeddings(self, embeddings: np.ndarray, modality: str | None = None) -> pd.DataFrame:
        """Turn L2-normalised image embeddings (n, embed_dim) into the labels table.

        The anomaly columns are anomaly_score (final, in [0, 1]), anomaly_zero_shot,
        anomaly_few_shot (NaN without references), anomaly_kind ('' below the
        threshold), anomaly_kind_prob (probability of that kind given an anomaly, NaN
        below the threshold), is_anomalous and top_anomaly_prompts.
        """
        embeddings = np.asarray(embeddings, dtype=np.float32)
        text = self.text_embeddings(self.modality_for(modality))
        probabilities = zero_shot.class_probabilities(torch.from_numpy(embeddings), torch.from_numpy(text.classes),
                                                      self.class_scale)
        columns = cell_type_arrays(probabilities, text.class_names, self.settings.uncertain_probability,
                                   self.settings.uncertain_margin)
        columns.update(self._anomaly_arrays(embeddings, text))
        embedding_column = np.empty(len(embeddings), dtype=object)
        embedding_column[:] = list(embeddings)
        columns["embedding"] = embedding_column
        # One DataFrame from a dict of arrays: adding columns one by one costs more than the scoring.
        return pd.DataFrame(columns)

    def _anomaly_arrays(self, embeddings: np.ndarray, text: TextEmbeddings) -> dict[str, np.ndarray]:
        zero, kind_probabilities = zero_shot_anomaly(embeddings, text.normal, text.kinds, self.anomaly_scale)
        bank = self._memory_bank
        few = bank.scores(embeddings) if bank is not None else None
        score = combine_scores(zero, few, self.settings.few_shot_weight)
        anomalous = score >= self.settings.anomaly_threshold
        best = np.argmax(kind_probabilities, axis=1) if len(embeddings) else np.zeros(0, dtype=int)
        kinds = np.asarray(text.kind_names, dtype=object)
        best_probability = kind_probabilities[np.arange(len(best)), best] if len(best) else np.zeros(0)
        return {
            "anomaly_score": score,
            "anomaly_zero_shot": zero,
            "anomaly_few_shot": few if few is not None else np.full(len(embeddings), np.nan),
            "anomaly_kind": np.where(anomalous, kinds[best] if len(best) else best, "").astype(object),
            "anomaly_kind_prob": np.where(anomalous, best_probability, np.nan),
            "is_anomalous": anomalous,
            "top_anomaly_prompts": np.array(top_prompts(embeddings, text.anomaly_prompt_embeddings, text.anomaly_prompts,
                                                        TOP_ANOMALY_PROMPTS), dtype=object),
        }

    def label_view(self, view, tiles_df: pd.DataFrame, tile_size_px: int, batch_size: int | None = None,
                   on_batch=None) -> pd.DataFrame:
        """Label every tile of a tile table, reading the next batches while the model runs.

        Parameters
        ----------
        view : ImageView
        tiles_df : DataFrame
            Tile table of ``view`` as :func:`vlm_micro.tiling.plan_tiles` returns it.
        tile_size_px : int
            Tile side at the target pixel size.
        batch_size : int, optional
            Tiles per forward pass, by default ``settings.batch_size`` or else 64.
        on_batch : callable, optional
            Called as ``on_batch(positions, tiles)`` with each uint8 batch in the reading
            thread, before preprocessing; the pipeline measures tile QC here so that every
            tile is read once.

        Returns
        -------
        DataFrame with the columns of :meth:`predict`, one row per row of ``tiles_df``,
        with the same index and order.
        """
        from vlm_micro.tiling import iter_tile_batches

        batch_size = batch_size or self.settings.batch_size or DEFAULT_BATCH_SIZE
        modality = getattr(view, "modality", None)
        if len(tiles_df) == 0:
            return self._empty_frame(modality).set_axis(tiles_df.index)
        self._ensure_references(tile_size_px)
        self.text_embeddings(self.modality_for(modality))

        def prepared():
            for positions, tiles in iter_tile_batches(view, tiles_df, tile_size_px, batch_size):
                if on_batch is not None:
                    on_batch(positions, tiles)
                yield positions, zero_shot.tiles_to_tensor(tiles, self.loaded.image_size, self.loaded.mean, self.loaded.std)

        # Embeddings are collected and scored once per view, because building a pandas table
        # per batch has a fixed cost that is noticeable next to a small model.
        embeddings = None
        covered = np.zeros(len(tiles_df), dtype=np.int64)
        for positions, batch in prefetch(prepared(), PREFETCH_DEPTH):
            batch_embeddings = zero_shot.encode_batch(self.loaded, batch).numpy()
            if embeddings is None:
                embeddings = np.zeros((len(tiles_df), batch_embeddings.shape[1]), dtype=np.float32)
            embeddings[positions] = batch_embeddings
            covered[positions] += 1
        if embeddings is None or not np.all(covered == 1):
            raise RuntimeError(f"tile batches covered {int((covered == 1).sum())} of {len(tiles_df)} rows exactly once; "
                               f"iter_tile_batches must yield every row exactly once")
        return self.score_embeddings(embeddings, modality).set_axis(tiles_df.index)
