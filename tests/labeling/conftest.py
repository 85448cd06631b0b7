"""Tiny open_clip model and small vocabulary written by the tests themselves."""

from __future__ import annotations

import copy
from pathlib import Path

import open_clip
import pytest
import torch

from vlm_micro.labeling.vocabulary import load_vocabulary, parse_vocabulary
from vlm_micro.model import load_model, save_model_dir

REPO = Path(__file__).resolve().parents[2]
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"width": 32, "layers": 1, "patch_size": 8, "image_size": 32, "head_width": 16},
    "text_cfg": {"width": 32, "layers": 1, "context_length": 16, "heads": 2},
}
SMALL_VOCABULARY = {
    "cell_types": [
        {"name": "alpha", "synonyms": ["alpha cells"]},
        {"name": "beta", "synonyms": ["beta cells"]},
        {"name": "gamma", "synonyms": ["gamma cells"]},
    ],
    "templates": {"default": ["a micrograph of {}."], "fluorescence": ["a fluorescence image of {}."]},
    "anomaly": {
        "object": "cells",
        "normal_states": ["normal {}"],
        "kinds": [
            {"name": "debris", "states": ["{} with debris", "{} with dust"]},
            {"name": "blur", "states": ["blurry {}", "defocused {}"]},
        ],
        "templates": ["an image of {}."],
    },
}


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**copy.deepcopy(TINY_CFG))
    folder = tmp_path_factory.mktemp("models") / "tiny"
    return save_model_dir(model, copy.deepcopy(TINY_CFG), folder, meta={"name": "tiny", "tile_size_px": 32})


@pytest.fixture
def loaded(tiny_dir):
    return load_model(f"local-dir:{tiny_dir}", device="cpu")


@pytest.fixture
def vocabulary():
    return parse_vocabulary(copy.deepcopy(SMALL_VOCABULARY))


@pytest.fixture(scope="session")
def project_vocabulary():
    return load_vocabulary(REPO / "config" / "labels.yaml")
