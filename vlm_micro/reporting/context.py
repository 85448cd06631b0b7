"""Everything a per-image report shows, gathered once for the HTML and the PDF."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property

import numpy as np
import pandas as pd

from vlm_micro.reporting.gallery import GalleryTile, TileReader, read_gallery, select_anomalies, select_examples
from vlm_micro.reporting.rasters import TileRaster, plane_raster
from vlm_micro.reporting.results import ImageResult
from vlm_micro.reporting.settings import ReportSettings
from vlm_micro.reporting.stats import image_stats

log = logging.getLogger(__name__)

DEFAULT_TILE_PX = 64  # tile side assumed when neither the tiles nor the status give one


@dataclass
class ReportContext:
    """Numbers, rasters and example tiles of one image, ready to render.

    Attributes
    ----------
    result : ImageResult
        What the pipeline stored about the image.
    settings : ReportSettings
        Report options and the labelling thresholds quoted in the text.
    stats : dict
        Output of :func:`vlm_micro.reporting.stats.image_stats`.
    view : dict
        Inputs of the drawing functions: ``thumbnail``, ``shape`` (level-0 rows and
        columns of the first plane), ``tiles`` (first plane only), ``cells``,
        ``placement`` and ``pixel_size_um``.
    raster : TileRaster or None
        Tiles of the first plane on a coarse raster, or None when the plane size is unknown.
    examples : dict
        Class name to its most confident :class:`GalleryTile` objects.
    anomalies : list of GalleryTile
        The tiles with the highest anomaly scores, in decreasing order. A tile that is
        also an example is the same object in both lists.
    generated : str
        Time the report was made, ISO 8601 in UTC.
    """

    result: ImageResult
    settings: ReportSettings
    stats: dict
    view: dict
    raster: TileRaster | None
    examples: dict[str, list[GalleryTile]] = field(default_factory=dict)
    anomalies: list[GalleryTile] = field(default_factory=list)
    generated: str = ""
    # Gallery tile id to (tile, PNG bytes); the tile is kept so that its id is not reused.
    _tile_pngs: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def classes(self) -> list[str]:
        return self.result.class_names

    @property
    def colors(self) -> dict[str, str]:
        return self.result.colors()

    @property
    def unit(self) -> str:
        """Name of the unit that one row of the tile table labels (tiles or cells), for axis labels and legends."""
        return "cells" if self.view["placement"] == "cells" else "tiles"

    @cached_property
    def n_planes(self) -> int:
        tiles = self.result.tiles
        if tiles is None or tiles.empty:
            return 1
        columns = [name for name in ("series", "frame") if name in tiles]
        return max(1, len(tiles[columns].drop_duplicates())) if columns else 1

    @cached_property
    def panels(self):
        """The overlay, heat map and composition figures, drawn on first use (a ReportPanels)."""
        from vlm_micro.reporting.panels import render_panels

        return render_panels(self)

    def tile_png(self, tile: GalleryTile) -> bytes:
        """Return the PNG of a gallery tile as shown in the HTML report, encoded once per tile."""
        from vlm_micro.reporting.figures import rgb_png

        key = id(tile)
        if key not in self._tile_pngs:
            self._tile_pngs[key] = (tile, rgb_png(tile.rgb))
        return self._tile_pngs[key][1]


def nominal_tile_px(result: ImageResult) -> int:
    """Return the tile side in level-0 pixels, from the tiles or from the tile size in um."""
    tiles = result.tiles
    if tiles is not None and len(tiles):
        return int(tiles["height"].median())
    tile_um = result.status.get("tile_size_um")
    if result.pixel_size_um and isinstance(tile_um, (int, float)) and tile_um > 0:
        return max(1, int(round(tile_um / result.pixel_size_um)))
    return DEFAULT_TILE_PX


def build_context(result: ImageResult, settings: ReportSettings, read_config: dict | None) -> ReportContext:
    """Compute statistics and rasters and read the gallery tiles of one image."""
    plane_tiles = result.first_plane_tiles().reset_index(drop=True)
    shape = result.plane_shape()
    placement = result.placement
    view = {
        "thumbnail": result.thumbnail,
        "shape": shape,
        "tiles": plane_tiles,
        "cells": result.cells,
        "placement": placement,
        "pixel_size_um": result.pixel_size_um,
    }
    raster = plane_raster(plane_tiles, result.cells, shape, placement, nominal_tile_px(result)) if shape else None
    all_tiles = result.tiles if result.tiles is not None else pd.DataFrame()
    reader = TileReader(result, read_config)
    # A tile among both the examples and the anomalies is read once. Index labels
    # identify rows only when they are unique.
    cache = {} if all_tiles.index.is_unique else None
    examples = {
        name: read_gallery(result, rows, reader, cache)
        for name, rows in select_examples(all_tiles, result.class_names, settings.gallery_per_class).items()
    }
    anomalies = read_gallery(result, select_anomalies(all_tiles, settings.top_anomalies), reader, cache)
    generated = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return ReportContext(result, settings, image_stats(result), view, raster, examples, anomalies, generated)


def tile_rgb_or_blank(tile: GalleryTile, side: int = 64) -> np.ndarray:
    """Return the tile's pixels, or a light grey square when they could not be read."""
    if tile.rgb is not None and tile.rgb.size:
        return tile.rgb
    return np.full((side, side, 3), 220, dtype=np.uint8)
