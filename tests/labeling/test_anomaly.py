"""Zero-shot and few-shot anomaly scores on hand-made embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_micro.labeling.anomaly import MemoryBank, combine_scores, softmax, top_prompts, zero_shot_anomaly


def _unit(vector):
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def _basis(index, dim=8):
    vector = np.zeros(dim)
    vector[index] = 1.0
    return vector


def test_zero_shot_matches_softmax_formula():
    rng = np.random.default_rng(1)
    embeddings = np.array([_unit(row) for row in rng.normal(size=(5, 8))])
    normal = _unit(rng.normal(size=8))
    kinds = np.array([_unit(row) for row in rng.normal(size=(3, 8))])
    score, kind_probabilities = zero_shot_anomaly(embeddings, normal, kinds, scale=20.0)
    logits = 20.0 * embeddings @ np.vstack([normal, kinds]).T
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.allclose(score, 1.0 - expected[:, 0])
    assert np.allclose(kind_probabilities, expected[:, 1:] / expected[:, 1:].sum(axis=1, keepdims=True))


def test_zero_shot_separates_synthetic_anomalies():
    normal = _basis(0)
    kinds = np.array([_basis(1), _basis(2)])
    normal_tiles = np.array([_unit(_basis(0) + 0.1 * _basis(5)), _unit(_basis(0) + 0.2 * _basis(6))])
    anomalous_tiles = np.array([_unit(_basis(1) + 0.2 * _basis(0)), _unit(_basis(2) + 0.1 * _basis(7))])
    score, kind_probabilities = zero_shot_anomaly(np.vstack([normal_tiles, anomalous_tiles]), normal, kinds, 100.0)
    assert score[:2].max() < 0.01
    assert score[2:].min() > 0.99
    assert np.argmax(kind_probabilities[2:], axis=1).tolist() == [0, 1]
    assert np.all((score >= 0) & (score <= 1))


def test_zero_shot_scale_sharpens():
    tile = _unit(_basis(1) + 0.9 * _basis(0))[None]
    low, _ = zero_shot_anomaly(tile, _basis(0), _basis(1)[None], scale=1.0)
    high, _ = zero_shot_anomaly(tile, _basis(0), _basis(1)[None], scale=100.0)
    assert 0.5 < low[0] < high[0]


def test_softmax_stable_for_large_logits():
    assert np.allclose(softmax(np.array([[1000.0, 1000.0]])), [[0.5, 0.5]])


def test_top_prompts_nearest_first():
    prompts = ["p0", "p1", "p2;semicolon", "p3"]
    prompt_embeddings = np.eye(4)
    tile = _unit([0.1, 0.2, 0.9, 0.5])[None]
    assert top_prompts(tile, prompt_embeddings, prompts, k=3) == ["p2,semicolon;p3;p1"]
    assert top_prompts(tile, prompt_embeddings[:2], prompts[:2], k=3) == ["p1;p0"]


def _cluster(rng, centre, n, noise):
    return np.array([_unit(centre + noise * rng.normal(size=centre.shape)) for _ in range(n)])


def test_few_shot_references_low_outliers_high():
    rng = np.random.default_rng(0)
    centre = _unit(rng.normal(size=32))
    references = _cluster(rng, centre, 40, 0.05)
    bank = MemoryBank.fit(references)
    assert bank.scores(references).max() < 0.05
    normal_queries = _cluster(rng, centre, 20, 0.05)
    assert np.median(bank.scores(normal_queries)) < 0.5
    outliers = _cluster(rng, _unit(rng.normal(size=32)), 10, 0.05)
    assert bank.scores(outliers).min() > 0.95


def test_few_shot_scale_follows_reference_spread():
    rng = np.random.default_rng(0)
    centre = _unit(rng.normal(size=32))
    tight = MemoryBank.fit(_cluster(rng, centre, 30, 0.02))
    loose = MemoryBank.fit(_cluster(rng, centre, 30, 0.2))
    assert tight.centre < loose.centre
    query = _cluster(rng, centre, 1, 0.15)
    assert tight.scores(query)[0] > loose.scores(query)[0]


def test_few_shot_duplicates_keep_finite_scale():
    centre = _unit(np.arange(1, 9))
    bank = MemoryBank.fit(np.vstack([centre, centre, centre]))
    assert bank.width > 0
    assert bank.scores(centre[None])[0] < 0.05
    assert bank.scores(_basis(0)[None])[0] > 0.95


def test_memory_bank_needs_two_references():
    with pytest.raises(ValueError, match="at least 2"):
        MemoryBank.fit(np.ones((1, 4)))


def test_combine_scores_weight():
    zero = np.array([0.2, 0.8])
    few = np.array([0.6, 0.0])
    assert np.allclose(combine_scores(zero, few, 0.5), [0.4, 0.4])
    assert np.allclose(combine_scores(zero, few, 0.0), zero)
    assert np.allclose(combine_scores(zero, None, 0.5), zero)
