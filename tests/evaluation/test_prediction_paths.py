"""Training-time zero-shot scores agree with the pipeline's labeller."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_micro.evaluation.predict import predict_tiles
from vlm_micro.labeling.vocabulary import load_vocabulary
from vlm_micro.model import load_model


@pytest.mark.parametrize("anomaly_temperature", [None, 0.2])
def test_labeler_and_zero_shot_scores_agree(tiny_dir, labels_file, anomaly_temperature):
    loaded = load_model(f"local-dir:{tiny_dir}", device="cpu")
    if anomaly_temperature:
        loaded.meta["anomaly_temperature"] = anomaly_temperature
    vocabulary = load_vocabulary(labels_file)
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, size=(6, 64, 64, 3), dtype=np.uint8)
    modalities = ["fluorescence", "brightfield"] * 3

    pipeline = predict_tiles(loaded, vocabulary, tiles, modalities, use_labeler=True)
    training = predict_tiles(loaded, vocabulary, tiles, modalities, use_labeler=False)

    assert pipeline["cell_type"].tolist() == training["cell_type"].tolist()
    for column in ("cell_type_prob", "prob_alpha", "prob_beta", "anomaly_score"):
        np.testing.assert_allclose(pipeline[column], training[column], atol=1e-5, err_msg=column)
