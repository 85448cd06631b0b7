"""Tests of render_field: determinism, ground truth and the drawn classes."""

import numpy as np
import pytest

from vlm_micro.errors import ConfigError
from vlm_micro.synth import ANOMALY_KINDS, MORPHOLOGIES, render_field
from vlm_micro.synth.layout import BACKGROUND, plan_layout


def _render(seed, modality="fluorescence", stain="he", size_px=128, **kwargs):
    return render_field(np.random.default_rng([seed, 0]), modality, stain, size_px, **kwargs)


def _block_types(truth, size_px):
    """Return an (R, C) array of cell type names per block, '' for background."""
    n = size_px // 64
    grid = np.full((n, n), "", dtype=object)
    for row in truth.blocks.itertuples():
        grid[row.y // 64, row.x // 64] = row.cell_type
    return grid


@pytest.mark.parametrize("modality,stain", [("fluorescence", "he"), ("brightfield", "he"), ("brightfield", "ihc")])
def test_render_field_same_seed_identical(modality, stain):
    first, truth_first = _render(3, modality, stain)
    second, truth_second = _render(3, modality, stain)
    assert np.array_equal(first, second)
    assert np.array_equal(truth_first.labels, truth_second.labels)
    assert truth_first.cells.equals(truth_second.cells)
    assert truth_first.blocks.equals(truth_second.blocks)


def test_render_field_different_seeds_differ():
    first, _ = _render(3)
    second, _ = _render(4)
    assert not np.array_equal(first, second)


def test_render_field_dtypes_and_shapes():
    fluorescence, truth = _render(1, "fluorescence", size_px=192)
    assert fluorescence.shape == (192, 192)
    assert fluorescence.dtype == np.uint16
    assert truth.stain == "dapi"
    brightfield, truth = _render(1, "brightfield", "ihc", size_px=192)
    assert brightfield.shape == (192, 192, 3)
    assert brightfield.dtype == np.uint8
    assert truth.stain == "ihc"
    assert truth.labels.shape == (192, 192)
    assert truth.labels.dtype == np.uint16


def test_render_field_fluorescence_has_dark_background_offset():
    image, truth = _render(5, "fluorescence", size_px=256, anomaly_fraction=0.0)
    background = image[truth.labels == 0]
    floor = np.percentile(background, 5) / 65535
    assert 0.04 < floor < 0.12
    assert np.median(image[truth.labels > 0]) > 2 * np.median(background)


def test_render_field_brightfield_background_is_bright():
    image, truth = _render(5, "brightfield", "he", size_px=256, anomaly_fraction=0.0)
    empty = _block_types(truth, 256) == ""
    assert empty.any()
    row, col = np.argwhere(empty)[0]
    block = image[row * 64 : (row + 1) * 64, col * 64 : (col + 1) * 64]
    assert block.mean() > 220
    nuclei = image[truth.labels > 0].mean(axis=0)
    assert nuclei.sum() < block.mean(axis=(0, 1)).sum() * 0.75


@pytest.mark.parametrize("modality", ["fluorescence", "brightfield"])
def test_ground_truth_labels_inside_blocks_of_their_type(modality):
    image, truth = _render(11, modality, size_px=256, anomaly_fraction=0.5)
    types = _block_types(truth, 256)
    pixel_types = np.repeat(np.repeat(types, 64, axis=0), 64, axis=1)
    cell_types = dict(zip(truth.cells.cell_id, truth.cells.cell_type))
    assert set(np.unique(truth.labels)) - {0} == set(cell_types)
    for cell_id, cell_type in cell_types.items():
        assert set(pixel_types[truth.labels == cell_id]) == {cell_type}, cell_id
    assert not truth.labels[pixel_types == ""].any()


def test_ground_truth_centroids_and_abnormal_cells_match_blocks():
    _, truth = _render(12, "brightfield", size_px=256, anomaly_fraction=0.6)
    blocks = truth.blocks.set_index(["y", "x"])
    for cell in truth.cells.itertuples():
        key = (int(cell.centroid_y) // 64 * 64, int(cell.centroid_x) // 64 * 64)
        assert key in blocks.index
        assert blocks.loc[key, "cell_type"] == cell.cell_type
        if cell.anomaly_kind:
            assert blocks.loc[key, "anomaly_kind"] == cell.anomaly_kind


def test_every_class_and_anomaly_kind_appears():
    class_counts, kind_counts, figure_counts = {}, {}, {}
    for seed in range(6):
        _, truth = _render(seed, ("fluorescence", "brightfield")[seed % 2], size_px=256, anomaly_fraction=0.4)
        for name, count in truth.blocks.cell_type.value_counts().items():
            class_counts[name] = class_counts.get(name, 0) + count
        for name, count in truth.blocks.anomaly_kind.value_counts().items():
            kind_counts[name] = kind_counts.get(name, 0) + count
        for name, count in truth.cells.anomaly_kind.value_counts().items():
            figure_counts[name] = figure_counts.get(name, 0) + count
    assert set(class_counts) == set(MORPHOLOGIES)
    assert set(kind_counts) - {""} == set(ANOMALY_KINDS)
    assert figure_counts.get("mitotic_figure", 0) >= 1
    assert figure_counts.get("apoptotic", 0) >= 2


def test_anomaly_column_matches_kind():
    _, truth = _render(2, size_px=256, anomaly_fraction=0.5)
    assert set(truth.blocks.anomaly) <= {0, 1}
    assert ((truth.blocks.anomaly == 1) == (truth.blocks.anomaly_kind != "")).all()


def test_zero_anomaly_fraction_gives_no_anomalies():
    _, truth = _render(2, size_px=256, anomaly_fraction=0.0)
    assert truth.blocks.anomaly.sum() == 0
    assert (truth.cells.anomaly_kind == "").all()


@pytest.mark.parametrize("modality,maximum", [("fluorescence", 65535), ("brightfield", 255)])
def test_saturation_block_is_clipped(modality, maximum):
    image, truth = _render(
        4, modality, size_px=192, class_names=["lymphocyte"], anomaly_kinds=["saturation"], anomaly_fraction=1.0
    )
    for block in truth.blocks.itertuples():
        pixels = image[block.y : block.y + 64, block.x : block.x + 64]
        assert np.mean(pixels == maximum) > 0.1


def test_layout_has_background_and_tissue():
    for seed in range(20):
        layout = plan_layout(np.random.default_rng(seed), 2, 2, 6, 5, 0.2, 64)
        assert (layout.types == BACKGROUND).any()
        assert (layout.types != BACKGROUND).any()


def test_subset_of_classes_draws_only_those():
    _, truth = _render(8, size_px=192, class_names=["tumor", "epithelial"], anomaly_kinds=["debris"])
    assert set(truth.blocks.cell_type) <= {"tumor", "epithelial"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"modality": "confocal"},
        {"stain": "pas"},
        {"size_px": 100},
        {"anomaly_fraction": 1.5},
        {"class_names": ["platelet"]},
        {"anomaly_kinds": ["bubble"]},
    ],
)
def test_render_field_rejects_invalid_arguments(kwargs):
    arguments = {"modality": "fluorescence", "stain": "he", "size_px": 128}
    arguments.update(kwargs)
    with pytest.raises(ConfigError):
        render_field(np.random.default_rng(0), arguments.pop("modality"), **arguments)
