"""Tiny open_clip models written by the tests themselves (no hub access)."""

from __future__ import annotations

import copy

import open_clip
import pytest
import torch

from vlm_micro.model import save_model_dir

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"width": 32, "layers": 1, "patch_size": 8, "image_size": 32, "head_width": 16},
    "text_cfg": {"width": 32, "layers": 1, "context_length": 16, "heads": 2},
}


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_cfg() -> dict:
    return copy.deepcopy(TINY_CFG)


@pytest.fixture
def tiny_model(tiny_cfg):
    torch.manual_seed(0)
    return open_clip.model.CLIP(**tiny_cfg).eval()


@pytest.fixture
def tiny_dir(tmp_path, tiny_model, tiny_cfg):
    meta = {"name": "tiny", "pixel_size_um": 0.5, "tile_size_px": 32, "temperature": 0.05}
    return save_model_dir(tiny_model, tiny_cfg, tmp_path / "tiny", meta=meta)
