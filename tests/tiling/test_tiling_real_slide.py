"""Tiling the real Aperio SVS slide read lazily from its JPEG tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vlm_micro.io import ReadSettings, open_views
from vlm_micro.tiling import TileSettings, iter_tile_batches, plan_tiles

SVS = Path(__file__).resolve().parents[1] / "data" / "cmu_small_region.svs"
SVS_PIXEL_SIZE_UM = 0.499


@pytest.fixture(scope="module")
def slide(request):
    views = open_views(SVS, ReadSettings())
    request.addfinalizer(lambda: [view.close() for view in views])
    return views[0]


@pytest.fixture(scope="module")
def slide_plan(slide):
    return plan_tiles(slide, TileSettings(), 0.5, 64)


def test_slide_pixel_size_and_modality(slide):
    assert slide.pixel_size_um == pytest.approx(SVS_PIXEL_SIZE_UM)
    assert slide.modality == "brightfield"
    assert slide.shape == (2967, 2220)


def test_slide_background_tiles_skipped(slide_plan):
    qc = slide_plan.qc
    total = qc["n_tiles"] + qc["n_skipped_background"]
    assert total == 47 * 35
    assert 0.3 < qc["n_skipped_background"] / total < 0.8
    assert 0.2 < qc["foreground_fraction"] < 0.7
    assert (slide_plan.tiles["foreground_fraction"] >= 0.1).all()
    assert not qc["uncalibrated"]


def test_slide_tiles_at_target_scale(slide_plan):
    tiles = slide_plan.tiles
    assert (tiles["height"] == 64).all()  # 64 px x 0.5 / 0.499, rounded
    assert (tiles["level"] == 0).all()
    assert slide_plan.qc["scale"] == pytest.approx(0.5 / SVS_PIXEL_SIZE_UM)


def test_slide_tissue_tiles_sharp_and_not_white(slide, slide_plan):
    assert slide_plan.qc["mean_focus"] > 100
    assert not any("out of focus" in warning for warning in slide_plan.qc["warnings"])
    _, batch = next(iter_tile_batches(slide, slide_plan.tiles, 64, 32))
    assert batch.shape == (32, 64, 64, 3)
    assert batch.mean() < 220  # tissue, not glass


def test_slide_coarse_target_reads_pyramid_level(slide):
    plan = plan_tiles(slide, TileSettings(), 2.0, 64)
    level = int(plan.tiles["level"].iloc[0])
    assert slide.levels[level].downsample == pytest.approx(4.0, rel=0.01)
    assert (plan.tiles["height"] == round(64 * 2.0 / SVS_PIXEL_SIZE_UM)).all()
    assert plan.qc["n_skipped_background"] > 0
    assert np.all(plan.tiles["foreground_fraction"] >= 0.1)
