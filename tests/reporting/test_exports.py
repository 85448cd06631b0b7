"""GeoJSON and label-map exports, read back as QuPath, napari and Fiji would."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from fabricate import CLASSES, PIXEL_SIZE_UM, TILE, VOCABULARY
from qupath_geojson import validate_feature_collection


def _tiles(out, image_id):
    return pd.read_parquet(out / "tables" / "tiles" / f"{image_id}.parquet")


def _geojson(paths):
    return json.loads(paths["geojson"].read_text(encoding="utf-8"))


def test_geojson_grid_valid_for_qupath(reported_run):
    out, _, image_paths, _ = reported_run
    document = _geojson(image_paths["tissue_a"])
    assert validate_feature_collection(document) == []
    tiles = _tiles(out, "tissue_a")
    assert len(document["features"]) == len(tiles)
    colors = VOCABULARY.colors()
    for feature, (_, tile) in zip(document["features"], tiles.iterrows()):
        properties = feature["properties"]
        assert properties["objectType"] == "tile"
        assert properties["isLocked"] is False
        assert properties["classification"]["name"] == tile["cell_type"]
        expected_color = [int(colors[tile["cell_type"]][i : i + 2], 16) for i in (1, 3, 5)]
        assert properties["classification"]["color"] == expected_color
        ring = feature["geometry"]["coordinates"][0]
        assert ring[0] == [tile["x"], tile["y"]]
        assert ring[2] == [tile["x"] + tile["width"], tile["y"] + tile["height"]]
        assert properties["measurements"]["probability"] == pytest.approx(tile["cell_type_prob"], abs=1e-6)
        assert properties["measurements"]["anomaly_score"] == pytest.approx(tile["anomaly_score"], abs=1e-6)
        assert "anomaly_few_shot" not in properties["measurements"]  # NaN is left out


def test_geojson_feature_ids_unique(reported_run):
    _, _, image_paths, _ = reported_run
    ids = [feature["id"] for feature in _geojson(image_paths["tissue_a"])["features"]]
    assert len(set(ids)) == len(ids)


def test_geojson_cells_are_detections(reported_run):
    out, _, image_paths, _ = reported_run
    document = _geojson(image_paths["cells_c"])
    assert validate_feature_collection(document) == []
    cells = pd.read_parquet(out / "tables" / "cells" / "cells_c.parquet").set_index("cell_id")
    assert len(document["features"]) == len(cells)
    for feature in document["features"]:
        assert feature["properties"]["objectType"] == "detection"
        ring = np.array(feature["geometry"]["coordinates"][0][:-1])
        cell = cells.loc[feature["properties"]["measurements"]["cell_id"]]
        assert ring[:, 0].mean() == pytest.approx(cell["centroid_x"], abs=0.05)
        assert ring[:, 1].mean() == pytest.approx(cell["centroid_y"], abs=0.05)
        radius = np.hypot(ring[:, 0] - cell["centroid_x"], ring[:, 1] - cell["centroid_y"])
        assert radius.mean() == pytest.approx(np.sqrt(cell["area_px"] / np.pi), rel=0.01)


def test_geojson_failed_image_is_empty_collection(reported_run):
    _, _, image_paths, _ = reported_run
    document = _geojson(image_paths["broken"])
    assert document == {"type": "FeatureCollection", "features": []}
    assert validate_feature_collection(document) == []


def test_qupath_validator_rejects_open_ring():
    feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
               "properties": {"objectType": "tile", "classification": {"name": "a", "color": [1, 2, 3]}}}
    problems = validate_feature_collection({"type": "FeatureCollection", "features": [feature]})
    assert problems == ["feature 0: ring 0: ring is not closed (first and last positions differ)"]


def test_qupath_validator_rejects_bad_color():
    ring = [[0, 0], [1, 0], [1, 1], [0, 0]]
    feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
               "properties": {"objectType": "tile", "classification": {"name": "a", "color": "#ff0000"}}}
    problems = validate_feature_collection({"type": "FeatureCollection", "features": [feature]})
    assert len(problems) == 1
    assert "classification.color" in problems[0]


def _ome_pixels(path):
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        labels = tif.series[0].asarray()
        ome = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
    images = ome if isinstance(ome, list) else [ome]
    return labels, images[0]["Pixels"], images[0]


def test_label_map_grid_pixel_size_and_classes(reported_run):
    out, _, image_paths, _ = reported_run
    labels, pixels, image = _ome_pixels(image_paths["tissue_a"]["labels"])
    assert labels.dtype == np.uint16
    assert labels.shape == (256 // TILE, 320 // TILE)
    assert pixels["PhysicalSizeX"] == pytest.approx(PIXEL_SIZE_UM * TILE)
    assert pixels["PhysicalSizeY"] == pytest.approx(PIXEL_SIZE_UM * TILE)
    assert pixels["PhysicalSizeXUnit"] == "µm"
    tiles = _tiles(out, "tissue_a")
    expected = np.zeros_like(labels)
    for _, tile in tiles.iterrows():
        expected[tile["y"] // TILE, tile["x"] // TILE] = CLASSES.index(tile["cell_type"]) + 1
    np.testing.assert_array_equal(labels, expected)
    assert (labels == 0).sum() == labels.size - len(tiles)  # skipped background tiles stay 0
    assert "1=lymphocyte" in image["Description"]


def test_label_map_sidecar_lists_classes(reported_run):
    _, _, image_paths, _ = reported_run
    sidecar = json.loads(image_paths["tissue_a"]["labels_json"].read_text(encoding="utf-8"))
    assert [entry["name"] for entry in sidecar["classes"]] == ["background"] + CLASSES
    assert [entry["index"] for entry in sidecar["classes"]] == list(range(len(CLASSES) + 1))
    assert sidecar["pixel_size_um"] == pytest.approx(PIXEL_SIZE_UM * TILE)
    assert sidecar["downsample"] == TILE


def test_label_map_uncalibrated_has_no_physical_size(reported_run):
    _, _, image_paths, _ = reported_run
    labels, pixels, _ = _ome_pixels(image_paths["tissue_b"]["labels"])
    assert labels.shape == (256 // TILE, 320 // TILE)
    assert "PhysicalSizeX" not in pixels


def test_label_map_cells_paints_each_cell(reported_run):
    out, _, image_paths, _ = reported_run
    labels, pixels, _ = _ome_pixels(image_paths["cells_c"]["labels"])
    assert labels.shape == (256, 320)  # small image: one label pixel per image pixel
    assert pixels["PhysicalSizeX"] == pytest.approx(PIXEL_SIZE_UM)
    tiles = _tiles(out, "cells_c").set_index("cell_id")
    cells = pd.read_parquet(out / "tables" / "cells" / "cells_c.parquet")
    painted = 0
    for _, cell in cells.iterrows():
        value = labels[int(round(cell["centroid_y"])), int(round(cell["centroid_x"]))]
        painted += value == CLASSES.index(tiles.loc[cell["cell_id"], "cell_type"]) + 1
    # Overlapping disks may cover a few centroids; most must show their own class.
    assert painted >= 0.8 * len(cells)
    assert set(np.unique(labels)) <= set(range(len(CLASSES) + 1))


def test_label_map_failed_image_is_background(reported_run):
    _, _, image_paths, _ = reported_run
    labels, _, _ = _ome_pixels(image_paths["broken"]["labels"])
    assert labels.shape == (1, 1)
    assert labels[0, 0] == 0
