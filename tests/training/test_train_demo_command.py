"""``vlm-micro train-demo`` end to end on a few synthetic images, with one short epoch."""

from __future__ import annotations

import json

import pytest

from vlm_micro.cli import main
from vlm_micro.errors import ConfigError
from vlm_micro.model import load_model
from vlm_micro.training.demo import DemoSettings


@pytest.mark.slow
def test_train_demo_writes_model_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    status = main(["train-demo", "--out", str(out), "--n-images", "2", "--epochs", "1", "--seed", "1001",
                   "--eval-images", "1", "--work-dir", str(tmp_path / "work")])
    printed = capsys.readouterr().out
    assert status == 0
    assert f"model: {out.resolve()}" in printed

    meta = json.loads((out / "vlm_micro.json").read_text())
    assert meta["name"] == "vlm-micro-demo"
    assert meta["pixel_size_um"] == 0.5
    assert meta["tile_size_px"] == 64
    assert meta["training_seed"] == 1001
    assert meta["heldout_seed"] == 7
    assert 0.0 <= meta["heldout_macro_f1"] <= 1.0
    assert meta["temperature"] > 0
    card = (out / "MODEL_CARD.md").read_text()
    assert "## What it cannot do" in card
    assert f"{meta['heldout_macro_f1']:.3f}" in card

    loaded = load_model(f"local-dir:{out}", device="cpu")
    assert loaded.image_size == 64
    assert loaded.temperature == meta["temperature"]


def test_demo_settings_reject_training_seed_as_heldout():
    with pytest.raises(ConfigError, match="held-out data needs another seed"):
        DemoSettings.from_dict({"seed": 7, "eval_seed": 7})
    with pytest.raises(ConfigError, match="n_images"):
        DemoSettings.from_dict({"n_images": 1})
