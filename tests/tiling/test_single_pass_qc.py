"""QC measured on the batches of a read pass equals the QC pass of plan_tiles."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from vlm_micro.io import ArrayView
from vlm_micro.tiling import (
    TileQCAccumulator,
    TileSettings,
    apply_tile_qc,
    focus_measure,
    iter_tile_batches,
    measure_tile_qc,
    plan_tiles,
    saturated_fraction,
)
from vlm_micro.tiling.geometry import valid_window, valid_windows


def _texture(rng, shape):
    grey = np.clip(rng.normal(120, 50, size=shape), 0, 254).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _mixed_image(rng):
    """Return a 150 x 170 fluorescence image: sharp, blurred and saturated parts, edge tiles."""
    rgb = _texture(rng, (150, 170))
    rgb[:, 100:] = np.clip(ndi.gaussian_filter(rgb[:, 100:].astype(float), (4, 4, 0)), 0, 255).astype(np.uint8)
    rgb[:30, :30] = 255
    return rgb


def _single_pass(view, settings, target, tile_size_px, batch_size=5):
    plan = plan_tiles(view, settings, target, tile_size_px, measure_qc=False)
    accumulator = TileQCAccumulator(view, plan.tiles, tile_size_px)
    for positions, batch in iter_tile_batches(view, plan.tiles, tile_size_px, batch_size):
        accumulator.add(positions, batch)
    apply_tile_qc(plan, accumulator.focus, accumulator.saturated_fraction, settings)
    return plan


def test_measure_tile_qc_matches_per_tile(rng):
    batch = rng.integers(0, 256, size=(7, 20, 20, 3), dtype=np.uint8)
    batch[2] = 40
    batch[3, :5] = 255
    for modality in ("fluorescence", "brightfield"):
        focus, saturated = measure_tile_qc(batch, modality)
        for index, tile in enumerate(batch):
            assert focus[index] == pytest.approx(focus_measure(tile), rel=1e-9, abs=1e-9)
            assert saturated[index] == saturated_fraction(tile, modality)


def test_measure_tile_qc_windows_leave_out_padding(rng):
    batch = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    windows = np.array([[0, 16, 0, 16], [0, 10, 4, 16], [3, 3, 0, 16]])
    focus, saturated = measure_tile_qc(batch, "fluorescence", windows)
    assert focus[1] == pytest.approx(focus_measure(batch[1, 0:10, 4:16]))
    assert saturated[1] == saturated_fraction(batch[1, 0:10, 4:16], "fluorescence")
    assert math.isnan(focus[2])
    assert math.isnan(saturated[2])


def test_measure_tile_qc_rejects_wrong_batch():
    with pytest.raises(ValueError, match="uint8"):
        measure_tile_qc(np.zeros((2, 8, 8, 3), np.float32), "fluorescence")
    with pytest.raises(ValueError, match="k, rows, columns, 3"):
        measure_tile_qc(np.zeros((8, 8, 3), np.uint8), "fluorescence")


def test_focus_matches_float64_reference(rng):
    tiles = rng.integers(0, 256, size=(4, 64, 48, 3), dtype=np.uint8)
    grey = tiles.astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721])
    laplacian = grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:] - 4 * grey[:, 1:-1, 1:-1]
    expected = laplacian.reshape(4, -1).var(axis=1)
    focus, _ = measure_tile_qc(tiles, "fluorescence")
    np.testing.assert_allclose(focus, expected, rtol=1e-5)


def test_focus_smallest_tile_is_zero():
    tile = np.zeros((3, 3, 3), np.uint8)
    tile[1, 1] = 200
    assert focus_measure(tile) == 0.0  # one interior pixel has no spread


def test_saturated_fraction_one_channel_clipped():
    tile = np.full((4, 5, 3), 128, np.uint8)
    tile[0, 0, 2] = 255
    tile[3, 4, 0] = 0
    assert saturated_fraction(tile, "fluorescence") == pytest.approx(1 / 20)
    assert saturated_fraction(tile, "brightfield") == pytest.approx(1 / 20)


@pytest.mark.parametrize("overlap_px", [0, 8])
def test_single_pass_equals_plan_qc(rng, overlap_px):
    view = ArrayView.from_rgb(_mixed_image(rng), pixel_size_um=0.25, modality="fluorescence")
    settings = TileSettings(min_foreground=0.0, overlap_px=overlap_px)
    two_pass = plan_tiles(view, settings, 0.5, 32)
    single = _single_pass(view, settings, 0.5, 32)
    pd.testing.assert_frame_equal(single.tiles, two_pass.tiles)
    assert single.qc == two_pass.qc
    assert single.tiles["is_edge"].any()
    assert single.tiles["qc_flags"].str.contains("out_of_focus").any()
    assert single.tiles["qc_flags"].str.contains("saturated").any()


def test_plan_without_qc_leaves_nan():
    rgb = np.random.default_rng(3).integers(0, 256, size=(100, 100, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    plan = plan_tiles(view, TileSettings(min_foreground=0.0), 0.5, 64, measure_qc=False)
    assert plan.tiles["focus"].isna().all()
    assert plan.tiles["saturated_fraction"].isna().all()
    assert plan.tiles["qc_flags"].tolist() == ["", "edge", "edge", "edge"]
    assert plan.qc["mean_focus"] is None
    assert plan.qc["n_tiles"] == 4


def test_apply_tile_qc_keeps_other_warnings(rng):
    view = ArrayView.from_rgb(_mixed_image(rng), pixel_size_um=None, modality="fluorescence")
    settings = TileSettings(min_foreground=0.0)
    two_pass = plan_tiles(view, settings, 0.5, 32)
    single = _single_pass(view, settings, 0.5, 32)
    assert any("pixel size unknown" in warning for warning in single.qc["warnings"])
    assert any("out of focus" in warning for warning in single.qc["warnings"])
    assert single.qc["warnings"] == two_pass.qc["warnings"]


def test_apply_tile_qc_twice_replaces_warnings(rng):
    view = ArrayView.from_rgb(_mixed_image(rng), pixel_size_um=0.5, modality="fluorescence")
    settings = TileSettings(min_foreground=0.0)
    plan = plan_tiles(view, settings, 0.5, 32)
    count = len(plan.tiles)
    apply_tile_qc(plan, np.zeros(count), np.zeros(count), settings)
    assert plan.qc["out_of_focus_fraction"] == 1.0
    apply_tile_qc(plan, np.full(count, 500.0), np.zeros(count), settings)
    assert plan.qc["out_of_focus_fraction"] == 0.0
    assert not any("out of focus" in warning for warning in plan.qc["warnings"])
    assert plan.qc["mean_focus"] == pytest.approx(500.0)


def test_apply_tile_qc_rejects_wrong_length():
    view = ArrayView.from_rgb(np.full((64, 64, 3), 90, np.uint8), pixel_size_um=0.5, modality="fluorescence")
    plan = plan_tiles(view, TileSettings(min_foreground=0.0), 0.5, 32, measure_qc=False)
    with pytest.raises(ValueError, match="one focus and one saturated fraction per tile"):
        apply_tile_qc(plan, np.zeros(3), np.zeros(4), TileSettings())


def test_valid_windows_match_valid_window():
    boxes = np.array([[-10, 90, 40, 40], [0, 0, 64, 64], [70, -3, 33, 37], [99, 99, 10, 10], [-50, -50, 20, 20]])
    windows = valid_windows(boxes, (100, 120), 20)
    for box, window in zip(boxes, windows):
        rows, cols = valid_window(box, (100, 120), 20)
        assert tuple(window) == (rows.start, rows.stop, cols.start, cols.stop)
