"""Fixtures of the pipeline tests: a tiny model folder and a few small images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tiny_model import write_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny", "tiny-test")


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
