"""Shared helpers of the reader tests: small files written in the test's tmp_path."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def write_tiff(tmp_path):
    """Write ``data`` with ``tifffile.imwrite(**kwargs)`` and return the path."""

    def write(name: str, data: np.ndarray, **kwargs) -> Path:
        path = tmp_path / name
        tifffile.imwrite(path, data, **kwargs)
        return path

    return write


def _expected_grey(data: np.ndarray, percentiles=(1.0, 99.8)) -> np.ndarray:
    """Normalise a 2-D plane as the reader should: percentiles, clip, NaN to 0, uint8."""
    values = data[np.isfinite(data)] if data.dtype.kind == "f" else data.ravel()
    low, high = np.percentile(values, percentiles)
    if high <= low:
        low, high = values.min(), values.max()
    if high <= low:
        return np.zeros(data.shape, dtype=np.uint8)
    scaled = np.clip((data.astype(np.float64) - low) / (high - low), 0, 1)
    scaled = np.nan_to_num(scaled, nan=0.0)
    return np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8)


def _read_all(view, level: int = 0) -> np.ndarray:
    """Read a whole level of a view as RGB uint8."""
    rows, cols = view.levels[level].shape
    return view.read_region(0, 0, rows, cols, level)


@pytest.fixture
def expected_grey():
    """Reference normalisation of a 2-D plane, as a function."""
    return _expected_grey


@pytest.fixture
def read_all():
    """Whole-level read of a view, as a function."""
    return _read_all
