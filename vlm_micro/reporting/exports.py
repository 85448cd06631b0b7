"""Exports of the predictions for QuPath, napari and Fiji.

* GeoJSON: a FeatureCollection with one Polygon per tile (grid placement, QuPath
  ``objectType`` "tile") or per cell (cells placement, "detection") in level-0 pixel
  coordinates ``[x, y]``. Each is classified by predicted cell type with the vocabulary
  colour and carries probabilities and anomaly scores as QuPath measurements. QuPath
  reads it with File > Import objects.
* Label map: a uint16 OME-TIFF where 0 is background and 1..C are the cell types in
  vocabulary order, one pixel per tile stride (grid) or at a fixed downsample (cells),
  with the physical pixel size scaled to match. The class names are in the OME
  description, in an OME MapAnnotation and in a JSON sidecar beside the file.

NOTE: both exports cover the plane shown in the report (lowest series, then lowest
frame). Tiles of other planes of a multi-series or time-lapse file are left out because
QuPath and the label map address one plane.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from vlm_micro.atomic import atomic_open, atomic_path, write_text
from vlm_micro.reporting.rasters import TileRaster, cell_disks
from vlm_micro.reporting.results import ImageResult
from vlm_micro.reporting.stats import bool_column

log = logging.getLogger(__name__)

CIRCLE_VERTICES = 24  # vertices of the polygon that approximates a nucleus
# Tile-table columns exported as QuPath measurements (numeric only), besides prob_<class>.
MEASUREMENT_COLUMNS = (
    ("cell_type_prob", "probability"),
    ("cell_type_margin", "margin"),
    ("anomaly_score", "anomaly_score"),
    ("anomaly_zero_shot", "anomaly_zero_shot"),
    ("anomaly_few_shot", "anomaly_few_shot"),
    ("anomaly_kind_prob", "anomaly_kind_prob"),
    ("foreground_fraction", "foreground_fraction"),
    ("focus", "focus"),
    ("saturated_fraction", "saturated_fraction"),
    ("tile_id", "tile_id"),
    ("cell_id", "cell_id"),
)


def hex_to_rgb(color: str) -> list[int]:
    """Convert ``"#rrggbb"`` to ``[r, g, b]`` integers 0-255."""
    color = color.lstrip("#")
    return [int(color[i : i + 2], 16) for i in (0, 2, 4)]


def write_geojson(result: ImageResult, tiles: pd.DataFrame, path: Path) -> int:
    """Write the tiles (or cells) of the first plane as a QuPath GeoJSON FeatureCollection.

    Returns the number of features written.
    """
    features = geojson_features(result, tiles)
    collection = {"type": "FeatureCollection", "features": features}
    with atomic_open(path, "w") as handle:
        # allow_nan=False guarantees valid JSON: NaN measurements are left out beforehand.
        json.dump(collection, handle, allow_nan=False, separators=(",", ":"))
    return len(features)


def geojson_features(result: ImageResult, tiles: pd.DataFrame) -> list[dict]:
    """Build one GeoJSON Feature per tile row."""
    if tiles.empty:
        return []
    placement = result.placement
    colors = result.colors()
    rings = _cell_rings(tiles, result.cells) if placement == "cells" else _tile_rings(tiles)
    uncertain = bool_column(tiles, "uncertain")
    anomalous = bool_column(tiles, "is_anomalous")
    measurements = _measurement_rows(tiles)
    tile_ids = tiles["tile_id"].tolist() if "tile_id" in tiles else list(range(len(tiles)))
    labels = tiles["cell_type"].astype(str).tolist() if "cell_type" in tiles else [""] * len(tiles)
    kinds, top3 = (_text_column(tiles, name) for name in ("anomaly_kind", "cell_type_top3"))

    object_type = "detection" if placement == "cells" else "tile"
    noun = placement[:-1] if placement.endswith("s") else placement
    features = []
    for position, (tile_id, label) in enumerate(zip(tile_ids, labels)):
        values = measurements[position]
        values["uncertain"] = int(uncertain[position])
        values["is_anomalous"] = int(anomalous[position])
        object_id = uuid.uuid5(uuid.NAMESPACE_URL, f"vlm-micro:{result.image_id}:{tile_id}")
        features.append({
            "type": "Feature",
            "id": str(object_id),
            "geometry": {"type": "Polygon", "coordinates": [rings[position]]},
            "properties": {
                "objectType": object_type,
                "name": f"{noun} {tile_id}",
                "classification": {"name": label, "color": hex_to_rgb(colors.get(label, "#808080"))},
                "isLocked": False,
                "measurements": values,
                "metadata": {"anomaly_kind": kinds[position], "cell_type_top3": top3[position]},
            },
        })
    return features


def _text_column(tiles: pd.DataFrame, name: str) -> list[str]:
    """Return a column as text, with an empty string for missing and empty values."""
    if name not in tiles:
        return [""] * len(tiles)
    return [str(value or "") for value in tiles[name].tolist()]


def _measurement_rows(tiles: pd.DataFrame) -> list[dict]:
    """Return the QuPath measurements of each tile row: finite numbers only, ids as integers."""
    prob_columns = [column for column in tiles.columns if column.startswith("prob_")]
    columns = []
    for column, name in list(MEASUREMENT_COLUMNS) + [(column, column) for column in prob_columns]:
        if column not in tiles:
            continue
        values = pd.to_numeric(tiles[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        columns.append((name, column in ("tile_id", "cell_id"), values))
    rows = [{} for _ in range(len(tiles))]
    for name, is_id, values in columns:
        for position in np.flatnonzero(np.isfinite(values)):
            number = values[position]
            rows[position][name] = int(number) if is_id else round(float(number), 6)
    return rows


def _tile_rings(tiles: pd.DataFrame) -> list[list[list[float]]]:
    rings = []
    for y, x, height, width in tiles[["y", "x", "height", "width"]].to_numpy(dtype=float):
        rings.append([[x, y], [x + width, y], [x + width, y + height], [x, y + height], [x, y]])
    return rings


def _cell_rings(tiles: pd.DataFrame, cells: pd.DataFrame | None) -> list[list[list[float]]]:
    centre_y, centre_x, radius = cell_disks(tiles, cells)
    angles = np.linspace(0, 2 * np.pi, CIRCLE_VERTICES, endpoint=False)
    rings = []
    for cy, cx, r in zip(centre_y, centre_x, radius):
        ring = [[round(cx + r * math.cos(a), 2), round(cy + r * math.sin(a), 2)] for a in angles]
        ring.append(ring[0])
        rings.append(ring)
    return rings


def class_index_raster(result: ImageResult, tiles: pd.DataFrame, raster: TileRaster) -> np.ndarray:
    """Return the uint16 label map: 0 background, 1..C the cell types in vocabulary order."""
    classes = result.class_names
    if len(classes) > np.iinfo(np.uint16).max:
        raise ValueError(f"{len(classes)} classes do not fit a uint16 label map")
    labels = tiles["cell_type"].astype(str).to_numpy() if "cell_type" in tiles else np.array([], dtype=str)
    lookup = {name: index + 1 for index, name in enumerate(classes)}
    per_tile = np.array([lookup.get(label, 0) for label in labels], dtype=np.uint16)
    return raster.values(per_tile, np.uint16(0)).astype(np.uint16)


def write_label_map(result: ImageResult, tiles: pd.DataFrame, raster: TileRaster, path: Path) -> Path:
    """Write the OME-TIFF label map and its JSON sidecar, and return the sidecar path.

    The physical pixel size is the level-0 pixel size times the raster's downsample.
    Uncalibrated images get no physical pixel size, but the sidecar still gives the
    downsample.
    """
    import tifffile

    labels = class_index_raster(result, tiles, raster)
    classes = ["background"] + result.class_names
    pixel_size = result.pixel_size_um * raster.downsample if result.pixel_size_um else None
    metadata = {
        "axes": "YX",
        "Name": f"{result.image_id} labels",
        "Description": "vlm-micro label map; " + "; ".join(f"{index}={name}" for index, name in enumerate(classes)),
        "MapAnnotation": {"Namespace": "vlm-micro/label-map", **{str(i): name for i, name in enumerate(classes)}},
    }
    options = {}
    if pixel_size:
        metadata.update(PhysicalSizeX=pixel_size, PhysicalSizeXUnit="µm",
                        PhysicalSizeY=pixel_size, PhysicalSizeYUnit="µm")
        options = {"resolution": (1e4 / pixel_size, 1e4 / pixel_size), "resolutionunit": "CENTIMETER"}
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels, ome=True, photometric="minisblack", compression="zlib",
                         metadata=metadata, **options)
    sidecar = path.with_name(path.name.replace(".ome.tif", "") + ".json")
    write_text(sidecar, json.dumps(label_map_sidecar(result, raster, pixel_size, labels.shape), indent=2) + "\n")
    return sidecar


def label_map_sidecar(result: ImageResult, raster: TileRaster, pixel_size: float | None, shape) -> dict:
    """Describe a label map: class index to name and colour, scale and source image."""
    colors = result.colors()
    return {
        "image_id": result.image_id,
        "source": result.path,
        "shape": list(shape),
        "downsample": raster.downsample,
        "pixel_size_um": pixel_size,
        "placement": result.placement,
        "classes": [{"index": 0, "name": "background", "color": None}]
        + [{"index": i + 1, "name": name, "color": colors[name]} for i, name in enumerate(result.class_names)],
    }


def write_failed_exports(result: ImageResult, geojson_path: Path, label_path: Path) -> None:
    """Write placeholder exports for a failed image: no features, a 1 x 1 background map.

    They keep the set of output files the same for every image, so a workflow can
    list them as outputs of every image, failed or not.
    """
    write_text(geojson_path, json.dumps({"type": "FeatureCollection", "features": []}) + "\n")
    write_empty_label_map(result, label_path, "image failed, no labels")


def write_empty_label_map(result: ImageResult, path: Path, reason: str) -> None:
    """Write a 1 x 1 background label map and a sidecar that gives ``reason``."""
    import tifffile

    metadata = {"axes": "YX", "Name": f"{result.image_id} labels", "Description": f"vlm-micro label map; {reason}"}
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.zeros((1, 1), dtype=np.uint16), ome=True, photometric="minisblack",
                         metadata=metadata)
    sidecar = path.with_name(path.name.replace(".ome.tif", "") + ".json")
    payload = {"image_id": result.image_id, "source": result.path, "empty_reason": reason,
               "classes": [{"index": 0, "name": "background", "color": None}]}
    write_text(sidecar, json.dumps(payload, indent=2) + "\n")
