"""Read annotated tiles through the same reader path as the pipeline.

Each image is opened with :func:`vlm_micro.io.open_views`, and the plane named by the
row's ``series`` and ``frame`` is used (else the first one the reader settings select).
Each annotated region is read with ``ImageView.read_region``. When its size differs from
the model input, it is resized with :func:`vlm_micro.labeling.zero_shot.tiles_to_tensor`,
the function that prepares tiles for the model at labelling time. So a model is trained
and evaluated on the pixels the pipeline gives it.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from vlm_micro.errors import AnnotationError, ImageReadError
from vlm_micro.labeling.zero_shot import tiles_to_tensor

log = logging.getLogger(__name__)


def read_annotation_tiles(table: pd.DataFrame, tile_size: int, read_settings=None,
                          progress: bool = False) -> tuple[np.ndarray, list[str]]:
    """Read the tile of every annotation row as RGB uint8 at the model input size.

    Parameters
    ----------
    table : pandas.DataFrame
        Standard annotation table (see :mod:`vlm_micro.training.annotations`).
    tile_size : int
        Output side in pixels, normally the model's input size.
    read_settings : ReadSettings, optional
        Reader settings (series, z projection, channel colours, percentiles); the
        defaults of :class:`vlm_micro.io.ReadSettings` when omitted.
    progress : bool
        Show a progress bar over images.

    Returns
    -------
    tiles : (n, tile_size, tile_size, 3) uint8 ndarray
        In the row order of ``table``.
    modalities : list of str
        Per row: the table's ``modality`` when given, else the modality of the view.

    Raises
    ------
    AnnotationError
        When an image cannot be read, with the file and the reader's reason.
    """
    from tqdm.auto import tqdm

    from vlm_micro.io import ReadSettings, open_views

    settings = read_settings if read_settings is not None else ReadSettings.from_dict({})
    tiles = np.zeros((len(table), tile_size, tile_size, 3), dtype=np.uint8)
    modalities = [""] * len(table)
    positions = {label: k for k, label in enumerate(table.index)}
    groups = table.groupby("image_path", sort=False)
    for image_path, rows in tqdm(groups, total=groups.ngroups, desc="reading tiles", unit="image", disable=not progress):
        try:
            views = open_views(image_path, settings)
        except ImageReadError as exc:
            raise AnnotationError(f"cannot read annotated image {image_path}: {exc}") from exc
        for label, row in rows.iterrows():
            k = positions[label]
            view = view_for_row(views, row, image_path)
            tiles[k] = read_tile(view, row, tile_size)
            modalities[k] = str(row.get("modality") or "") or view.modality
    return tiles, modalities


def view_for_row(views: list, row, image_path: str):
    """Return the view whose plane matches the row's ``series`` and ``frame`` (the first when unset)."""
    requested = {key: row.get(key) for key in ("series", "frame") if key in row and not pd.isna(row.get(key))}
    if not requested:
        return views[0]
    for view in views:
        if all(view.plane.get(key) == int(value) for key, value in requested.items()):
            return view
    planes = ", ".join(f"series {v.plane.get('series')} frame {v.plane.get('frame')}" for v in views)
    raise AnnotationError(
        f"{image_path}: no plane with {', '.join(f'{k} {int(v)}' for k, v in requested.items())} among the planes read "
        f"({planes}); check the read settings (series, frames) or the annotation row"
    )


def read_tile(view, row, tile_size: int) -> np.ndarray:
    """Read one annotated region of ``view`` as a (tile_size, tile_size, 3) uint8 tile.

    A row without a region (``<NA>`` in y, x, height or width) covers the whole image.
    Large regions are read from the coarsest pyramid level that still has at least
    ``tile_size`` pixels across the region.
    """
    rows, columns = view.shape
    if any(pd.isna(row[column]) for column in ("y", "x", "height", "width")):
        y, x, height, width = 0, 0, rows, columns
    else:
        y, x, height, width = int(row["y"]), int(row["x"]), int(row["height"]), int(row["width"])
    downsample = max(1.0, min(height, width) / tile_size)
    level = view.best_level(downsample)
    factor = view.levels[level].downsample
    region = view.read_region(
        int(y // factor), int(x // factor), max(1, round(height / factor)), max(1, round(width / factor)), level
    )
    if region.shape[:2] == (tile_size, tile_size):
        return region
    # NOTE: a non-square region is stretched to a square tile; pipeline tiles are square.
    return resize_tiles(region[None], tile_size)[0]


def resize_tiles(tiles: np.ndarray, tile_size: int) -> np.ndarray:
    """Resize RGB uint8 tiles with the labeller's resampling, returning uint8 again."""
    scaled = tiles_to_tensor(tiles, tile_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return scaled.mul(255.0).round_().clamp_(0, 255).to(dtype=torch.uint8).permute(0, 2, 3, 1).numpy()
