"""The bundled demo model reaches the held-out accuracy that its model card reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlm_micro.evaluation.evaluate import evaluate_model
from vlm_micro.labeling.vocabulary import load_vocabulary
from vlm_micro.model import load_model
from vlm_micro.model.loading import BUILTIN_DIR
from vlm_micro.synth.dataset import generate_dataset
from vlm_micro.training.annotations import load_annotations

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = BUILTIN_DIR / "demo"
N_IMAGES = 16  # the first images of the card's held-out set: image i depends only on (seed, i)
MARGIN = 0.03  # allowed shortfall against the card, for evaluating on a subset of its images


@pytest.fixture(scope="module")
def demo_meta() -> dict:
    return json.loads((DEMO_DIR / "vlm_micro.json").read_text())


@pytest.fixture(scope="module")
def heldout_metrics(demo_meta, tmp_path_factory):
    folder = tmp_path_factory.mktemp("heldout")
    vocabulary = load_vocabulary(REPO / "config" / "labels.yaml")
    generate_dataset(folder, N_IMAGES, demo_meta["heldout_seed"], modality="mixed", stain="he", labels=vocabulary)
    table = load_annotations(folder / "annotations.csv", vocabulary)
    metrics, _ = evaluate_model(load_model("builtin:demo", device="cpu"), vocabulary, table)
    return metrics


def test_demo_heldout_seed_not_used_in_training(demo_meta):
    assert demo_meta["heldout_seed"] != demo_meta["training_seed"]


def test_demo_card_reports_heldout_values(demo_meta):
    card = (DEMO_DIR / "MODEL_CARD.md").read_text()
    assert f"{demo_meta['heldout_macro_f1']:.3f}" in card
    assert f"{demo_meta['heldout_anomaly_auroc']:.3f}" in card
    assert demo_meta["heldout_macro_f1"] >= 0.95
    assert demo_meta["heldout_anomaly_auroc"] >= 0.97


def test_demo_heldout_macro_f1_matches_card(demo_meta, heldout_metrics):
    assert heldout_metrics["macro_f1"] >= demo_meta["heldout_macro_f1"] - MARGIN


def test_demo_heldout_anomaly_auroc_matches_card(demo_meta, heldout_metrics):
    assert heldout_metrics["anomaly_auroc"] >= demo_meta["heldout_anomaly_auroc"] - MARGIN


def test_demo_model_folder_under_size_limit():
    size = sum(path.stat().st_size for path in DEMO_DIR.iterdir() if path.is_file())
    assert size <= 30 * 1024 * 1024
