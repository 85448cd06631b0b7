"""A tiny model folder, a small vocabulary and a few annotated images written by the tests."""

from __future__ import annotations

import copy

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from vlm_micro.model import save_model_dir

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"width": 32, "layers": 1, "patch_size": 8, "image_size": 32, "head_width": 16},
    "text_cfg": {"width": 32, "layers": 1, "context_length": 16, "heads": 2},
}
VOCABULARY = {
    "cell_types": [{"name": "alpha", "synonyms": ["alpha cells"]}, {"name": "beta", "synonyms": ["beta cells"]}],
    "templates": {"default": ["a micrograph of {}."]},
    "anomaly": {"normal_states": ["normal {}"], "kinds": [{"name": "debris", "states": ["{} with <debris>"]}],
                "templates": ["an image of {}."]},
}


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    torch.set_num_threads(1)


@pytest.fixture
def labels_file(tmp_path):
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump(VOCABULARY))
    return path


@pytest.fixture
def tiny_dir(tmp_path):
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**copy.deepcopy(TINY_CFG))
    meta = {"name": "tiny <model>", "pixel_size_um": 0.5, "tile_size_px": 64, "temperature": 0.05}
    return save_model_dir(model, copy.deepcopy(TINY_CFG), tmp_path / "tiny", meta=meta)


@pytest.fixture
def annotated_images(tmp_path):
    """Four 64 x 128 px images, each with one alpha (red) and one beta (green) tile."""
    rng = np.random.default_rng(0)
    rows = []
    for index in range(4):
        image = rng.integers(0, 30, size=(64, 128, 3)).astype(np.uint8)
        image[16:48, 16:48, 0] = 220
        image[16:48, 80:112, 1] = 220
        Image.fromarray(image).save(tmp_path / f"img{index}.png")
        for x, cell_type in ((0, "alpha"), (64, "beta")):
            anomaly = int(index == 0 and x == 0)
            rows.append({"image_path": f"img{index}.png", "y": 0, "x": x, "height": 64, "width": 64,
                         "cell_type": cell_type, "anomaly": anomaly, "anomaly_kind": "debris" if anomaly else ""})
    pd.DataFrame(rows).to_csv(tmp_path / "annotations.csv", index=False)
    return tmp_path / "annotations.csv"
