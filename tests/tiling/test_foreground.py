"""Foreground detection on dark (fluorescence) and bright (brightfield) backgrounds."""

from __future__ import annotations

import numpy as np
import pytest
from tiling_fields import brightfield_field, disc_centres, fluorescence_field, paint_discs

from vlm_micro.io import ArrayView
from vlm_micro.tiling import TileSettings, foreground_mask, low_resolution_rgb, plan_tiles
from vlm_micro.tiling import foreground as foreground_module
from vlm_micro.tiling.foreground import box_fractions


def _truth(shape, centres, radius):
    return paint_discs(np.zeros(shape, dtype=bool), centres, radius, True)


def _assert_matches(mask, truth, halo_px=3):
    """Check that ``mask`` covers ``truth`` and stays within ``halo_px`` of it."""
    from scipy import ndimage as ndi

    near = ndi.binary_dilation(truth, iterations=halo_px)
    assert mask[truth].mean() > 0.95
    assert (mask & ~near).mean() < 0.005


def test_fluorescence_foreground_finds_bright_cells(rng):
    centres = disc_centres((256, 256), spacing=48, margin=24)
    rgb = fluorescence_field((256, 256), centres, radius=10, rng=rng)
    mask = foreground_mask(rgb, "fluorescence")
    _assert_matches(mask, _truth((256, 256), centres, 10))


def test_fluorescence_dim_cells_next_to_bright_ones(rng):
    centres = disc_centres((256, 256), spacing=48, margin=24)
    rgb = fluorescence_field((256, 256), centres, radius=10, rng=rng, level=45)
    paint_discs(rgb, centres[:2], 10, 255)
    mask = foreground_mask(rgb, "fluorescence")
    dim = _truth((256, 256), centres[2:], 10)
    assert mask[dim].mean() > 0.8


def test_brightfield_foreground_finds_tissue(rng):
    centres = disc_centres((256, 256), spacing=32, margin=16)
    rgb = brightfield_field((256, 256), slice(0, 128), [c for c in centres if c[0] < 120], 5, rng)
    mask = foreground_mask(rgb, "brightfield")
    assert mask[:124].mean() > 0.95
    assert mask[132:].mean() < 0.02


def test_brightfield_pale_stain_found_by_saturation(rng):
    rgb = np.full((128, 128, 3), 245, dtype=np.uint8)
    rgb[:, 64:] = (240, 200, 225)  # pale pink: bright but saturated
    mask = foreground_mask(rgb, "brightfield")
    assert mask[:, 68:].mean() > 0.95
    assert mask[:, :60].mean() < 0.02


@pytest.mark.parametrize("modality", ["fluorescence", "brightfield"])
def test_blank_field_has_no_foreground(rng, modality):
    level = 250 if modality == "brightfield" else 8
    grey = np.clip(level + rng.normal(0, 2, size=(200, 200)), 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    assert not foreground_mask(rgb, modality).any()


def test_plan_skips_background_tiles_fluorescence(rng):
    centres = [(32, 32), (32, 160), (160, 96)]
    rgb = fluorescence_field((256, 256), centres, radius=20, rng=rng)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    plan = plan_tiles(view, TileSettings(min_foreground=0.1), 0.5, 64)
    kept = set(zip(plan.tiles["y"], plan.tiles["x"]))
    assert kept == {(0, 0), (0, 128), (128, 64)}
    assert plan.qc["n_skipped_background"] == 16 - 3
    assert (plan.tiles["foreground_fraction"] >= 0.1).all()


def test_plan_skips_glass_tiles_brightfield(rng):
    rgb = brightfield_field((256, 256), slice(0, 128), [(40, 40), (90, 200)], 6, rng)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="brightfield")
    plan = plan_tiles(view, TileSettings(min_foreground=0.5), 0.5, 64)
    assert sorted(set(plan.tiles["y"])) == [0, 64]
    assert len(plan.tiles) == 8
    assert plan.qc["n_skipped_background"] == 8
    assert plan.qc["foreground_fraction"] == pytest.approx(0.5, abs=0.03)


