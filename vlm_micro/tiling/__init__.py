"""Tiling: tile plans at the model's pixel size, foreground, nuclei and QC per tile.

The grid placement covers the image from (0, 0) with a stride of ``tile_size_px -
overlap_px`` target pixels and skips background tiles. The cells placement centres one
tile on each detected nucleus. Tile coordinates are level-0 pixels of the view, and
tiles are resampled to the target pixel size when read.

The names below are imported on first use, so that checking the ``tiling:`` section
(:class:`TileSettings`) does not import scipy and scikit-image.
"""

from vlm_micro.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "CELL_COLUMNS": "vlm_micro.tiling.nuclei",
    "TILE_COLUMNS": "vlm_micro.tiling.plan",
    "CellSettings": "vlm_micro.tiling.settings",
    "TilePlan": "vlm_micro.tiling.plan",
    "TileQCAccumulator": "vlm_micro.tiling.qc",
    "TileScale": "vlm_micro.tiling.geometry",
    "TileSettings": "vlm_micro.tiling.settings",
    "apply_tile_qc": "vlm_micro.tiling.plan",
    "detect_nuclei": "vlm_micro.tiling.nuclei",
    "focus_measure": "vlm_micro.tiling.qc",
    "foreground_mask": "vlm_micro.tiling.foreground",
    "iter_tile_batches": "vlm_micro.tiling.reading",
    "low_resolution_rgb": "vlm_micro.tiling.foreground",
    "measure_tile_qc": "vlm_micro.tiling.qc",
    "plan_tiles": "vlm_micro.tiling.plan",
    "read_tiles": "vlm_micro.tiling.reading",
    "resample_region": "vlm_micro.tiling.reading",
    "saturated_fraction": "vlm_micro.tiling.qc",
    "segment_nuclei": "vlm_micro.tiling.nuclei",
    "tile_scale": "vlm_micro.tiling.geometry",
})
