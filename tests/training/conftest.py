"""Tiny models, a small vocabulary and colour-coded tile images written by the tests.

Each cell type is drawn as blobs of its own colour on a dark background, so a model of a
few thousand parameters learns the classes in a few epochs on one CPU thread.
"""

from __future__ import annotations

import copy

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from vlm_micro.labeling.vocabulary import parse_vocabulary
from vlm_micro.model import save_model_dir

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"width": 32, "layers": 1, "patch_size": 8, "image_size": 32, "head_width": 16},
    "text_cfg": {"width": 32, "layers": 1, "context_length": 16, "heads": 2},
}
SMALL_VOCABULARY = {
    "cell_types": [
        {"name": "alpha", "synonyms": ["alpha cells", "round alpha cells"]},
        {"name": "beta", "synonyms": ["beta cells"]},
        {"name": "gamma", "synonyms": ["gamma cells"]},
    ],
    "templates": {"default": ["a micrograph of {}."], "fluorescence": ["a fluorescence image of {}."]},
    "anomaly": {
        "object": "cells",
        "normal_states": ["normal {}"],
        "kinds": [
            {"name": "debris", "states": ["{} with debris"]},
            {"name": "blur", "states": ["blurry {}"]},
        ],
        "templates": ["an image of {}."],
    },
}
CLASS_COLOURS = {"alpha": (230, 40, 40), "beta": (40, 230, 40), "gamma": (40, 40, 230)}
TILE = 64


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    torch.set_num_threads(1)


@pytest.fixture
def vocabulary():
    return parse_vocabulary(copy.deepcopy(SMALL_VOCABULARY))


@pytest.fixture
def labels_file(tmp_path):
    """The small vocabulary written as a labels.yaml file."""
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump(SMALL_VOCABULARY))
    return path


@pytest.fixture
def tiny_cfg() -> dict:
    return copy.deepcopy(TINY_CFG)


@pytest.fixture
def tiny_dir(tmp_path, tiny_cfg):
    """A randomly initialised tiny CLIP saved as a local-dir model folder."""
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**tiny_cfg)
    meta = {"name": "tiny", "pixel_size_um": 0.5, "tile_size_px": TILE}
    return save_model_dir(model, tiny_cfg, tmp_path / "tiny", meta=meta)


def draw_tile(rng: np.random.Generator, cell_type: str, anomaly_kind: str = "") -> np.ndarray:
    """Return a (64, 64, 3) uint8 tile of blobs in the colour of ``cell_type``."""
    rows, columns = np.mgrid[0:TILE, 0:TILE]
    tile = np.zeros((TILE, TILE, 3), dtype=np.float32) + 10.0
    colour = np.array(CLASS_COLOURS[cell_type], dtype=np.float32)
    for _ in range(rng.integers(3, 6)):
        cy, cx, radius = rng.uniform(8, 56), rng.uniform(8, 56), rng.uniform(5, 9)
        inside = (rows - cy) ** 2 + (columns - cx) ** 2 < radius**2
        tile[inside] = colour * rng.uniform(0.8, 1.0)
    if anomaly_kind == "debris":
        tile[rng.integers(0, TILE), :] = 255.0
        tile[:, rng.integers(0, TILE)] = 255.0
    elif anomaly_kind == "blur":
        tile = (tile + np.roll(tile, 3, 0) + np.roll(tile, -3, 0) + np.roll(tile, 3, 1) + np.roll(tile, -3, 1)) / 5
    return np.clip(tile + rng.normal(0, 4, tile.shape), 0, 255).astype(np.uint8)


def write_tile_dataset(folder, n_images: int, seed: int, anomaly_every: int = 5) -> pd.DataFrame:
    """Write ``n_images`` PNGs of 2 x 2 tiles and ``annotations.csv``; return the table.

    Every ``anomaly_every``-th tile is anomalous (debris and blur alternating).
    """
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = list(CLASS_COLOURS)
    rows, counter = [], 0
    for index in range(n_images):
        image = np.zeros((2 * TILE, 2 * TILE, 3), dtype=np.uint8)
        for y in (0, TILE):
            for x in (0, TILE):
                cell_type = names[counter % len(names)]
                anomaly = counter % anomaly_every == anomaly_every - 1
                kind = ("debris", "blur")[(counter // anomaly_every) % 2] if anomaly else ""
                image[y:y + TILE, x:x + TILE] = draw_tile(rng, cell_type, kind)
                rows.append({"image_path": f"images/img{index:03d}.png", "image_id": f"img{index:03d}", "y": y, "x": x,
                             "height": TILE, "width": TILE, "cell_type": cell_type, "anomaly": int(anomaly),
                             "anomaly_kind": kind, "modality": "fluorescence"})
                counter += 1
        Image.fromarray(image).save(folder / "images" / f"img{index:03d}.png")
    table = pd.DataFrame(rows)
    table.to_csv(folder / "annotations.csv", index=False)
    return table


@pytest.fixture
def draw():
    """The tile drawing function, for tests that write their own images."""
    return draw_tile


@pytest.fixture
def write_dataset():
    """The dataset writing function, for tests that need a second dataset."""
    return write_tile_dataset


@pytest.fixture
def tile_dataset(tmp_path):
    """Twelve colour-coded images (48 tiles) with annotations.csv."""
    folder = tmp_path / "data"
    write_tile_dataset(folder, 12, seed=3)
    return folder
