"""Fixtures of the pipeline tests: a tiny model folder and a few small images."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# A few-layer open_clip model; random weights are enough to exercise the pipeline.
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"width": 32, "layers": 1, "patch_size": 8, "image_size": 32, "head_width": 16},
    "text_cfg": {"width": 32, "layers": 1, "context_length": 32, "heads": 2},
}


def write_tiny_model(folder: Path) -> Path:
    """Write a tiny open_clip model in local-dir format (0.5 um/px, 64 px tiles) into ``folder``."""
    import open_clip
    import torch

    from vlm_micro.model import save_model_dir

    torch.manual_seed(0)
    model = open_clip.model.CLIP(**copy.deepcopy(TINY_CFG)).eval()
    meta = {"name": "tiny-test", "pixel_size_um": 0.5, "tile_size_px": 64}
    return save_model_dir(model, copy.deepcopy(TINY_CFG), folder, meta=meta)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def small_images(tmp_path_factory) -> Path:
    """Folder with two 128 px synthetic images (fluorescence, brightfield) and one broken TIFF."""
    from vlm_micro.synth import generate_dataset

    dataset = tmp_path_factory.mktemp("synth")
    generate_dataset(dataset, 2, 5, modality="mixed", size_px=128)
    folder = tmp_path_factory.mktemp("images")
    for path in sorted((dataset / "images").glob("*.ome.tif")):
        shutil.copyfile(path, folder / path.name)
    (folder / "broken.tif").write_bytes(b"II*\x00 this is not a TIFF file")
    return folder


@pytest.fixture
def labels_file() -> Path:
    return REPO_ROOT / "config" / "labels.yaml"
