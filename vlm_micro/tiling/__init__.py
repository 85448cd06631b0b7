"""Tiling: tile plans at the model's pixel size, foreground, nuclei and QC per tile.

The grid placement covers the image from (0, 0) with a stride of ``tile_size_px -
overlap_px`` target pixels and skips background tiles. The cells placement centres one
tile on each detected nucleus. Tile coordinates are level-0 pixels of the view, and
tiles are resampled to the target pixel size when read.
"""

from vlm_micro.tiling.foreground import foreground_mask, low_resolution_rgb
from vlm_micro.tiling.geometry import TileScale, tile_scale
from vlm_micro.tiling.nuclei import CELL_COLUMNS, detect_nuclei, segment_nuclei
from vlm_micro.tiling.plan import TILE_COLUMNS, TilePlan, apply_tile_qc, plan_tiles
from vlm_micro.tiling.qc import TileQCAccumulator, focus_measure, measure_tile_qc, saturated_fraction
from vlm_micro.tiling.reading import iter_tile_batches, read_tiles, resample_region
from vlm_micro.tiling.settings import CellSettings, TileSettings

__all__ = [
    "CELL_COLUMNS",
    "TILE_COLUMNS",
    "CellSettings",
    "TilePlan",
    "TileQCAccumulator",
    "TileScale",
    "TileSettings",
    "apply_tile_qc",
    "detect_nuclei",
    "focus_measure",
    "foreground_mask",
    "iter_tile_batches",
    "low_resolution_rgb",
    "measure_tile_qc",
    "plan_tiles",
    "read_tiles",
    "resample_region",
    "saturated_fraction",
    "segment_nuclei",
    "tile_scale",
]
