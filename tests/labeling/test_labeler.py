"""Labeler: calibration, anomaly columns, few-shot references, text cache and label_view."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

import vlm_micro.labeling.labeler as labeler_module
import vlm_micro.tiling
from vlm_micro.errors import ConfigError
from vlm_micro.io.view import ArrayView
from vlm_micro.labeling import LabelSettings, Labeler
from vlm_micro.labeling.anomaly import softmax
from vlm_micro.labeling.text import TextEmbeddings

DIM = 8


def _unit(vector):
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def _basis(index):
    vector = np.zeros(DIM, dtype=np.float32)
    vector[index] = 1.0
    return vector


def _hand_made_text() -> TextEmbeddings:
    """Classes alpha, beta, gamma on axes 0-2; normal on axis 3; debris on 4, blur on 5."""
    return TextEmbeddings(
        class_names=["alpha", "beta", "gamma"],
        classes=np.stack([_basis(0), _basis(1), _basis(2)]),
        normal=_basis(3),
        kind_names=["debris", "blur"],
        kinds=np.stack([_basis(4), _basis(5)]),
        anomaly_prompts=["an image of cells with debris.", "an image of cells with dust.",
                         "an image of blurry cells.", "an image of defocused cells."],
        anomaly_prompt_embeddings=np.stack([_unit(_basis(4) + 0.1 * _basis(6)), _unit(_basis(4) + 0.3 * _basis(7)),
                                            _unit(_basis(5) + 0.1 * _basis(6)), _unit(_basis(5) + 0.3 * _basis(7))]),
    )


@pytest.fixture
def hand_made_text(monkeypatch):
    text = _hand_made_text()
    monkeypatch.setattr(labeler_module, "cached_text_embeddings", lambda *args: text)
    return text


def _settings(tmp_path, **values):
    return LabelSettings.from_dict({"text_cache": str(tmp_path / "text_cache"), **values})


def test_predict_columns(loaded, vocabulary, tmp_path):
    tiles = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    frame = Labeler(loaded, vocabulary, _settings(tmp_path)).predict(tiles, "fluorescence")
    expected = ["cell_type", "cell_type_prob", "cell_type_top3", "cell_type_margin", "uncertain",
                "prob_alpha", "prob_beta", "prob_gamma", "anomaly_score", "anomaly_zero_shot",
                "anomaly_few_shot", "anomaly_kind", "anomaly_kind_prob", "is_anomalous",
                "top_anomaly_prompts", "embedding"]
    assert list(frame.columns) == expected
    assert len(frame) == 4
    assert np.allclose(frame[["prob_alpha", "prob_beta", "prob_gamma"]].sum(axis=1), 1.0)
    assert frame["anomaly_few_shot"].isna().all()
    assert frame["anomaly_score"].between(0, 1).all()
    assert frame["embedding"][0].dtype == np.float32
    assert np.allclose([np.linalg.norm(e) for e in frame["embedding"]], 1.0, atol=1e-5)
    assert all(len(prompts.split(";")) == 3 for prompts in frame["top_anomaly_prompts"])


def test_predict_empty_batch(loaded, vocabulary, tmp_path):
    frame = Labeler(loaded, vocabulary, _settings(tmp_path)).predict(np.zeros((0, 32, 32, 3), np.uint8))
    assert len(frame) == 0
    assert "anomaly_kind" in frame


def test_calibration_temperature_sets_sharpness(loaded, vocabulary, hand_made_text, tmp_path):
    embedding = _unit(_basis(0) + 0.8 * _basis(1) + 0.3 * _basis(3))[None]
    similarities = embedding @ hand_made_text.classes.T
    sharpness = {}
    for temperature in (1.0, 0.1, 0.01):
        loaded.meta = {"temperature": temperature}
        frame = Labeler(loaded, vocabulary, _settings(tmp_path)).score_embeddings(embedding)
        probabilities = frame[["prob_alpha", "prob_beta", "prob_gamma"]].to_numpy()
        assert np.allclose(probabilities, softmax(similarities / temperature), atol=1e-6)
        sharpness[temperature] = frame["cell_type_prob"][0]
    assert sharpness[1.0] < sharpness[0.1] < sharpness[0.01]


def test_calibration_without_temperature_uses_logit_scale(loaded, vocabulary, hand_made_text, tmp_path):
    loaded.meta = {}
    labeler = Labeler(loaded, vocabulary, _settings(tmp_path))
    assert labeler.class_scale == pytest.approx(float(loaded.model.logit_scale.detach().exp()))
    embedding = _unit(_basis(0) + 0.5 * _basis(1))[None]
    frame = labeler.score_embeddings(embedding)
    expected = softmax(labeler.class_scale * embedding @ hand_made_text.classes.T)
    assert np.allclose(frame[["prob_alpha", "prob_beta", "prob_gamma"]].to_numpy(), expected, atol=1e-6)


def test_uncertain_flag_between_classes(loaded, vocabulary, hand_made_text, tmp_path):
    loaded.meta = {"temperature": 0.05}
    clear = _unit(_basis(0) + 0.2 * _basis(3))
    between = _unit(_basis(0) + _basis(1))
    frame = Labeler(loaded, vocabulary, _settings(tmp_path)).score_embeddings(np.stack([clear, between]))
    assert frame["uncertain"].tolist() == [False, True]
    assert frame["cell_type_margin"][1] < 0.1


def test_anomaly_columns_on_synthetic_anomalies(loaded, vocabulary, hand_made_text, tmp_path):
    loaded.meta = {"temperature": 0.05}
    normal = _unit(_basis(0) + 0.8 * _basis(3))
    debris = _unit(_basis(0) + 0.8 * _basis(4) + 0.2 * _basis(7))
    blur = _unit(_basis(1) + 0.8 * _basis(5) + 0.2 * _basis(6))
    frame = Labeler(loaded, vocabulary, _settings(tmp_path, anomaly_threshold=0.5)).score_embeddings(
        np.stack([normal, debris, blur]))
    assert frame["is_anomalous"].tolist() == [False, True, True]
    assert frame["anomaly_kind"].tolist() == ["", "debris", "blur"]
    assert np.isnan(frame["anomaly_kind_prob"][0])
    assert frame["anomaly_kind_prob"][1] > 0.9
    assert frame["anomaly_score"][0] < 0.05
    assert frame["anomaly_score"][1:].min() > 0.95
    assert frame["anomaly_score"].tolist() == frame["anomaly_zero_shot"].tolist()
    assert frame["top_anomaly_prompts"][1].split(";")[:2] == ["an image of cells with dust.", "an image of cells with debris."]


def test_anomaly_temperature_overrides_scale(loaded, vocabulary, hand_made_text, tmp_path):
    loaded.meta = {"temperature": 0.05, "anomaly_temperature": 0.5}
    labeler = Labeler(loaded, vocabulary, _settings(tmp_path))
    assert labeler.class_scale == pytest.approx(20.0)
    assert labeler.anomaly_scale == pytest.approx(2.0)


def test_few_shot_with_model_references(loaded, vocabulary, tmp_path):
    rng = np.random.default_rng(0)
    references = np.clip(rng.normal(30, 4, (12, 32, 32, 3)), 0, 255).astype(np.uint8)
    outliers = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    labeler = Labeler(loaded, vocabulary, _settings(tmp_path, few_shot_weight=0.5))
    labeler.set_normal_references(references)
    own = labeler.predict(references)
    other = labeler.predict(outliers)
    assert own["anomaly_few_shot"].max() < 0.05
    assert other["anomaly_few_shot"].min() > 0.95
    expected = 0.5 * other["anomaly_zero_shot"] + 0.5 * other["anomaly_few_shot"]
    assert np.allclose(other["anomaly_score"], expected)


def test_few_shot_references_from_tile_folder(loaded, vocabulary, tmp_path):
    from PIL import Image

    folder = tmp_path / "normal_tiles"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(5):
        tile = np.clip(rng.normal(30, 4, (48, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(tile).save(folder / f"tile_{index}.png")
    labeler = Labeler(loaded, vocabulary, _settings(tmp_path, normal_references=[str(folder)]))
    assert labeler.memory_bank is None
    frame = labeler.predict(rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    assert labeler.memory_bank is not None
    assert len(labeler.memory_bank.embeddings) == 5
    assert frame["anomaly_few_shot"].notna().all()


def test_few_shot_missing_reference_path(loaded, vocabulary, tmp_path):
    labeler = Labeler(loaded, vocabulary, _settings(tmp_path, normal_references=[str(tmp_path / "missing")]))
    with pytest.raises(ConfigError, match="normal_references"):
        labeler.predict(np.zeros((1, 32, 32, 3), np.uint8))


def test_few_shot_needs_two_references(loaded, vocabulary, tmp_path):
    with pytest.raises(ConfigError, match="at least 2"):
        Labeler(loaded, vocabulary, _settings(tmp_path)).set_normal_references(np.zeros((1, 32, 32, 3), np.uint8))


def test_modality_setting_overrides_image(loaded, vocabulary, tmp_path):
    assert Labeler(loaded, vocabulary, _settings(tmp_path)).modality_for("brightfield") == "brightfield"
    forced = Labeler(loaded, vocabulary, _settings(tmp_path, modality="fluorescence"))
    assert forced.modality_for("brightfield") == "fluorescence"


def test_text_cache_hit(loaded, vocabulary, tmp_path, monkeypatch):
    import vlm_micro.labeling.text as text_module

    tiles = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    first = Labeler(loaded, vocabulary, _settings(tmp_path)).predict(tiles, "fluorescence")
    cached = list((tmp_path / "text_cache").glob("*.npz"))
    assert len(cached) == 1

    def no_rebuild(*args):
        raise AssertionError("the cached text embeddings should have been used")

    monkeypatch.setattr(text_module, "build_text_embeddings", no_rebuild)
    second = Labeler(loaded, vocabulary, _settings(tmp_path)).predict(tiles, "fluorescence")
    assert np.allclose(first["prob_alpha"], second["prob_alpha"])
    with pytest.raises(AssertionError, match="cached text embeddings"):
        Labeler(loaded, vocabulary, _settings(tmp_path)).predict(tiles, "brightfield")


def test_text_cache_key_changes_with_vocabulary(loaded, vocabulary, project_vocabulary, tmp_path):
    tiles = np.zeros((1, 32, 32, 3), np.uint8)
    Labeler(loaded, vocabulary, _settings(tmp_path)).predict(tiles, "fluorescence")
    Labeler(loaded, project_vocabulary, _settings(tmp_path)).predict(tiles, "fluorescence")
    assert len(list((tmp_path / "text_cache").glob("*.npz"))) == 2


def test_text_cache_corrupt_file_rebuilt(loaded, vocabulary, tmp_path):
    tiles = np.zeros((1, 32, 32, 3), np.uint8)
    first = Labeler(loaded, vocabulary, _settings(tmp_path)).predict(tiles, "fluorescence")
    (path,) = (tmp_path / "text_cache").glob("*.npz")
    path.write_bytes(b"not a zip file")
    second = Labeler(loaded, vocabulary, _settings(tmp_path)).predict(tiles, "fluorescence")
    assert np.allclose(first["prob_alpha"], second["prob_alpha"])
    with np.load(path) as data:
        assert "classes" in data


def _grid(rows, cols, size):
    boxes = [(y, x) for y in range(0, rows, size) for x in range(0, cols, size)]
    return pd.DataFrame({
        "tile_id": np.arange(len(boxes)),
        "y": [y for y, _ in boxes], "x": [x for _, x in boxes],
        "height": size, "width": size, "level": 0,
    })


def test_label_view_prefetches_batches(loaded, vocabulary, tmp_path, monkeypatch):
    rgb = np.random.default_rng(2).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    view = ArrayView.from_rgb(rgb, modality="fluorescence")
    tiles_df = _grid(96, 128, 32).set_axis(np.arange(100, 112))
    readers = []

    def iter_tile_batches(view, tiles_df, tile_size_px, batch_size):
        for start in range(0, len(tiles_df), batch_size):
            readers.append(threading.current_thread().name)
            rows = tiles_df.iloc[start:start + batch_size]
            batch = np.stack([view.read_region(y, x, tile_size_px, tile_size_px) for y, x in zip(rows.y, rows.x)])
            yield np.arange(start, start + len(rows)), batch

    monkeypatch.setattr(vlm_micro.tiling, "iter_tile_batches", iter_tile_batches, raising=False)
    labeler = Labeler(loaded, vocabulary, _settings(tmp_path))
    frame = labeler.label_view(view, tiles_df, 32, batch_size=5)
    assert readers == ["vlm-micro-prefetch"] * 3
    assert frame.index.tolist() == tiles_df.index.tolist()
    tiles = np.stack([rgb[y:y + 32, x:x + 32] for y, x in zip(tiles_df.y, tiles_df.x)])
    direct = labeler.predict(tiles, "fluorescence")
    assert np.allclose(frame["prob_alpha"].to_numpy(), direct["prob_alpha"].to_numpy(), atol=1e-5)
    assert frame["cell_type"].tolist() == direct["cell_type"].tolist()


def test_label_view_reading_error_propagates(loaded, vocabulary, tmp_path, monkeypatch):
    def iter_tile_batches(view, tiles_df, tile_size_px, batch_size):
        yield np.arange(2), np.zeros((2, 32, 32, 3), np.uint8)
        raise OSError("truncated file")

    monkeypatch.setattr(vlm_micro.tiling, "iter_tile_batches", iter_tile_batches, raising=False)
    view = ArrayView.from_rgb(np.zeros((64, 64, 3), np.uint8), modality="fluorescence")
    with pytest.raises(OSError, match="truncated file"):
        Labeler(loaded, vocabulary, _settings(tmp_path)).label_view(view, _grid(64, 64, 32), 32, batch_size=2)


def test_label_view_empty_table(loaded, vocabulary, tmp_path):
    view = ArrayView.from_rgb(np.zeros((64, 64, 3), np.uint8), modality="fluorescence")
    frame = Labeler(loaded, vocabulary, _settings(tmp_path)).label_view(view, _grid(64, 64, 32).iloc[:0], 32)
    assert len(frame) == 0
    assert "cell_type" in frame


def test_labeler_sets_torch_threads(loaded, vocabulary, tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        Labeler(loaded, vocabulary, _settings(tmp_path), threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _blobs(rows, cols, seed):
    """Dark field with bright round nuclei every 32 px, as a fluorescence image looks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    grey = rng.normal(10, 2, (rows, cols))
    for cy in range(16, rows, 32):
        for cx in range(16, cols, 32):
            grey[(yy - cy) ** 2 + (xx - cx) ** 2 < 64] = 200
    grey = np.clip(grey, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def test_label_view_with_tile_plan(loaded, vocabulary, tmp_path):
    from vlm_micro.tiling import TileSettings, plan_tiles

    view = ArrayView.from_rgb(_blobs(128, 160, 3), modality="fluorescence")
    plan = plan_tiles(view, TileSettings.from_dict({}), None, 32)
    assert len(plan.tiles) > 0
    frame = Labeler(loaded, vocabulary, _settings(tmp_path)).label_view(view, plan.tiles, 32, batch_size=4)
    assert frame.index.equals(plan.tiles.index)
    assert frame["cell_type"].isin(vocabulary.class_names).all()


def test_few_shot_references_from_image_file(loaded, vocabulary, tmp_path):
    from PIL import Image

    path = tmp_path / "normal.png"
    Image.fromarray(_blobs(128, 128, 4)).save(path)
    labeler = Labeler(loaded, vocabulary, _settings(tmp_path, normal_references=[str(path)]))
    frame = labeler.predict(_blobs(32, 32, 5)[None])
    assert labeler.memory_bank is not None
    assert len(labeler.memory_bank.embeddings) >= 2
    assert frame["anomaly_few_shot"].notna().all()
