"""Same inputs, config and model give identical labels and scores on CPU; seeds are recorded."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from vlm_micro.io import open_views
from vlm_micro.labeling import LabelSettings, Labeler
from vlm_micro.labeling.vocabulary import load_vocabulary
from vlm_micro.model import load_model
from vlm_micro.synth import generate_dataset
from vlm_micro.tiling import TileSettings, plan_tiles

from .conftest import LABELS


@pytest.fixture(scope="module")
def synthetic_view(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth")
    generate_dataset(folder, 1, 5, modality="fluorescence", size_px=128)
    return open_views(next((folder / "images").glob("*.ome.tif")))[0]


def label_once(model_dir, view) -> pd.DataFrame:
    """Load the model afresh and label every grid tile of ``view`` on one CPU thread."""
    loaded = load_model(f"local-dir:{model_dir}", device="cpu")
    labeler = Labeler(loaded, load_vocabulary(LABELS), LabelSettings(text_cache=None), threads=1)
    plan = plan_tiles(view, TileSettings(min_foreground=0.0), loaded.pixel_size_um, loaded.tile_size_px)
    return labeler.label_view(view, plan.tiles, loaded.tile_size_px, batch_size=3)


def test_labels_identical_after_reload(tiny_model_dir, synthetic_view):
    first = label_once(tiny_model_dir, synthetic_view)
    second = label_once(tiny_model_dir, synthetic_view)
    assert len(first) == 4
    pd.testing.assert_frame_equal(first, second, check_exact=True)


def test_synth_same_seed_same_pixels(tmp_path):
    for name in ("a", "b"):
        generate_dataset(tmp_path / name, 2, 9, modality="mixed", size_px=64)
    for path in sorted((tmp_path / "a" / "images").glob("*.ome.tif")):
        other = tmp_path / "b" / "images" / path.name
        np.testing.assert_array_equal(tifffile.imread(path), tifffile.imread(other))


def test_synth_records_seed(tmp_path):
    generate_dataset(tmp_path, 2, 9, modality="mixed", size_px=64)
    manifest = json.loads((tmp_path / "synth.json").read_text(encoding="utf-8"))
    annotations = pd.read_csv(tmp_path / "annotations.csv")
    assert manifest["seed"] == 9
    assert set(annotations["seed"]) == {9}
