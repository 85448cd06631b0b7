"""A tiny fine-tune on CPU from annotations to a loadable model folder, and its parts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from vlm_micro.cli import main
from vlm_micro.errors import AnnotationError, ConfigError
from vlm_micro.model import load_model
from vlm_micro.training import wise
from vlm_micro.training.calibration import fit_anomaly_temperature, fit_temperature
from vlm_micro.training.finetune import FinetuneSettings, finetune
from vlm_micro.training.model_card import append_card_section


def test_finetune_improves_validation_accuracy(tiny_dir, tile_dataset, vocabulary, tmp_path):
    out = tmp_path / "tuned"
    settings = FinetuneSettings(base=f"local-dir:{tiny_dir}", annotations=str(tile_dataset / "annotations.csv"),
                                out=str(out), epochs=4, batch_size=32, learning_rate=1e-3, steps_per_epoch=10,
                                device="cpu", seed=0, alphas=(0.0, 0.5, 1.0))
    summary = finetune(settings, vocabulary)

    before, after = summary["validation_before"], summary["validation_after"]
    assert after["macro_f1"] >= before["macro_f1"] + 0.3
    assert after["accuracy"] > before["accuracy"]
    assert summary["wise_ft"]["alpha"] > 0.0
    assert [entry["alpha"] for entry in summary["wise_ft"]["sweep"]] == [0.0, 0.5, 1.0]
    assert summary["data"]["train"]["images"] + summary["data"]["validation"]["images"] == 12

    tuned = load_model(f"local-dir:{out}", device="cpu")
    assert tuned.temperature == summary["calibration"]["temperature"]
    assert tuned.meta["vocabulary_checksum"] == vocabulary.checksum()
    assert tuned.meta["base_model"]["spec"] == f"local-dir:{tiny_dir}"
    assert tuned.meta["tile_size_px"] == 64
    card = (out / "MODEL_CARD.md").read_text()
    for heading in ("## Data", "## Recipe", "## Weight-space ensemble (WiSE-FT)", "## Calibration", "## Validation metrics"):
        assert heading in card
    assert not (out / "checkpoints").exists()
    assert json.loads((out / "training_summary.json").read_text())["wise_ft"]["alpha"] == summary["wise_ft"]["alpha"]


def test_finetune_warns_when_base_weights_kept(tiny_dir, tile_dataset, vocabulary, tmp_path, caplog):
    """With alpha 0 as the only choice, the written model has the base weights, and a warning is logged."""
    out = tmp_path / "kept"
    settings = FinetuneSettings(base=f"local-dir:{tiny_dir}", annotations=str(tile_dataset / "annotations.csv"),
                                out=str(out), epochs=1, batch_size=8, steps_per_epoch=2, device="cpu", seed=0,
                                alphas=(0.0,))
    with caplog.at_level("WARNING", logger="vlm_micro.training.finetune"):
        summary = finetune(settings, vocabulary)
    assert summary["wise_ft"]["alpha"] == 0.0
    assert "fine-tuning changed no weights" in caplog.text
    base = load_model(f"local-dir:{tiny_dir}", device="cpu")
    written = load_model(f"local-dir:{out}", device="cpu")
    for name, tensor in base.model.state_dict().items():
        assert torch.equal(tensor, written.model.state_dict()[name]), name


def test_finetune_cli_with_config(tiny_dir, tile_dataset, labels_file, tmp_path, capsys):
    out = tmp_path / "cli"
    config = {
        "labels": str(labels_file),
        "finetune": {"base": f"local-dir:{tiny_dir}", "annotations": str(tile_dataset), "out": str(out),
                     "epochs": 1, "batch_size": 8, "device": "cpu"},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    status = main(["finetune", "--config", str(tmp_path / "config.yaml"), "--lock-text", "--seed", "2"])
    printed = capsys.readouterr().out
    assert status == 0
    assert f"model: {out.resolve()}" in printed
    assert "validation_macro_f1_after:" in printed
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["recipe"]["lock_text"] is True
    assert summary["recipe"]["seed"] == 2
    assert summary["recipe"]["epochs"] == 1


def test_finetune_cli_without_annotations_fails(tiny_dir, labels_file, tmp_path, capsys):
    status = main(["finetune", "--base", f"local-dir:{tiny_dir}", "--labels", str(labels_file),
                   "--config", str(_empty_config(tmp_path)), "--out", str(tmp_path / "x")])
    assert status == 1
    assert "no annotations given" in capsys.readouterr().err


@pytest.fixture
def no_model_loading(monkeypatch):
    """Make loading a model fail the test, so the checks must come before it."""
    import vlm_micro.model

    def load_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the annotations were checked")

    monkeypatch.setattr(vlm_micro.model, "load_model", load_model)


@pytest.mark.parametrize(("option", "name"), [
    ("--annotations", "annotations"),
    ("--reference-annotations", "reference annotations"),
])
def test_finetune_cli_missing_annotations(tiny_dir, tile_dataset, labels_file, tmp_path, capsys, no_model_loading,
                                          option, name):
    missing = tmp_path / "missing.csv"
    paths = {"--annotations": str(tile_dataset / "annotations.csv"), "--reference-annotations": str(tile_dataset)}
    paths[option] = str(missing)
    arguments = [part for pair in paths.items() for part in pair]
    status = main(["finetune", "--base", f"local-dir:{tiny_dir}", "--labels", str(labels_file),
                   "--config", str(_empty_config(tmp_path)), "--out", str(tmp_path / "x"), *arguments])
    error = capsys.readouterr().err
    assert status == 1
    assert f"vlm-micro finetune: error: {name} not found: {missing}; fix {option} or finetune." in error


def test_finetune_checks_reference_table_first(tiny_dir, tile_dataset, vocabulary, tmp_path, no_model_loading):
    reference = tmp_path / "reference.csv"
    reference.write_text("image_path,cell_type\nimages/missing.png,alpha\n")
    settings = FinetuneSettings(base=f"local-dir:{tiny_dir}", annotations=str(tile_dataset / "annotations.csv"),
                                out=str(tmp_path / "x"), reference_annotations=str(reference), device="cpu")
    with pytest.raises(AnnotationError, match="image file not found"):
        finetune(settings, vocabulary)


def _empty_config(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    return path


def test_finetune_settings_reject_bad_alpha():
    with pytest.raises(ConfigError, match="alphas"):
        FinetuneSettings.from_dict({"alphas": [0.5, 1.5]})
    with pytest.raises(ConfigError, match="unknown finetune setting"):
        FinetuneSettings.from_dict({"epoch": 1})


def test_wise_interpolation_endpoints():
    base = {"w": torch.zeros(2, 2), "steps": torch.tensor(3)}
    tuned = {"w": torch.ones(2, 2), "steps": torch.tensor(7)}
    assert torch.equal(wise.interpolate_state(base, tuned, 0.0)["w"], base["w"])
    assert torch.equal(wise.interpolate_state(base, tuned, 1.0)["w"], tuned["w"])
    halfway = wise.interpolate_state(base, tuned, 0.25)
    assert torch.allclose(halfway["w"], torch.full((2, 2), 0.25))
    assert halfway["steps"].item() == 7


def test_wise_rejects_other_architecture():
    with pytest.raises(ValueError, match="shape"):
        wise.interpolate_state({"w": torch.zeros(2)}, {"w": torch.zeros(3)}, 0.5)


def test_choose_alpha_prefers_smallest_near_best():
    sweep = [{"alpha": 0.0, "score": 0.5}, {"alpha": 0.4, "score": 0.898}, {"alpha": 0.8, "score": 0.9},
             {"alpha": 1.0, "score": 0.85}]
    assert wise.choose_alpha(sweep, tolerance=0.005) == 0.4
    assert wise.choose_alpha(sweep, tolerance=0.0) == 0.8
    assert wise.choose_alpha([{"alpha": 0.3, "score": None}, {"alpha": 0.6, "score": None}]) == 0.6


def test_fit_temperature_recovers_true_value():
    rng = np.random.default_rng(0)
    similarity = rng.uniform(-1, 1, size=(4000, 4))
    true_temperature = 0.2
    logits = similarity / true_temperature
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    targets = np.array([rng.choice(4, p=row) for row in probabilities])
    assert fit_temperature(similarity, targets) == pytest.approx(true_temperature, rel=0.1)


def test_fit_anomaly_temperature_recovers_true_value():
    rng = np.random.default_rng(1)
    similarity = rng.uniform(-1, 1, size=(4000, 3))
    true_temperature = 0.3
    logits = similarity / true_temperature
    p_normal = np.exp(logits[:, 0]) / np.exp(logits).sum(axis=1)
    anomaly = (rng.random(4000) > p_normal).astype(int)
    assert fit_anomaly_temperature(similarity, anomaly) == pytest.approx(true_temperature, rel=0.1)


def test_append_card_section_replaces_same_title(tmp_path):
    (tmp_path / "MODEL_CARD.md").write_text("# m\n\n## Data\n\nold\n\n## Limits\n\nnone\n")
    append_card_section(tmp_path, "Benchmark", "first")
    append_card_section(tmp_path, "Benchmark", "second")
    append_card_section(tmp_path, "Data", "new")
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert card.count("## Benchmark") == 1
    assert "second" in card
    assert "first" not in card
    assert "old" not in card
    assert card.endswith("## Data\n\nnew\n")
    assert "## Limits" in card


def test_choose_alpha_respects_reference_floor():
    sweep = [{"alpha": 0.0, "score": 0.5, "reference_macro_f1": 0.95},
             {"alpha": 0.5, "score": 0.8, "reference_macro_f1": 0.93},
             {"alpha": 1.0, "score": 0.9, "reference_macro_f1": 0.80}]
    assert wise.choose_alpha(sweep, tolerance=0.0) == 1.0
    assert wise.choose_alpha(sweep, tolerance=0.0, reference_floor=0.92) == 0.5
    assert wise.choose_alpha(sweep, tolerance=0.0, reference_floor=0.99) == 0.0


def test_finetune_with_reference_tiles(tiny_dir, tile_dataset, vocabulary, tmp_path, write_dataset):
    reference = write_dataset(tmp_path / "reference", 3, seed=9)
    out = tmp_path / "with-reference"
    settings = FinetuneSettings(base=f"local-dir:{tiny_dir}", annotations=str(tile_dataset), out=str(out), epochs=1,
                                batch_size=16, steps_per_epoch=2, device="cpu", alphas=(0.0, 1.0),
                                reference_annotations=str(tmp_path / "reference"), max_reference_drop=0.0)
    summary = finetune(settings, vocabulary)
    assert summary["reference"]["tiles"] == len(reference)
    assert all("reference_macro_f1" in entry for entry in summary["wise_ft"]["sweep"])
    chosen = [e for e in summary["wise_ft"]["sweep"] if e["alpha"] == summary["wise_ft"]["alpha"]][0]
    assert chosen["reference_macro_f1"] >= summary["reference"]["before"]["macro_f1"]
    assert "reference tiles" in (out / "MODEL_CARD.md").read_text()
