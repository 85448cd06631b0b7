"""Reading tiles: resampling to the target pixel size, fast path, batches, padding."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_micro.io import ArrayView
from vlm_micro.tiling import TileSettings, iter_tile_batches, plan_tiles, read_tiles, resample_region


def _sinusoid_field(shape_um: float, pixel_size_um: float, period_um: float = 8.0) -> np.ndarray:
    """Return RGB uint8 of a smooth 2-D pattern defined in micrometres, sampled at a pixel size."""
    count = int(round(shape_um / pixel_size_um))
    centres_um = (np.arange(count) + 0.5) * pixel_size_um
    wave_y = np.sin(2 * np.pi * centres_um / period_um)
    wave_x = np.cos(2 * np.pi * centres_um / (1.5 * period_um))
    grey = 128 + 60 * wave_y[:, None] + 60 * wave_x[None, :]
    return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _plan_all(view, target, tile_size_px):
    return plan_tiles(view, TileSettings(min_foreground=0.0), target, tile_size_px)


@pytest.mark.parametrize("pixel_size_um", [0.25, 0.2, 0.125])
def test_tile_same_micrometres_any_scale(pixel_size_um):
    reference_view = ArrayView.from_rgb(
        _sinusoid_field(64.0, 0.5), pixel_size_um=0.5, modality="fluorescence"
    )
    finer_view = ArrayView.from_rgb(
        _sinusoid_field(64.0, pixel_size_um), pixel_size_um=pixel_size_um, modality="fluorescence"
    )
    reference = read_tiles(reference_view, _plan_all(reference_view, 0.5, 32).tiles, 32)
    resampled = read_tiles(finer_view, _plan_all(finer_view, 0.5, 32).tiles, 32)
    assert resampled.shape == reference.shape == (16, 32, 32, 3)
    difference = np.abs(resampled.astype(int) - reference.astype(int))
    assert difference.mean() < 3.0


def test_native_scale_reads_exact_pixels(rng):
    rgb = rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    plan = _plan_all(view, 0.5, 32)
    tiles = read_tiles(view, plan.tiles, 32)
    for index, row in plan.tiles.iterrows():
        expected = rgb[row["y"] : row["y"] + 32, row["x"] : row["x"] + 32]
        np.testing.assert_array_equal(tiles[index], expected)


def test_integer_downsample_is_block_mean(rng):
    rgb = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.25, modality="fluorescence")
    tiles = read_tiles(view, _plan_all(view, 0.5, 32).tiles, 32)
    expected = rgb.reshape(32, 2, 32, 2, 3).astype(float).mean(axis=(1, 3))
    assert tiles.shape == (1, 32, 32, 3)
    assert np.abs(tiles[0].astype(float) - expected).max() <= 1.0


def test_tiles_read_from_pyramid_level(rng):
    rgb = rng.integers(0, 256, size=(128, 128, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.25, modality="fluorescence", n_levels=3)
    plan = _plan_all(view, 1.0, 16)
    assert (plan.tiles["level"] == 2).all()
    tiles = read_tiles(view, plan.tiles, 16)
    first = plan.tiles.iloc[0]
    expected = view.read_region(first["y"] // 4, first["x"] // 4, 16, 16, level=2)
    np.testing.assert_array_equal(tiles[0], expected)


def test_non_integer_factor_resamples_antialiased():
    checkerboard = ((np.indices((250, 250)).sum(axis=0) % 2) * 255).astype(np.uint8)
    region = np.repeat(checkerboard[..., None], 3, axis=2)
    resampled = resample_region(region, (100, 100))
    assert resampled.shape == (100, 100, 3)
    assert abs(float(resampled.mean()) - 127.5) < 3
    assert resampled.std() < 20


def test_iter_tile_batches_yields_every_row_once(rng):
    rgb = rng.integers(0, 256, size=(160, 160, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    tiles_df = _plan_all(view, 0.5, 32).tiles
    everything = read_tiles(view, tiles_df, 32)
    seen = []
    for positions, batch in iter_tile_batches(view, tiles_df, 32, batch_size=7):
        assert len(positions) == len(batch) <= 7
        assert batch.dtype == np.uint8
        np.testing.assert_array_equal(batch, everything[positions])
        seen.extend(positions.tolist())
    assert seen == list(range(len(tiles_df)))


def test_read_tiles_rows_are_positions(rng):
    rgb = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    tiles_df = _plan_all(view, 0.5, 32).tiles.set_index(np.array([10, 20, 30, 40]))
    selected = read_tiles(view, tiles_df, 32, rows=[3, 0])
    everything = read_tiles(view, tiles_df, 32)
    np.testing.assert_array_equal(selected, everything[[3, 0]])


def test_empty_tile_table_reads_nothing():
    view = ArrayView.from_rgb(np.zeros((64, 64, 3), np.uint8), modality="fluorescence")
    tiles_df = _plan_all(view, None, 32).tiles.iloc[:0]
    assert read_tiles(view, tiles_df, 32).shape == (0, 32, 32, 3)
    assert list(iter_tile_batches(view, tiles_df, 32, 4)) == []


def _tiles_one_by_one(view, tiles_df, tile_size_px):
    from vlm_micro.tiling.reading import read_box

    boxes = tiles_df[["y", "x", "height", "width", "level"]].to_numpy()
    return np.stack([read_box(view, *box, (tile_size_px, tile_size_px)) for box in boxes])


@pytest.mark.parametrize("pixel_size_um,target,overlap_px,n_levels", [
    (0.5, 0.5, 0, 1),  # native scale, edge tiles
    (0.5, 0.5, 7, 1),  # overlapping tiles
    (0.3, 0.5, 0, 1),  # non-integer shrink factor
    (0.25, 1.0, 0, 3),  # read from a pyramid level
    (0.2, 0.5, 5, 2),  # level boxes rounded, overlapping
])
def test_row_runs_equal_tile_by_tile(rng, pixel_size_um, target, overlap_px, n_levels):
    rgb = rng.integers(0, 256, size=(203, 317, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, pixel_size_um=pixel_size_um, modality="fluorescence", n_levels=n_levels)
    tiles_df = plan_tiles(view, TileSettings(min_foreground=0.0, overlap_px=overlap_px), target, 24).tiles
    np.testing.assert_array_equal(read_tiles(view, tiles_df, 24), _tiles_one_by_one(view, tiles_df, 24))


def test_row_runs_any_row_order(rng, monkeypatch):
    from vlm_micro.tiling import reading

    monkeypatch.setattr(reading, "MAX_RUN_PIXELS", 32 * 96)  # at most three tiles per read
    rgb = rng.integers(0, 256, size=(96, 320, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    tiles_df = _plan_all(view, 0.5, 32).tiles
    order = np.r_[rng.permutation(len(tiles_df)), [0, 1, 2]]  # shuffled, with repeats
    selected = read_tiles(view, tiles_df, 32, rows=order)
    np.testing.assert_array_equal(selected, _tiles_one_by_one(view, tiles_df.iloc[order], 32))


def test_row_runs_read_once_per_run(rng):
    rgb = rng.integers(0, 256, size=(64, 256, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    tiles_df = _plan_all(view, 0.5, 32).tiles
    calls = []
    original = view.read_region
    view.read_region = lambda *args: calls.append(args) or original(*args)
    read_tiles(view, tiles_df, 32)
    assert calls == [(0, 0, 32, 256, 0), (32, 0, 32, 256, 0)]


@pytest.mark.parametrize("read_ahead", [False, True])
def test_iter_tile_batches_read_ahead_same_batches(rng, read_ahead):
    rgb = rng.integers(0, 256, size=(160, 160, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    tiles_df = _plan_all(view, 0.5, 32).tiles
    everything = read_tiles(view, tiles_df, 32)
    batches = list(iter_tile_batches(view, tiles_df, 32, 6, read_ahead=read_ahead))
    assert [len(positions) for positions, _ in batches] == [6, 6, 6, 6, 1]
    for positions, batch in batches:
        np.testing.assert_array_equal(batch, everything[positions])


def test_iter_tile_batches_stops_early(rng):
    rgb = rng.integers(0, 256, size=(160, 160, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    batches = iter_tile_batches(view, _plan_all(view, 0.5, 32).tiles, 32, 4)
    positions, _ = next(batches)
    batches.close()
    assert positions.tolist() == [0, 1, 2, 3]


def test_iter_tile_batches_raises_read_error(rng):
    rgb = rng.integers(0, 256, size=(160, 160, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    tiles_df = _plan_all(view, 0.5, 32).tiles
    original = view.read_region

    def failing(y, x, height, width, level=0):
        if y >= 64:
            raise OSError("damaged tile")
        return original(y, x, height, width, level)

    view.read_region = failing
    seen = []
    with pytest.raises(OSError, match="damaged tile"):
        for positions, _ in iter_tile_batches(view, tiles_df, 32, 5):
            seen.extend(positions.tolist())
    assert seen == list(range(10))
