"""Grid geometry, tile scale and pyramid level choice."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_micro.errors import ConfigError
from vlm_micro.io import ArrayView
from vlm_micro.tiling import TileSettings, plan_tiles, read_tiles, tile_scale
from vlm_micro.tiling.geometry import grid_origins, valid_window


def _uniform_view(shape, pixel_size_um=None, n_levels=1, modality="fluorescence", value=200):
    rgb = np.full((*shape, 3), value, dtype=np.uint8)
    return ArrayView.from_rgb(rgb, pixel_size_um=pixel_size_um, modality=modality, n_levels=n_levels)


def _plan_all(view, tile_size_px, target=None, **settings):
    """Plan grid tiles without skipping any as background."""
    return plan_tiles(view, TileSettings(min_foreground=0.0, **settings), target, tile_size_px)


def test_grid_origins_cover_axis():
    assert grid_origins(256, 64, 64).tolist() == [0, 64, 128, 192]
    assert grid_origins(250, 64, 64).tolist() == [0, 64, 128, 192]
    assert grid_origins(257, 64, 64).tolist() == [0, 64, 128, 192, 256]
    assert grid_origins(100, 64, 48).tolist() == [0, 48]
    assert grid_origins(30, 64, 64).tolist() == [0]


def test_grid_tiles_inside_image_bounds():
    view = _uniform_view((300, 500))
    tiles = _plan_all(view, 64).tiles
    assert len(tiles) == 5 * 8
    assert (tiles["y"] >= 0).all()
    assert (tiles["x"] >= 0).all()
    assert (tiles["y"] < 300).all()
    assert (tiles["x"] < 500).all()
    assert (tiles["height"] == 64).all()
    assert (tiles["width"] == 64).all()
    assert tiles.loc[0, ["y", "x"]].tolist() == [0, 0]


def test_grid_edge_tiles_marked_and_padded():
    view = _uniform_view((300, 500), value=200)
    tiles = _plan_all(view, 64).tiles
    expected_edge = (tiles["y"] + 64 > 300) | (tiles["x"] + 64 > 500)
    assert tiles["is_edge"].tolist() == expected_edge.tolist()
    assert tiles["qc_flags"][tiles["is_edge"]].str.contains("edge").all()
    assert not tiles["qc_flags"][~tiles["is_edge"]].str.contains("edge").any()

    corner = tiles[(tiles["y"] == 256) & (tiles["x"] == 448)].index[0]
    tile = read_tiles(view, tiles, 64, rows=[corner])[0]
    assert (tile[:44, :52] == 200).all()
    assert (tile[44:] == 0).all()
    assert (tile[:, 52:] == 0).all()


def test_small_image_gives_one_padded_tile():
    view = _uniform_view((40, 30), modality="brightfield", value=100)
    plan = _plan_all(view, 64)
    assert len(plan.tiles) == 1
    row = plan.tiles.iloc[0]
    assert (row["y"], row["x"], row["height"], row["width"]) == (0, 0, 64, 64)
    assert bool(row["is_edge"])
    tile = read_tiles(view, plan.tiles, 64)[0]
    assert (tile[:40, :30] == 100).all()
    assert (tile[40:] == 255).all()
    assert (tile[:, 30:] == 255).all()


def test_overlap_sets_stride():
    view = _uniform_view((200, 200))
    tiles = _plan_all(view, 64, overlap_px=16).tiles
    assert sorted(set(tiles["y"])) == [0, 48, 96, 144]
    assert sorted(set(tiles["x"])) == [0, 48, 96, 144]


def test_overlap_scales_with_pixel_size():
    view = _uniform_view((400, 400), pixel_size_um=0.25)
    tiles = _plan_all(view, 32, target=0.5, overlap_px=8).tiles
    assert (tiles["height"] == 64).all()
    assert sorted(set(tiles["y"]))[:3] == [0, 48, 96]


def test_overlap_not_smaller_than_tile_raises():
    view = _uniform_view((100, 100))
    with pytest.raises(ConfigError, match="overlap_px"):
        _plan_all(view, 32, overlap_px=32)


@pytest.mark.parametrize(
    ("pixel_size_um", "target", "region_px"),
    [(0.5, 0.5, 64), (0.25, 0.5, 128), (0.1, 0.5, 320), (1.0, 0.5, 32), (0.499, 0.5, 64)],
)
def test_tile_region_covers_same_micrometres(pixel_size_um, target, region_px):
    view = _uniform_view((100, 100), pixel_size_um=pixel_size_um)
    scale = tile_scale(view, target, 64)
    assert scale.region_px == region_px
    assert scale.region_px * pixel_size_um == pytest.approx(64 * target, rel=0.02)
    assert not scale.uncalibrated


def test_uncalibrated_view_uses_native_scale():
    view = _uniform_view((200, 200))
    plan = _plan_all(view, 64, target=0.5)
    assert plan.qc["uncalibrated"] is True
    assert plan.qc["scale"] == 1.0
    assert (plan.tiles["height"] == 64).all()
    assert any("pixel size unknown" in warning for warning in plan.qc["warnings"])


def test_missing_target_uses_native_scale():
    view = _uniform_view((200, 200), pixel_size_um=0.25)
    scale = tile_scale(view, None, 64)
    assert scale.uncalibrated
    assert scale.region_px == 64


def test_coarser_image_is_upsampled_with_warning():
    view = _uniform_view((200, 200), pixel_size_um=1.0)
    plan = _plan_all(view, 64, target=0.5)
    assert (plan.tiles["height"] == 32).all()
    assert any("upsampled 2.0x" in warning for warning in plan.qc["warnings"])


@pytest.mark.parametrize(
    ("target", "level"),
    [(0.25, 0), (0.4, 0), (0.5, 1), (0.75, 1), (1.0, 2), (0.99, 2), (4.0, 2)],
)
def test_pyramid_level_not_coarser_than_target(target, level):
    view = _uniform_view((512, 512), pixel_size_um=0.25, n_levels=3)
    scale = tile_scale(view, target, 32)
    assert scale.level == level
    assert view.levels[scale.level].downsample <= scale.downsample * 1.02


def test_valid_window_leaves_out_padding():
    rows, cols = valid_window((-10, 90, 40, 40), (100, 100), 20)
    assert (rows.start, rows.stop) == (5, 20)
    assert (cols.start, cols.stop) == (0, 5)
