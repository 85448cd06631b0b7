"""Tiles of images known to be normal, for the few-shot anomaly memory bank.

A reference is either an image file, which is read and tiled like any input image
(background tiles skipped), or a folder of tile images. Tile files are resampled to
the tile size; 8-bit RGB, RGBA and greyscale PNG or JPEG tiles are read with Pillow
as they are, any other file goes through the project's image reader, which normalises
16-bit and float data.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vlm_micro.errors import ConfigError, ImageReadError

log = logging.getLogger(__name__)

TILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_PLAIN_PIL_MODES = ("RGB", "RGBA", "L", "P")


def load_reference_tiles(paths, tile_size_px: int, pixel_size_um: float | None = None,
                         read_settings=None, tile_settings=None) -> np.ndarray:
    """Read the tiles of every normal reference.

    Parameters
    ----------
    paths : sequence of str or Path
        Image files or folders of tile images.
    tile_size_px : int
        Side of the returned tiles, in pixels at the target pixel size.
    pixel_size_um : float, optional
        Target pixel size that image references are resampled to. None keeps their native scale.
    read_settings, tile_settings : ReadSettings, TileSettings, optional
        How image references are read and tiled. None uses the defaults.

    Returns
    -------
    tiles : (n, tile_size_px, tile_size_px, 3) uint8 ndarray

    Raises
    ------
    ConfigError
        When a path does not exist or a folder contains no tile images.
    """
    parts = []
    for path in map(Path, paths):
        if path.is_dir():
            parts.append(_folder_tiles(path, tile_size_px))
        elif path.is_file():
            parts.append(_image_tiles(path, tile_size_px, pixel_size_um, read_settings, tile_settings))
        else:
            raise ConfigError(f"'labeling.normal_references' entry not found: {path}; give an image file or a folder of tile images")
    tiles = np.concatenate(parts) if parts else np.zeros((0, tile_size_px, tile_size_px, 3), np.uint8)
    log.info("read %d normal reference tiles from %d path(s)", len(tiles), len(parts))
    return tiles


def _folder_tiles(folder: Path, tile_size_px: int) -> np.ndarray:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TILE_SUFFIXES)
    if not files:
        raise ConfigError(
            f"'labeling.normal_references' folder {folder} has no tile images ({', '.join(TILE_SUFFIXES)})"
        )
    return np.stack([_resize(_read_tile_file(path), tile_size_px) for path in files])


def _read_tile_file(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode in _PLAIN_PIL_MODES and getattr(image, "n_frames", 1) == 1:
                return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError):
        log.debug("Pillow cannot read %s; trying the image reader", path)
    return _whole_view(path)


def _whole_view(path: Path) -> np.ndarray:
    from vlm_micro.io import ReadSettings, open_views

    views = open_views(path, ReadSettings.from_dict({}))
    if not views:
        raise ImageReadError(f"{path}: no image plane to use as a normal reference tile")
    rows, cols = views[0].shape
    return views[0].read_region(0, 0, rows, cols)


def _resize(tile: np.ndarray, tile_size_px: int) -> np.ndarray:
    from PIL import Image

    if tile.shape[:2] == (tile_size_px, tile_size_px):
        return tile
    # Pillow's resize filters over the whole source footprint, so a shrink is antialiased.
    image = Image.fromarray(np.ascontiguousarray(tile))
    return np.asarray(image.resize((tile_size_px, tile_size_px), Image.Resampling.BILINEAR))


def _image_tiles(path: Path, tile_size_px: int, pixel_size_um, read_settings, tile_settings) -> np.ndarray:
    from vlm_micro.io import ReadSettings, open_views
    from vlm_micro.tiling import TileSettings, plan_tiles, read_tiles

    read_settings = read_settings or ReadSettings.from_dict({})
    tile_settings = tile_settings or TileSettings.from_dict({})
    parts = []
    for view in open_views(path, read_settings):
        plan = plan_tiles(view, tile_settings, pixel_size_um, tile_size_px)
        if len(plan.tiles):
            parts.append(read_tiles(view, plan.tiles, tile_size_px))
    if not parts:
        log.warning("normal reference %s has no foreground tiles", path)
        return np.zeros((0, tile_size_px, tile_size_px, 3), np.uint8)
    return np.concatenate(parts)
