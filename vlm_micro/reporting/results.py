"""Read what the pipeline wrote for one image: status, tile and cell tables, thumbnail.

The results folder layout (all paths relative to the run's output folder ``OUT``)::

    status/{image_id}.json          one JSON object per image, ok or failed
    tables/tiles/{image_id}.parquet one row per tile with predictions
    tables/cells/{image_id}.parquet one row per detected cell (``cells`` placement only)
    thumbs/{image_id}.png           RGB thumbnail of the first plane

Reports read these files only and never rerun the model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vlm_micro.errors import VlmMicroError

log = logging.getLogger(__name__)

# Colours for classes that the vocabulary stored in the status file does not colour
# (matplotlib's "tab10" cycle).
FALLBACK_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)
# Name of the bundled demo model. Reports warn that it has never seen real tissue.
DEMO_MODEL_NAME = "vlm-micro-demo"


class ResultsError(VlmMicroError):
    """The results of an image are missing or unreadable, so no report can be written."""


@dataclass
class ImageResult:
    """Everything the pipeline stored about one image.

    Attributes
    ----------
    image_id : str
        Identifier used in every output file name.
    status : dict
        The parsed ``status/{image_id}.json``.
    tiles : DataFrame or None
        Tile table with predictions, or None when the image failed.
    cells : DataFrame or None
        Cell table of the ``cells`` placement, or None for grid placement.
    thumbnail : (rows, columns, 3) uint8 ndarray or None
        Thumbnail of the first plane, or None when the file is missing.
    results_dir : Path
        The run's output folder.
    """

    image_id: str
    status: dict
    tiles: pd.DataFrame | None = None
    cells: pd.DataFrame | None = None
    thumbnail: np.ndarray | None = None
    results_dir: Path = field(default_factory=Path)

    @property
    def ok(self) -> bool:
        return self.status.get("status") == "ok"

    @property
    def path(self) -> str:
        return str(self.status.get("path") or "")

    @property
    def name(self) -> str:
        """File name of the source image (or the image id when the path is unknown)."""
        return Path(self.path).name or self.image_id

    def sheet_metadata(self) -> list[tuple[str, object]]:
        """Return the (column, value) pairs of the image's sample-sheet metadata in sheet order.

        ``metadata_columns`` lists every metadata column of the sheet, also those empty
        for this image, which get None. Status files written before it existed have
        only the ``metadata`` dict, whose keys are sorted.
        """
        metadata = self.status.get("metadata") or {}
        columns = list(self.status.get("metadata_columns") or [])
        columns += [key for key in metadata if key not in columns]
        return [(key, metadata.get(key)) for key in columns]

    @property
    def class_names(self) -> list[str]:
        """Cell types in vocabulary order, extended by any other label found in the tiles."""
        vocabulary = self.status.get("vocabulary") or {}
        names = [str(name) for name in vocabulary.get("classes") or []]
        if self.tiles is not None and "cell_type" in self.tiles:
            for label in self.tiles["cell_type"].dropna().astype(str).unique():
                if label and label not in names:
                    names.append(label)
        return names

    @property
    def anomaly_kinds(self) -> list[str]:
        vocabulary = self.status.get("vocabulary") or {}
        return [str(name) for name in vocabulary.get("anomaly_kinds") or []]

    def colors(self, class_names: list[str] | None = None) -> dict[str, str]:
        """Return a hex colour for every class name (by default :attr:`class_names`), from the vocabulary where it gives one."""
        vocabulary_colors = (self.status.get("vocabulary") or {}).get("colors") or {}
        out = {}
        for index, name in enumerate(self.class_names if class_names is None else class_names):
            color = vocabulary_colors.get(name)
            out[name] = color if isinstance(color, str) and color.startswith("#") else FALLBACK_COLORS[index % 10]
        return out

    @property
    def pixel_size_um(self) -> float | None:
        value = self.status.get("pixel_size_um")
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    @property
    def placement(self) -> str:
        if self.tiles is not None and "placement" in self.tiles and len(self.tiles):
            return str(self.tiles["placement"].iloc[0])
        return "cells" if self.cells is not None else "grid"

    @property
    def model_name(self) -> str:
        return str((self.status.get("model") or {}).get("name") or "")

    def plane_shape(self) -> tuple[int, int] | None:
        """Return the level-0 (rows, columns) of the first plane, or None when unknown."""
        return plane_shape(self.status, self.tiles, self.thumbnail)

    def first_plane_tiles(self) -> pd.DataFrame:
        """Return the tiles of the plane shown in the thumbnail (lowest series, then frame)."""
        return first_plane(self.tiles)


def list_image_ids(results_dir: str | Path) -> list[str]:
    """Return the ids of every image that has a status file, sorted."""
    status_dir = Path(results_dir) / "status"
    if not status_dir.is_dir():
        raise ResultsError(
            f"no status folder in {results_dir}; pass the output folder of a finished `vlm-micro run` as --results"
        )
    return sorted(path.stem for path in status_dir.glob("*.json") if not path.name.startswith("."))


def read_image_list(path: str | Path) -> list[str]:
    """Read the image ids listed by a JSON file, in order.

    The file contains a list of image ids, or an object whose ``images`` list has objects
    with an ``image_id`` (the shard files and shard manifests of the workflow).

    Raises
    ------
    ResultsError
        When the file is missing, is not JSON or has neither form.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"image list not found: {path}; pass an existing JSON file to --image-list") from None
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read image list {path}: {exc}") from exc
    entries = payload.get("images") if isinstance(payload, dict) else payload
    if not isinstance(entries, list):
        raise ResultsError(
            f"image list {path}: expected a JSON list of image ids or an object with an 'images' list"
        )
    image_ids = []
    for position, entry in enumerate(entries):
        image_id = entry.get("image_id") if isinstance(entry, dict) else entry
        if not isinstance(image_id, str) or not image_id:
            raise ResultsError(f"image list {path}: entry {position} has no image id (got {entry!r})")
        image_ids.append(image_id)
    return image_ids