def test_blank_image_plan_warns(rng):
    grey = np.clip(8 + rng.normal(0, 2, size=(128, 128)), 0, 255).astype(np.uint8)
    view = ArrayView.from_rgb(np.repeat(grey[..., None], 3, axis=2), pixel_size_um=0.5, modality="fluorescence")
    plan = plan_tiles(view, TileSettings(), 0.5, 64)
    assert len(plan.tiles) == 0
    assert plan.qc["n_skipped_background"] == 4
    assert plan.qc["mean_focus"] is None
    assert any("no tile reaches" in warning for warning in plan.qc["warnings"])


@pytest.mark.parametrize("shape", [(1, 1), (5, 2048)])
def test_image_smaller_than_tile_warns_size(shape):
    rgb = np.full((*shape, 3), 200, dtype=np.uint8)  # all foreground for fluorescence
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    plan = plan_tiles(view, TileSettings(min_foreground=0.1), 0.5, 64)
    assert len(plan.tiles) == 0
    assert len(plan.qc["warnings"]) == 1
    assert plan.qc["warnings"][0].startswith(f"the image ({shape[1]} x {shape[0]} px) is too small for tiles of 64 px")


def test_box_fractions_exact_and_outside():
    mask = np.zeros((10, 10), dtype=bool)
    mask[:5] = True
    boxes = np.array([[0, 0, 50, 100], [0, 0, 100, 100], [50, 0, 50, 50], [-50, 0, 100, 100]])
    fractions = box_fractions(mask, boxes, (100, 100))
    np.testing.assert_allclose(fractions, [1.0, 0.5, 0.0, 0.5])


def test_low_resolution_rgb_limits_side(rng):
    rgb = rng.integers(0, 256, size=(300, 500, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, modality="fluorescence")
    small = low_resolution_rgb(view, 100)
    assert small.shape == (60, 100, 3)
    assert small.dtype == np.uint8


def test_low_resolution_rgb_block_path_matches(monkeypatch, rng):
    grey = np.kron(rng.integers(0, 256, size=(30, 50)), np.ones((10, 10))).astype(np.uint8)
    view = ArrayView.from_rgb(np.repeat(grey[..., None], 3, axis=2), modality="fluorescence")
    whole = low_resolution_rgb(view, 50)
    monkeypatch.setattr(foreground_module, "MAX_WHOLE_LEVEL_PIXELS", 1000)
    monkeypatch.setattr(foreground_module, "BLOCK_PX", 64)
    blocks = low_resolution_rgb(view, 50)
    assert blocks.shape == whole.shape == (30, 50, 3)
    assert np.abs(blocks.astype(int) - whole.astype(int)).max() <= 2


def test_low_resolution_rgb_half_size_level(tmp_path, rng):
    """A slide level between max_side / 2 and max_side is used as it is, without reading finer levels."""
    import tifffile

    from vlm_micro.io import open_views

    base = np.kron(rng.integers(0, 256, size=(64, 64, 3)), np.ones((32, 32, 1))).astype(np.uint8)
    path = tmp_path / "slide.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        writer.write(base, subifds=2, tile=(256, 256), photometric="rgb", compression="zlib")
        for factor in (4, 16):
            writer.write(base[::factor, ::factor], subfiletype=1, tile=(128, 128), photometric="rgb", compression="zlib")
    (view,) = open_views(path)
    assert [level.shape for level in view.levels[:3]] == [(2048, 2048), (512, 512), (128, 128)]
    low = low_resolution_rgb(view, 1000)
    assert low.shape == (512, 512, 3)
    assert np.array_equal(low, base[::4, ::4])
    # Below half of max_side, a finer level is read and shrunk as before.
    assert low_resolution_rgb(view, 1100).shape == (1100, 1100, 3)
