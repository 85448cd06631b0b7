"""Block layout of a synthetic field of view.

The field is a grid of square blocks aligned at (0, 0). Every block holds one cell type
or is empty background. Blocks are grouped into tissue-like regions by a noisy Voronoi
partition of the grid, so neighbouring blocks often share a type. Annotated blocks carry
an anomaly kind with a given probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BACKGROUND = -1
NO_ANOMALY = -1


@dataclass(frozen=True)
class BlockLayout:
    """Cell type, anomaly and region of every block.

    Attributes
    ----------
    types : (R, C) ndarray of int
        Index into the class names, or ``BACKGROUND`` (-1) for an empty block.
    anomalies : (R, C) ndarray of int
        Index into the anomaly kinds, or ``NO_ANOMALY`` (-1).
    regions : (R, C) ndarray of int
        Region id; blocks of one region share a type and a tissue orientation.
    region_angles : (n_regions,) ndarray of float
        Orientation in radians of fibres and grid of each region.
    block_px : int
        Side of a block in pixels.
    """

    types: np.ndarray
    anomalies: np.ndarray
    regions: np.ndarray
    region_angles: np.ndarray
    block_px: int

    def to_pixels(self, grid: np.ndarray) -> np.ndarray:
        """Expand an (R, C) block grid to an (R * block_px, C * block_px) pixel map."""
        return np.repeat(np.repeat(grid, self.block_px, axis=0), self.block_px, axis=1)

    def annotated_blocks(self):
        """Yield (row, column, type index, anomaly index) of every non-background block."""
        for row, col in zip(*np.nonzero(self.types != BACKGROUND)):
            yield int(row), int(col), int(self.types[row, col]), int(self.anomalies[row, col])


def plan_layout(
    rng: np.random.Generator,
    n_rows: int,
    n_cols: int,
    n_classes: int,
    n_anomaly_kinds: int,
    anomaly_fraction: float,
    block_px: int,
) -> BlockLayout:
    """Draw the block layout of one field of view.

    Region seeds get cell types from a shuffled cycle over all classes, so one field
    shows several types. About 5-15 % of the blocks are background: one background
    region in most fields, plus scattered empty blocks. Fields of two or more blocks
    always have at least one background and one annotated block.
    """
    n_blocks = n_rows * n_cols
    n_regions = int(np.clip(round(n_blocks / rng.uniform(4.0, 7.0)), 1, n_blocks))
    region_types = np.resize(rng.permutation(n_classes), n_regions)
    if n_blocks >= 4 and rng.random() < 0.7:
        region_types = np.append(region_types, BACKGROUND)
    n_seeds = len(region_types)

    seeds = rng.uniform(0.0, 1.0, size=(n_seeds, 2)) * (n_rows, n_cols)
    weights = rng.uniform(0.8, 1.25, size=n_seeds)
    weights[region_types == BACKGROUND] = rng.uniform(0.4, 0.7)
    rows, cols = np.mgrid[0:n_rows, 0:n_cols]
    centres = np.stack([rows.ravel() + 0.5, cols.ravel() + 0.5], axis=1)
    distance = np.linalg.norm(centres[:, None, :] - seeds[None, :, :], axis=2) / weights
    distance += rng.normal(0.0, 0.35, size=distance.shape)
    regions = np.argmin(distance, axis=1).reshape(n_rows, n_cols)
    types = region_types[regions]

    scattered = rng.random(types.shape) < 0.04
    types = np.where(scattered, BACKGROUND, types)
    types = _ensure_background_and_tissue(rng, types, region_types[regions])
    regions = np.where(types == BACKGROUND, -1, regions)

    anomalies = np.full(types.shape, NO_ANOMALY, dtype=np.int64)
    if n_anomaly_kinds:
        hit = (rng.random(types.shape) < anomaly_fraction) & (types != BACKGROUND)
        kinds = rng.integers(0, n_anomaly_kinds, size=types.shape)
        anomalies = np.where(hit, kinds, NO_ANOMALY)
    angles = rng.uniform(0.0, np.pi, size=n_seeds)
    return BlockLayout(types.astype(np.int64), anomalies.astype(np.int64), regions, angles, block_px)


def _ensure_background_and_tissue(rng, types, fallback_types):
    """Make sure a field has one annotated block and, from two blocks on, one empty block."""
    flat = types.ravel().copy()
    if np.all(flat == BACKGROUND):
        index = rng.integers(flat.size)
        flat[index] = max(int(fallback_types.ravel()[index]), 0)
    if flat.size >= 2 and np.all(flat != BACKGROUND):
        flat[rng.integers(flat.size)] = BACKGROUND
    return flat.reshape(types.shape)
