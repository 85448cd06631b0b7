"""Property tests: grid tiles stay on the image and cover it, for any shape and settings."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vlm_micro.io import ArrayView, Level
from vlm_micro.tiling import TileSettings, plan_tiles, read_tiles, tile_scale
from vlm_micro.tiling.geometry import grid_boxes

PIXEL_SIZES = st.sampled_from([None, 0.1, 0.25, 0.3, 0.5, 0.499, 1.0, 2.0])


@st.composite
def grid_cases(draw, max_side=3000):
    rows = draw(st.integers(1, max_side))
    cols = draw(st.integers(1, max_side))
    tile_size_px = draw(st.integers(1, 128))
    overlap_px = draw(st.integers(0, tile_size_px - 1))
    return (rows, cols), tile_size_px, overlap_px, draw(PIXEL_SIZES), draw(PIXEL_SIZES)


def _stub_view(shape, pixel_size_um):
    """View of a tiny array whose levels claim ``shape``: geometry only, never read."""
    view = ArrayView.from_rgb(np.zeros((1, 1, 3), np.uint8), pixel_size_um=pixel_size_um, modality="fluorescence")
    view.levels[0] = Level(shape, 1.0)
    return view


@settings(max_examples=100, deadline=None)
@given(grid_cases())
def test_grid_tiles_inside_and_covering(case):
    shape, tile_size_px, overlap_px, pixel_size_um, target = case
    scale = tile_scale(_stub_view(shape, pixel_size_um), target, tile_size_px, overlap_px)
    boxes = grid_boxes(shape, scale)
    y, x, height, width = boxes.T
    assert (height > 0).all()
    assert (width > 0).all()
    assert (y >= 0).all()
    assert (x >= 0).all()
    assert (y < shape[0]).all()
    assert (x < shape[1]).all()
    assert y.max() + height.max() >= shape[0]
    assert x.max() + width.max() >= shape[1]
    ys, xs = np.unique(y), np.unique(x)
    assert (np.diff(ys) <= scale.region_px).all(), "gap between tile rows"
    assert (np.diff(xs) <= scale.region_px).all(), "gap between tile columns"


@settings(max_examples=15, deadline=None)
@given(
    rows=st.integers(1, 120),
    cols=st.integers(1, 120),
    tile_size_px=st.integers(8, 48),
    overlap_fraction=st.floats(0.0, 0.9),
    pixel_size_um=PIXEL_SIZES,
    seed=st.integers(0, 2**16),
)
def test_plan_tiles_overlap_image(rows, cols, tile_size_px, overlap_fraction, pixel_size_um, seed):
    rng = np.random.default_rng(seed)
    view = ArrayView.from_rgb(rng.integers(0, 256, size=(rows, cols, 3), dtype=np.uint8),
                              pixel_size_um=pixel_size_um, modality="fluorescence")
    overlap_px = int(overlap_fraction * tile_size_px)
    plan = plan_tiles(view, TileSettings(min_foreground=0.0, overlap_px=overlap_px), 0.5, tile_size_px)
    tiles = plan.tiles
    assert len(tiles) >= 1
    assert (tiles["height"] > 0).all()
    assert (tiles["width"] > 0).all()
    assert ((tiles["y"] < rows) & (tiles["x"] < cols)).all()
    assert ((tiles["y"] + tiles["height"] > 0) & (tiles["x"] + tiles["width"] > 0)).all()
    past_edge = (tiles["y"] + tiles["height"] > rows) | (tiles["x"] + tiles["width"] > cols)
    assert tiles["is_edge"].tolist() == past_edge.tolist()
    assert tiles["foreground_fraction"].between(0, 1).all()
    batch = read_tiles(view, tiles, tile_size_px, rows=[0, len(tiles) - 1])
    assert batch.shape == (2, tile_size_px, tile_size_px, 3)
