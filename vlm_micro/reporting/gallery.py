"""Example tiles for the report: the most confident per cell type and the most anomalous.

Tile pixels are read again from the source image through :mod:`vlm_micro.io`, at a
pyramid level close to the display size. When the source cannot be reopened (moved,
deleted, or the run used a reader this installation lacks), the tile is cropped from
the stored thumbnail instead, at the thumbnail's lower resolution.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vlm_micro.errors import VlmMicroError
from vlm_micro.reporting.results import ImageResult
from vlm_micro.reporting.stats import bool_column, float_column

log = logging.getLogger(__name__)

DISPLAY_PX = 128  # side of a gallery tile in the HTML report


@dataclass
class GalleryTile:
    """One example tile with its pixels and why the model labelled it so.

    Attributes
    ----------
    row : Series
        The tile's row of the tile table.
    rgb : (rows, columns, 3) uint8 ndarray or None
        Pixels of the tile, or None when neither the source nor the thumbnail has them.
    source : str
        ``"image"`` (read from the source file), ``"thumbnail"`` (cropped from the
        thumbnail) or ``"none"``.
    """

    row: pd.Series
    rgb: np.ndarray | None
    source: str

    @property
    def top_classes(self) -> list[tuple[str, float | None]]:
        return parse_scored_list(self.row.get("cell_type_top3", ""))

    @property
    def top_prompts(self) -> list[tuple[str, float | None]]:
        return parse_scored_list(self.row.get("top_anomaly_prompts", ""))


def parse_scored_list(text) -> list[tuple[str, float | None]]:
    """Split ``"a:0.91;b:0.05"`` into ``[("a", 0.91), ("b", 0.05)]``.

    Entries are separated by ``;`` (or ``|`` when there is no ``;``). An entry without a
    trailing ``:number`` keeps the whole text and a score of None.
    """
    if not isinstance(text, str) or not text.strip():
        return []
    separator = ";" if ";" in text else "|"
    out = []
    for part in text.split(separator):
        part = part.strip()
        if not part:
            continue
        label, _, score = part.rpartition(":")
        try:
            out.append((label.strip(), float(score)))
        except ValueError:
            out.append((part, None))
    return out


def select_examples(tiles: pd.DataFrame, classes: list[str], per_class: int) -> dict[str, pd.DataFrame]:
    """Return, per class, its ``per_class`` most probable tiles (confident ones first)."""
    out = {}
    if tiles.empty or per_class <= 0:
        return {name: tiles.iloc[0:0] for name in classes}
    frame = tiles.assign(_uncertain=bool_column(tiles, "uncertain"), _prob=float_column(tiles, "cell_type_prob"))
    for name in classes:
        members = frame[frame["cell_type"].astype(str) == name]
        members = members.sort_values(["_uncertain", "_prob"], ascending=[True, False], kind="stable")
        out[name] = members.head(per_class).drop(columns=["_uncertain", "_prob"])
    return out


def select_anomalies(tiles: pd.DataFrame, count: int) -> pd.DataFrame:
    """Return the ``count`` tiles with the highest anomaly score, highest first."""
    if tiles.empty or count <= 0:
        return tiles.iloc[0:0]
    scores = float_column(tiles, "anomaly_score")
    order = np.argsort(-np.nan_to_num(scores, nan=-1.0), kind="stable")
    return tiles.iloc[order[:count]]


class TileReader:
    """Read tile pixels from the source image, falling back to the thumbnail.

    Parameters
    ----------
    result : ImageResult
        The image whose tiles are read.
    read_config : dict
        The ``read:`` section of the configuration the run used, so that the plane is
        composed (channels, projection, normalisation) as the model saw it.
    """

    def __init__(self, result: ImageResult, read_config: dict | None):
        self.result = result
        self.read_config = read_config or {}
        self._views = None  # None until opened, [] when the source cannot be opened

    def read(self, row: pd.Series) -> GalleryTile:
        """Read the pixels of one tile (``row`` of the tile table)."""
        view = self._view_for(row)
        if view is not None:
            try:
                return GalleryTile(row, read_tile_region(view, row), "image")
            except (VlmMicroError, OSError, ValueError) as exc:
                log.warning("cannot read tile %s of %s from the source image (%s), so it is cropped from the thumbnail",
                            row.get("tile_id"), self.result.path, exc)
        if not self._in_first_plane(row):
            # The thumbnail shows the first plane only, so it has no pixels of this tile.
            return GalleryTile(row, None, "none")
        crop = crop_thumbnail(self.result.thumbnail, self.result.plane_shape(), row)
        return GalleryTile(row, crop, "thumbnail" if crop is not None else "none")

    def _in_first_plane(self, row: pd.Series) -> bool:
        first = self.result.first_plane_tiles()
        if first.empty:
            return True
        reference = first.iloc[0]
        return all(_plane_key(row.get(name)) == _plane_key(reference.get(name)) for name in ("series", "frame"))

    def _view_for(self, row: pd.Series):
        if self._views is None:
            self._views = self._open_views()
        if not self._views:
            return None
        row_plane = (_plane_key(row.get("series")), _plane_key(row.get("frame")))
        for view in self._views:
            plane = view.plane or {}
            if (_plane_key(plane.get("series")), _plane_key(plane.get("frame"))) == row_plane:
                return view
        return self._views[0]

    def _open_views(self) -> list:
        path = self.result.path
        if not path:
            return []
        try:
            from vlm_micro.io import ReadSettings, open_views

            return list(open_views(path, ReadSettings.from_dict(self.read_config), self.result.pixel_size_um))
        except ImportError as exc:
            log.warning("image reader unavailable (%s), so gallery tiles of %s come from the thumbnail", exc, path)
        except (VlmMicroError, OSError, ValueError) as exc:
            log.warning("cannot reopen %s (%s), so gallery tiles come from the thumbnail", path, exc)
        return []


def _plane_key(value):
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


def read_tile_region(view, row: pd.Series) -> np.ndarray:
    """Read a tile from the pyramid level closest to :data:`DISPLAY_PX` pixels per side."""
    y, x, height, width = (int(row[name]) for name in ("y", "x", "height", "width"))
    level = view.best_level(max(1.0, max(height, width) / DISPLAY_PX))
    downsample = float(view.levels[level].downsample)
    return view.read_region(
        int(round(y / downsample)),
        int(round(x / downsample)),
        max(1, int(round(height / downsample))),
        max(1, int(round(width / downsample))),
        level,
    )


def crop_thumbnail(thumbnail: np.ndarray | None, shape: tuple[int, int] | None, row: pd.Series) -> np.ndarray | None:
    """Crop a tile from the thumbnail, padding with black where it lies outside."""
    if thumbnail is None or shape is None:
        return None
    scale_y = thumbnail.shape[0] / shape[0]
    scale_x = thumbnail.shape[1] / shape[1]
    y0 = int(math.floor(float(row["y"]) * scale_y))
    x0 = int(math.floor(float(row["x"]) * scale_x))
    y1 = max(y0 + 1, int(math.ceil((float(row["y"]) + float(row["height"])) * scale_y)))
    x1 = max(x0 + 1, int(math.ceil((float(row["x"]) + float(row["width"])) * scale_x)))
    out = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
    top, left = max(y0, 0), max(x0, 0)
    bottom, right = min(y1, thumbnail.shape[0]), min(x1, thumbnail.shape[1])
    if bottom <= top or right <= left:
        return None
    out[top - y0 : bottom - y0, left - x0 : right - x0] = thumbnail[top:bottom, left:right]
    return out


def read_gallery(result: ImageResult, tiles: pd.DataFrame, reader: TileReader,
                 cache: dict | None = None) -> list[GalleryTile]:
    """Read every tile of ``tiles`` with ``reader``, in order.

    ``cache`` maps index labels of the tile table to tiles read before. Rows found
    there are not read again, and rows read now are added. Pass it only when the
    index labels are unique.
    """
    out = []
    for label, row in tiles.iterrows():
        if cache is not None and label in cache:
            out.append(cache[label])
            continue
        tile = reader.read(row)
        if cache is not None:
            cache[label] = tile
        out.append(tile)
    return out
