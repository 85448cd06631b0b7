"""QC per tile (focus, saturation, flags) and the image-level summary."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from vlm_micro.io import ArrayView
from vlm_micro.tiling import TileSettings, focus_measure, plan_tiles, saturated_fraction

SUMMARY_KEYS = {
    "n_tiles", "n_skipped_background", "foreground_fraction", "mean_focus", "saturated_fraction",
    "out_of_focus_fraction", "saturated_tile_fraction", "warnings", "uncalibrated", "pixel_size_um",
    "target_pixel_size_um", "scale", "region_px", "level", "tile_size_px", "placement",
}


def _texture(rng, shape=(256, 256)):
    """Return a sharp fluorescence-like RGB uint8 texture: bright speckles on grey."""
    grey = np.clip(rng.normal(120, 50, size=shape), 0, 254)
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)


def _blur(rgb, sigma):
    blurred = ndi.gaussian_filter(rgb.astype(float), sigma=(sigma, sigma, 0))
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


def test_focus_sharp_above_blurred(rng):
    sharp = _texture(rng, (64, 64))
    blurred = _blur(sharp, 3.0)
    assert focus_measure(sharp) > 1000
    assert focus_measure(blurred) < 20
    assert focus_measure(sharp) > 50 * focus_measure(blurred)


def test_focus_flat_tile_is_zero():
    assert focus_measure(np.full((32, 32, 3), 77, np.uint8)) == 0.0


def test_focus_tiny_tile_is_nan():
    assert math.isnan(focus_measure(np.zeros((2, 10, 3), np.uint8)))


def test_focus_matches_laplacian_variance(rng):
    tile = _texture(rng, (40, 40))
    grey = tile[..., 0].astype(float)  # all channels equal, so luma = channel value
    expected = ndi.laplace(grey)[1:-1, 1:-1].var()
    assert focus_measure(tile) == pytest.approx(expected, rel=1e-4)


def test_saturated_fraction_fluorescence():
    tile = np.full((10, 10, 3), 100, np.uint8)
    tile[:1, :, 1] = 255
    tile[1:2, :5] = 255
    assert saturated_fraction(tile, "fluorescence") == pytest.approx(0.15)


def test_saturated_fraction_brightfield_ignores_white():
    tile = np.full((10, 10, 3), 255, np.uint8)
    tile[:2, :, 2] = 0
    assert saturated_fraction(tile, "brightfield") == pytest.approx(0.2)


def test_plan_flags_blurred_half(rng):
    rgb = _texture(rng, (128, 256))
    rgb[:, 128:] = _blur(rgb[:, 128:], 4.0)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    plan = plan_tiles(view, TileSettings(min_foreground=0.0), 0.5, 64)
    blurred = plan.tiles["x"] >= 128
    assert plan.tiles.loc[blurred, "qc_flags"].str.contains("out_of_focus").all()
    assert not plan.tiles.loc[~blurred, "qc_flags"].str.contains("out_of_focus").any()
    assert plan.qc["out_of_focus_fraction"] == pytest.approx(0.5)
    assert "50% of tiles look out of focus (variance of the Laplacian below 20)" in plan.qc["warnings"]


def test_plan_flags_saturated_tiles(rng):
    rgb = _texture(rng, (128, 128))
    rgb[:64, :64][::2] = 255  # half of the top-left tile clipped
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    plan = plan_tiles(view, TileSettings(min_foreground=0.0), 0.5, 64)
    first = plan.tiles.iloc[0]
    assert first["saturated_fraction"] == pytest.approx(0.5)
    assert first["qc_flags"] == "saturated"
    assert (plan.tiles["qc_flags"].iloc[1:] == "").all()
    assert plan.qc["saturated_tile_fraction"] == pytest.approx(0.25)
    assert any("25% of tiles have more than 5% saturated pixels" == w for w in plan.qc["warnings"])


def test_edge_tile_qc_ignores_padding(rng):
    rgb = _blur(_texture(rng, (100, 100)), 4.0)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    plan = plan_tiles(view, TileSettings(min_foreground=0.0), 0.5, 64)
    edge = plan.tiles[plan.tiles["is_edge"]]
    assert len(edge) == 3
    assert (edge["focus"] < 20).all()
    assert (edge["saturated_fraction"] == 0).all()
    assert edge["qc_flags"].tolist() == ["out_of_focus;edge"] * 3


def test_plan_qc_summary_values(rng):
    rgb = _texture(rng, (128, 128))
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.25, modality="fluorescence")
    plan = plan_tiles(view, TileSettings(min_foreground=0.0), 0.5, 32)
    assert SUMMARY_KEYS <= set(plan.qc)
    assert plan.qc["n_tiles"] == 4
    assert plan.qc["mean_focus"] == pytest.approx(plan.tiles["focus"].mean())
    assert plan.qc["saturated_fraction"] == pytest.approx(plan.tiles["saturated_fraction"].mean())
    assert plan.qc["scale"] == 2.0
    assert plan.qc["region_px"] == 64
    assert plan.qc["uncalibrated"] is False
    assert plan.qc["warnings"] == []
