"""Gallery tiles: read from the source image through vlm_micro.io, else from the thumbnail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import fabricate
from vlm_micro.io import ArrayView
from vlm_micro.reporting.gallery import TileReader, crop_thumbnail
from vlm_micro.reporting.results import load_image_result


def test_reader_reads_source_region(tmp_path, monkeypatch):
    out = tmp_path / "results"
    fabricate.write_image(out, "a", seed=4)
    rgb = fabricate.source_image(256, 320, 4)
    opened = []

    def fake_open_views(path, settings, pixel_size_um=None):
        opened.append((path, pixel_size_um))
        return [ArrayView.from_rgb(rgb, path=path, pixel_size_um=pixel_size_um, plane={"series": 0, "frame": None})]

    monkeypatch.setattr("vlm_micro.io.open_views", fake_open_views)
    result = load_image_result(out, "a")
    reader = TileReader(result, {})
    row = result.tiles.iloc[5]
    tile = reader.read(row)
    assert tile.source == "image"
    np.testing.assert_array_equal(tile.rgb, rgb[row["y"] : row["y"] + 64, row["x"] : row["x"] + 64])
    reader.read(result.tiles.iloc[6])
    assert len(opened) == 1  # the image is opened once per report
    assert opened[0][1] == 0.5


def test_reader_reads_real_png_through_io(tmp_path):
    out = tmp_path / "results"
    fabricate.write_image(out, "a", seed=5)
    result = load_image_result(out, "a")
    row = result.tiles.iloc[2]
    tile = TileReader(result, {}).read(row)
    expected = fabricate.source_image(256, 320, 5)[row["y"] : row["y"] + 64, row["x"] : row["x"] + 64]
    assert tile.source == "image"
    assert tile.rgb.shape == (64, 64, 3)
    # The reader may normalise intensities; the tile must still match the source layout.
    assert np.corrcoef(tile.rgb.mean(axis=2).ravel(), expected.mean(axis=2).ravel())[0, 1] > 0.9


def test_reader_falls_back_to_thumbnail(tmp_path):
    out = tmp_path / "results"
    fabricate.write_image(out, "a", seed=6, write_source=False)
    result = load_image_result(out, "a")
    row = result.tiles.iloc[0]
    tile = TileReader(result, {}).read(row)
    assert tile.source == "thumbnail"
    assert tile.rgb.shape == (32, 32, 3)  # the thumbnail has half the resolution
    np.testing.assert_array_equal(tile.rgb, result.thumbnail[row["y"] // 2 : row["y"] // 2 + 32,
                                                              row["x"] // 2 : row["x"] // 2 + 32])


def test_crop_thumbnail_pads_outside():
    thumbnail = np.full((10, 10, 3), 200, dtype=np.uint8)
    row = pd.Series({"y": -4, "x": 8, "height": 8, "width": 8})
    crop = crop_thumbnail(thumbnail, (20, 20), row)
    assert crop.shape == (4, 4, 3)
    assert (crop[:2] == 0).all()
    assert (crop[2:] == 200).all()


def test_crop_thumbnail_outside_image_is_none():
    thumbnail = np.zeros((10, 10, 3), dtype=np.uint8)
    assert crop_thumbnail(thumbnail, (20, 20), pd.Series({"y": 40, "x": 0, "height": 8, "width": 8})) is None


@pytest.mark.parametrize("thumbnail, shape", [(None, (10, 10)), (np.zeros((5, 5, 3), np.uint8), None)])
def test_crop_thumbnail_missing_inputs(thumbnail, shape):
    assert crop_thumbnail(thumbnail, shape, pd.Series({"y": 0, "x": 0, "height": 4, "width": 4})) is None


def test_reader_no_thumbnail_crop_for_other_frames(tmp_path):
    out = tmp_path / "results"
    fabricate.write_image(out, "a", seed=6, write_source=False)
    result = load_image_result(out, "a")
    result.tiles["frame"] = pd.array([0] * len(result.tiles), dtype="Int64")
    later = result.tiles.iloc[0].copy()
    later["frame"] = 1
    reader = TileReader(result, {})
    assert reader.read(result.tiles.iloc[0]).source == "thumbnail"
    tile = reader.read(later)
    assert tile.source == "none"
    assert tile.rgb is None
