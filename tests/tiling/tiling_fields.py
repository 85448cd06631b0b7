"""Synthetic fields of view for the tiling tests."""

from __future__ import annotations

import numpy as np

# H&E-like colours (RGB): glass, eosin-stained tissue, haematoxylin-stained nuclei.
GLASS = (245, 245, 245)
TISSUE = (230, 160, 200)
NUCLEUS = (90, 60, 150)


def disc_centres(shape: tuple[int, int], spacing: int, margin: int) -> list[tuple[int, int]]:
    """Return centres on a regular lattice, ``margin`` px away from the image border."""
    rows = range(margin, shape[0] - margin + 1, spacing)
    cols = range(margin, shape[1] - margin + 1, spacing)
    return [(y, x) for y in rows for x in cols]


def paint_discs(image: np.ndarray, centres, radius: float, value) -> np.ndarray:
    """Paint filled discs of ``radius`` px at ``centres`` into ``image`` (in place)."""
    rows, cols = np.ogrid[: image.shape[0], : image.shape[1]]
    for cy, cx in centres:
        image[(rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2] = value
    return image


def fluorescence_field(shape, centres, radius, rng, level=200, noise=4.0) -> np.ndarray:
    """Return dark-background RGB uint8 with bright discs (nuclear stain, white)."""
    grey = np.full(shape, 10.0)
    paint_discs(grey, centres, radius, level)
    grey += rng.normal(0.0, noise, size=shape)
    grey = np.clip(grey, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def brightfield_field(shape, tissue_rows: slice, centres, radius, rng, noise=3.0) -> np.ndarray:
    """Return bright-background RGB uint8: glass, a band of tissue, purple nuclei in it."""
    rgb = np.empty((*shape, 3), dtype=np.float64)
    rgb[:] = GLASS
    rgb[tissue_rows] = TISSUE
    paint_discs(rgb, centres, radius, NUCLEUS)
    rgb += rng.normal(0.0, noise, size=rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)
