"""Nucleus detection and the cells placement, on the real nuclei image and synthetic fields."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tiling_fields import brightfield_field, disc_centres, fluorescence_field

from vlm_micro.io import ArrayView, ReadSettings, open_views
from vlm_micro.tiling import CELL_COLUMNS, TILE_COLUMNS, CellSettings, TileSettings, detect_nuclei, plan_tiles
from vlm_micro.tiling import nuclei as nuclei_module


def _match_centroids(cells: pd.DataFrame, mask: np.ndarray) -> int:
    """Count detections whose centroid falls inside a mask instance, one to one."""
    used = set()
    for cy, cx in cells[["centroid_y", "centroid_x"]].to_numpy():
        label = int(mask[int(round(cy)), int(round(cx))])
        if label and label not in used:
            used.add(label)
    return len(used)


@pytest.fixture(scope="module")
def nuclei_plan(nuclei_image):
    path, _ = nuclei_image
    view = open_views(path, ReadSettings())[0]
    return plan_tiles(view, TileSettings(placement="cells"), 0.5, 64)


def test_cells_real_nuclei_count(nuclei_plan, nuclei_image):
    _, mask = nuclei_image
    n_true = len(np.unique(mask)) - 1
    assert n_true == 125
    assert abs(len(nuclei_plan.cells) - n_true) <= 6


def test_cells_real_nuclei_f1(nuclei_plan, nuclei_image):
    _, mask = nuclei_image
    matched = _match_centroids(nuclei_plan.cells, mask)
    precision = matched / len(nuclei_plan.cells)
    recall = matched / (len(np.unique(mask)) - 1)
    f1 = 2 * precision * recall / (precision + recall)
    assert f1 >= 0.90


def test_cells_one_centred_tile_per_cell(nuclei_plan):
    tiles, cells = nuclei_plan.tiles, nuclei_plan.cells
    assert list(tiles.columns) == list(TILE_COLUMNS)
    assert list(cells.columns) == list(CELL_COLUMNS)
    assert len(tiles) == len(cells) == nuclei_plan.qc["n_cells"]
    assert (tiles["placement"] == "cells").all()
    assert tiles["cell_id"].tolist() == cells["cell_id"].tolist()
    assert cells["tile_id"].tolist() == tiles["tile_id"].tolist()
    centre_y = tiles["y"] + tiles["height"] / 2
    centre_x = tiles["x"] + tiles["width"] / 2
    assert np.abs(centre_y.to_numpy() - cells["centroid_y"].to_numpy()).max() <= 1.0
    assert np.abs(centre_x.to_numpy() - cells["centroid_x"].to_numpy()).max() <= 1.0
    assert nuclei_plan.qc["n_skipped_background"] == 0


def test_cells_table_values(nuclei_plan):
    cells = nuclei_plan.cells
    assert cells["cell_id"].tolist() == list(range(len(cells)))
    assert cells["area_um2"].isna().all()  # the image has no pixel size
    diameters = np.sqrt(4 * cells["area_px"] / np.pi)
    assert diameters.min() >= 6.0
    assert diameters.max() <= 60.0
    assert ((cells["eccentricity"] >= 0) & (cells["eccentricity"] < 1)).all()
    assert (cells["mean_intensity"] > 0).all()
    assert str(cells["tile_id"].dtype) == "Int64"


def test_detect_nuclei_by_region_matches_whole(monkeypatch, nuclei_image):
    path, mask = nuclei_image
    view = open_views(path, ReadSettings())[0]
    whole = detect_nuclei(view, TileSettings(), None)
    monkeypatch.setattr(nuclei_module, "SINGLE_REGION_PX", 100)
    monkeypatch.setattr(nuclei_module, "REGION_PX", 128)
    regions = detect_nuclei(view, TileSettings(), None)
    assert abs(len(regions) - len(whole)) <= 3
    assert _match_centroids(regions, mask) >= _match_centroids(whole, mask) - 3


def test_fluorescence_cells_calibrated_size_filter(rng):
    big = disc_centres((200, 200), spacing=50, margin=25)
    small = [(y + 25, x + 25) for y, x in big if y < 150 and x < 150]
    rgb = fluorescence_field((200, 200), big, radius=8, rng=rng)
    rgb = np.maximum(rgb, fluorescence_field((200, 200), small, radius=1.5, rng=rng))
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="fluorescence")
    cells = detect_nuclei(view, CellSettings(min_diameter_um=4, max_diameter_um=30), 0.5)
    assert len(cells) == len(big)
    assert cells["area_um2"].to_numpy() == pytest.approx(cells["area_px"].to_numpy() * 0.25)
    assert cells["area_um2"].between(np.pi * 16 * 0.8, np.pi * 16 * 1.3).all()


def test_brightfield_cells_from_haematoxylin(rng):
    centres = [c for c in disc_centres((256, 256), spacing=40, margin=20) if c[0] < 180]
    rgb = brightfield_field((256, 256), slice(0, 200), centres, 7, rng)
    view = ArrayView.from_rgb(rgb, pixel_size_um=0.5, modality="brightfield")
    plan = plan_tiles(view, TileSettings(placement="cells"), 0.5, 32)
    assert len(plan.cells) == len(centres)
    found = plan.cells[["centroid_y", "centroid_x"]].to_numpy()
    for cy, cx in centres:
        assert np.hypot(found[:, 0] - cy, found[:, 1] - cx).min() < 1.5


def test_no_nuclei_warns(rng):
    grey = np.clip(8 + rng.normal(0, 2, size=(128, 128)), 0, 255).astype(np.uint8)
    view = ArrayView.from_rgb(np.repeat(grey[..., None], 3, axis=2), pixel_size_um=0.5, modality="fluorescence")
    plan = plan_tiles(view, TileSettings(placement="cells"), 0.5, 32)
    assert len(plan.cells) == 0
    assert len(plan.tiles) == 0
    assert list(plan.cells.columns) == list(CELL_COLUMNS)
    assert any("no nuclei detected" in warning for warning in plan.qc["warnings"])
    assert not any("minimum foreground" in warning for warning in plan.qc["warnings"])
