"""Small units of the reporting package: settings, rasters, parsing, statistics, HTML helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from vlm_micro.errors import ConfigError
from vlm_micro.reporting.charts import tick_step
from vlm_micro.reporting.gallery import parse_scored_list, select_anomalies, select_examples
from vlm_micro.reporting.html_common import esc, href
from vlm_micro.reporting.html_report import readable_time
from vlm_micro.reporting.maps import heatmap, map_grid, overlay_map
from vlm_micro.reporting.pdf_report import _use_core_fonts
from vlm_micro.reporting.rasters import grid_raster, grid_stride
from vlm_micro.reporting.results import ImageResult, ResultsError, check_image_id, first_plane, plane_shape
from vlm_micro.reporting.settings import ReportSettings
from vlm_micro.reporting.stats import image_stats


def test_settings_defaults():
    settings = ReportSettings.from_config({})
    assert settings.pdf is True
    assert settings.gallery_per_class == 4
    assert settings.top_anomalies == 8
    assert settings.csv is False
    assert settings.anomaly_threshold == 0.5


def test_settings_read_labeling_thresholds():
    settings = ReportSettings.from_config({"labeling": {"uncertain_probability": 0.7, "anomaly_threshold": 0.3,
                                                        "modality": "auto"}})
    assert settings.uncertain_probability == 0.7
    assert settings.anomaly_threshold == 0.3


@pytest.mark.parametrize("section, message", [
    ({"pdf": "yes"}, "report.pdf: expected true or false, got 'yes'"),
    ({"gallery_per_class": -1}, "report.gallery_per_class: expected a whole number >= 0, got -1"),
    ({"top_anomalies": 2.5}, "report.top_anomalies: expected a whole number >= 0, got 2.5"),
    ({"colour": True}, "report.colour: unknown key"),
])
def test_settings_reject_invalid_values(section, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        ReportSettings.from_config({"report": section})


def test_grid_stride_from_origins():
    tiles = pd.DataFrame({"y": [0, 96, 192], "x": [48, 0, 144], "height": [64] * 3, "width": [64] * 3})
    assert grid_stride(tiles, fallback=64) == 48  # 64-px tiles with 16 px overlap


def test_grid_stride_single_tile_uses_tile_size():
    tiles = pd.DataFrame({"y": [0], "x": [0], "height": [64], "width": [64]})
    assert grid_stride(tiles, fallback=10) == 64


def test_grid_stride_irregular_uses_tile_size():
    tiles = pd.DataFrame({"y": [0, 7, 130], "x": [3, 0, 64], "height": [64] * 3, "width": [64] * 3})
    assert grid_stride(tiles, fallback=64) == 64


def test_grid_raster_places_tiles():
    tiles = pd.DataFrame({"y": [0, 64, 128], "x": [64, 0, 128], "height": [64] * 3, "width": [64] * 3})
    raster = grid_raster(tiles, (150, 200), 64)
    assert raster.index.shape == (3, 4)
    assert raster.index[0, 1] == 0
    assert raster.index[1, 0] == 1
    assert raster.index[2, 2] == 2
    assert (raster.index >= 0).sum() == 3
    assert raster.extent() == (0.0, 256.0, 192.0, 0.0)
    values = raster.values(np.array([[1, 2], [3, 4], [5, 6]]), 0)
    assert values.shape == (3, 4, 2)
    assert values[1, 0].tolist() == [3, 4]


def test_parse_scored_list_with_scores():
    assert parse_scored_list("tumor:0.91;lymphocyte:0.05;fibroblast:0.02") == [
        ("tumor", 0.91), ("lymphocyte", 0.05), ("fibroblast", 0.02)]


def test_parse_scored_list_prompts_without_scores():
    assert parse_scored_list("a micrograph of blurry cells.;an image of debris: dust.") == [
        ("a micrograph of blurry cells.", None), ("an image of debris: dust.", None)]


def test_parse_scored_list_empty():
    assert parse_scored_list("") == []
    assert parse_scored_list(None) == []
    assert parse_scored_list(float("nan")) == []


def test_select_examples_prefers_confident():
    tiles = pd.DataFrame({"cell_type": ["a", "a", "a", "b"], "cell_type_prob": [0.9, 0.95, 0.6, 0.5],
                          "uncertain": [False, True, False, True]})
    chosen = select_examples(tiles, ["a", "b", "c"], per_class=2)
    assert chosen["a"].index.tolist() == [0, 2]
    assert chosen["b"].index.tolist() == [3]
    assert chosen["c"].empty


def test_select_anomalies_highest_first():
    tiles = pd.DataFrame({"anomaly_score": [0.2, np.nan, 0.9, 0.5]})
    assert select_anomalies(tiles, 3).index.tolist() == [2, 3, 0]


def test_first_plane_lowest_series_then_frame():
    tiles = pd.DataFrame({"series": pd.array([1, 0, 0, 0], dtype="Int64"),
                          "frame": pd.array([0, 2, 1, 1], dtype="Int64"), "tile_id": [0, 1, 2, 3]})
    assert first_plane(tiles)["tile_id"].tolist() == [2, 3]


def test_first_plane_without_frames():
    tiles = pd.DataFrame({"series": pd.array([0, 0], dtype="Int64"),
                          "frame": pd.array([pd.NA, pd.NA], dtype="Int64"), "tile_id": [0, 1]})
    assert first_plane(tiles)["tile_id"].tolist() == [0, 1]


def test_plane_shape_from_axes():
    status = {"info": {"axes": "CYX", "shape": [3, 500, 700]}, "plane": {"series": 0}}
    assert plane_shape(status, None, None) == (500, 700)


def test_plane_shape_from_levels_then_tiles():
    assert plane_shape({"info": {"levels": [{"shape": [40, 50]}]}}, None, None) == (40, 50)
    tiles = pd.DataFrame({"y": [0, 64], "x": [0, 128], "height": [64, 64], "width": [64, 64]})
    assert plane_shape({}, tiles, None) == (128, 192)


@pytest.mark.parametrize("image_id", ["", ".", "..", "a/b", "a\\b"])
def test_check_image_id_rejects_paths(image_id):
    with pytest.raises(ResultsError):
        check_image_id(image_id)


def test_image_stats_counts_and_rates():
    tiles = pd.DataFrame({"cell_type": ["a", "a", "b", "a"], "uncertain": [True, False, False, False],
                          "is_anomalous": [False, True, False, False], "anomaly_score": [0.1, 0.8, 0.2, 0.3],
                          "anomaly_kind": ["", "debris", "", ""], "placement": "grid",
                          "y": 0, "x": 0, "height": 64, "width": 64})
    status = {"status": "ok", "vocabulary": {"classes": ["a", "b", "c"], "anomaly_kinds": ["debris", "blur"]}}
    stats = image_stats(ImageResult("x", status, tiles=tiles))
    assert stats["counts"] == {"a": 3, "b": 1, "c": 0}
    assert stats["uncertain_counts"] == {"a": 1, "b": 0, "c": 0}
    assert stats["fractions"]["a"] == pytest.approx(0.75)
    assert stats["uncertain_fraction"] == pytest.approx(0.25)
    assert stats["anomaly_rate"] == pytest.approx(0.25)
    assert stats["mean_anomaly_score"] == pytest.approx(0.35)
    assert stats["anomaly_kind_counts"] == {"debris": 1, "blur": 0}
    assert stats["n_cells"] is None


def test_image_stats_without_tiles():
    status = {"status": "ok", "vocabulary": {"classes": ["a"], "anomaly_kinds": []}}
    stats = image_stats(ImageResult("x", status, tiles=pd.DataFrame(columns=["cell_type"])))
    assert stats["n_tiles"] == 0
    assert np.isnan(stats["fractions"]["a"])
    assert np.isnan(stats["anomaly_rate"])


def test_esc_escapes_quotes_and_markup():
    assert esc('<a href="x">\'') == "&lt;a href=&quot;x&quot;&gt;&#x27;"


def test_href_percent_encodes_each_part():
    assert href("..", "exports", "a b#<c>.geojson") == "../exports/a%20b%23%3Cc%3E.geojson"


def test_readable_time():
    assert readable_time("2025-01-01T10:00:05+00:00") == "2025-01-01 10:00 UTC"
    assert readable_time("yesterday") == "yesterday"


def two_tile_view(uncertain: bool = False, anomalous: bool = False) -> tuple[dict, object]:
    """Return a report view of a 64 x 128 plane with two grid tiles side by side, and its raster."""
    tiles = pd.DataFrame({
        "y": [0, 0], "x": [0, 64], "height": [64, 64], "width": [64, 64],
        "cell_type": ["lymphocyte", "tumor"], "uncertain": [False, uncertain],
        "anomaly_score": [0.1, 0.9], "is_anomalous": [False, anomalous],
    })
    view = {"thumbnail": np.full((64, 128, 3), 128, dtype=np.uint8), "shape": (64, 128), "tiles": tiles,
            "cells": None, "placement": "grid", "pixel_size_um": None}
    return view, grid_raster(tiles, (64, 128), 64)


def test_map_grid_looks_up_tile_per_pixel():
    view, raster = two_tile_view()
    grid = map_grid(raster, view["shape"])
    height, width = grid.size
    assert width == 2 * height
    assert (grid.index[:, : width // 2] == 0).all()
    assert (grid.index[:, width // 2 :] == 1).all()


def test_overlay_map_hatches_only_uncertain_tiles():
    colors = {"lymphocyte": "#1f77b4", "tumor": "#d62728"}
    view, raster = two_tile_view(uncertain=True)
    grid = map_grid(raster, view["shape"])
    image = overlay_map(grid, view, colors, ["lymphocyte", "tumor"])
    half = grid.size[1] // 2
    tumor = np.all(image[:, half:] == (0xd6, 0x27, 0x28), axis=2)
    lymphocyte = np.all(image[:, :half] == (0x1f, 0x77, 0xb4), axis=2)
    assert tumor.mean() > 0.1  # hatch lines and outline in the full class colour
    assert not lymphocyte.any()  # confident tiles are tinted, never painted over
    assert image[5, 5, 2] > image[5, 5, 0]  # tinted towards the blue of lymphocyte


def test_heatmap_outlines_only_flagged_tiles():
    view, raster = two_tile_view(anomalous=True)
    grid = map_grid(raster, view["shape"])
    image = heatmap(grid, view)
    half = grid.size[1] // 2
    cyan = np.all(image == (0x00, 0xe5, 0xff), axis=2)
    assert cyan[:, half:].any()
    assert not cyan[:, :half].any()


@pytest.mark.parametrize("maximum, step", [(1.25, 1.0), (6.25, 1.0), (26.25, 5.0), (125.0, 20.0), (1250.0, 200.0)])
def test_tick_step(maximum, step):
    assert tick_step(maximum) == step


def test_pdf_core_fonts_only_for_windows_1252_text():
    fig = Figure()
    fig.text(0, 0, "size 512 × 512 px, 0.5 µm/px · 3 tiles – “ok”")
    assert _use_core_fonts(fig) is True
    assert fig.texts[0].get_fontweight() == "medium"
    fig.text(0, 1, "condition: Контроль")
    assert _use_core_fonts(fig) is False