def check_image_id(image_id: str) -> str:
    """Return ``image_id`` unchanged, or raise ResultsError when it cannot be a file name."""
    if not image_id or image_id in (".", "..") or "/" in image_id or "\\" in image_id or "\x00" in image_id:
        raise ResultsError(f"invalid image id {image_id!r}: it must be a file name without '/' or '\\'")
    return image_id


def load_image_result(results_dir: str | Path, image_id: str, thumbnail: bool = True) -> ImageResult:
    """Read the status, tables and (unless ``thumbnail`` is false) the thumbnail of one image.

    Raises
    ------
    ResultsError
        When the status file is missing or invalid, or when an image with status ok
        has no readable tile table.
    """
    result = load_image_status(results_dir, image_id)
    if result.ok:
        result.tiles = _read_parquet(tile_table_path(result))
        cells_path = table_path(result.results_dir, "cells", image_id)
        if cells_path.is_file():
            result.cells = _read_parquet(cells_path)
        if thumbnail:
            result.thumbnail = read_thumbnail(result.results_dir / "thumbs" / f"{image_id}.png")
    return result


def load_image_status(results_dir: str | Path, image_id: str) -> ImageResult:
    """Return the result of one image with its status only, no tables.

    Raises
    ------
    ResultsError
        When the image id is invalid or the status file is missing or invalid.
    """
    check_image_id(image_id)
    results_dir = Path(results_dir)
    status = read_status(results_dir / "status" / f"{image_id}.json")
    return ImageResult(image_id=image_id, status=status, results_dir=results_dir)


def table_path(results_dir: Path, kind: str, image_id: str) -> Path:
    """Return the path of an image's ``tiles`` or ``cells`` table."""
    return results_dir / "tables" / kind / f"{image_id}.parquet"


def tile_table_path(result: ImageResult) -> Path:
    """Return the tile table of an image with status ok; raise ResultsError when it is missing."""
    path = table_path(result.results_dir, "tiles", result.image_id)
    if not path.is_file():
        raise ResultsError(f"tile table missing: {path}; rerun the pipeline for image {result.image_id!r}")
    return path


def read_status(path: Path) -> dict:
    """Read one status JSON file; raise ResultsError when missing or invalid."""
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(
            f"status file not found: {path}; check --image-id or run the pipeline for this image first"
        ) from None
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read status file {path}: {exc}") from exc
    if not isinstance(status, dict):
        raise ResultsError(f"status file {path} must contain a JSON object, got {type(status).__name__}")
    status.setdefault("image_id", path.stem)
    if status.get("status") not in ("ok", "failed"):
        raise ResultsError(f"status file {path}: 'status' is {status.get('status')!r}; expected 'ok' or 'failed'")
    return status


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read table {path}: {exc}") from exc


def read_thumbnail(path: Path) -> np.ndarray | None:
    """Read an RGB thumbnail; return None (with a warning) when it is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        log.warning("thumbnail missing: %s, so the report shows tiles without the image", path)
        return None
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        log.warning("cannot read thumbnail %s (%s), so the report shows tiles without the image", path, exc)
        return None


def first_plane(tiles: pd.DataFrame | None) -> pd.DataFrame:
    """Return the rows of the first plane (lowest series, then lowest frame) of a tile table."""
    if tiles is None or tiles.empty:
        return pd.DataFrame() if tiles is None else tiles
    mask = np.ones(len(tiles), dtype=bool)
    for column in ("series", "frame"):
        if column in tiles and tiles[column].notna().any():
            values = tiles[column]
            mask &= (values == values[mask].min()).to_numpy(dtype=bool, na_value=False)
    return tiles[mask]


def plane_shape(status: dict, tiles: pd.DataFrame | None, thumbnail: np.ndarray | None) -> tuple[int, int] | None:
    """Find the level-0 (rows, columns) of the first plane.

    Looks in this order at ``plane.shape``, the Y and X entries of ``info.shape`` named
    by ``info.axes``, ``info.levels[0]``, the extent of the tiles and the thumbnail.
    """
    plane = status.get("plane") or {}
    info = status.get("info") or {}
    shape = _as_shape(plane.get("shape"))
    if shape:
        return shape
    axes, full_shape = info.get("axes"), info.get("shape")
    if isinstance(axes, str) and isinstance(full_shape, (list, tuple)) and len(axes) == len(full_shape):
        if "Y" in axes and "X" in axes:
            return int(full_shape[axes.index("Y")]), int(full_shape[axes.index("X")])
    shape = _as_shape(_first_level_shape(info.get("levels")))
    if shape:
        return shape
    if tiles is not None and len(tiles):
        rows = int((tiles["y"] + tiles["height"]).max())
        cols = int((tiles["x"] + tiles["width"]).max())
        return rows, cols
    if thumbnail is not None:
        return thumbnail.shape[0], thumbnail.shape[1]
    return None


def _first_level_shape(levels):
    if isinstance(levels, (list, tuple)) and levels:
        first = levels[0]
        return first.get("shape") if isinstance(first, dict) else first
    return None


def _as_shape(value) -> tuple[int, int] | None:
    if isinstance(value, (list, tuple)) and len(value) >= 2:
        try:
            rows, cols = int(value[0]), int(value[1])
        except (TypeError, ValueError):
            return None
        if rows > 0 and cols > 0:
            return rows, cols
    return None
