"""Fixtures of the tiling tests: a seeded generator and the real nuclei image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


@pytest.fixture(scope="session")
def nuclei_image() -> tuple[Path, np.ndarray]:
    """Path of the real nuclei image and its instance mask (0 = background)."""
    import tifffile

    mask = tifffile.imread(DATA_DIR / "nuclei_mask2d.tif")
    return DATA_DIR / "nuclei_img2d.tif", mask
