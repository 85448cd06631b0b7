"""Anomalies of synthetic blocks: abnormal cells, debris and optical artefacts.

Each anomaly covers one block and is strong enough to see in a 64 x 64 px tile:

- ``mitotic_figure``: one or two cells become condensed chromosome plates.
- ``apoptotic``: one to three cells shrink into dense fragments with a cleared halo.
- ``debris``: dark and bright particles and fibres cover 15-30 % of the block.
- ``out_of_focus``: the block is blurred with a Gaussian of sigma 2-3 px (1-1.5 um).
- ``saturation``: the block is over-exposed, so most of it is clipped at the maximum value.

An anomalous block keeps its cell type.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage
from skimage import draw

from vlm_micro.synth.cells import make_apoptotic, make_cell, make_mitotic
from vlm_micro.synth.layout import BlockLayout
from vlm_micro.synth.nuclei import CellSpec

log = logging.getLogger(__name__)

# Abnormal cells are centred at least this far from the block border, so the whole
# figure is inside the block's tile.
_INTERIOR_MARGIN_PX = 13.0


def block_slices(row: int, col: int, block_px: int) -> tuple[slice, slice]:
    """Return the pixel slices of block (row, col)."""
    return slice(row * block_px, (row + 1) * block_px), slice(col * block_px, (col + 1) * block_px)


def _cells_in_block(cells: list[CellSpec], row: int, col: int, block_px: int) -> list[CellSpec]:
    return [cell for cell in cells if int(cell.cy) // block_px == row and int(cell.cx) // block_px == col]


def _is_interior(cell: CellSpec, row: int, col: int, block_px: int) -> bool:
    dy, dx = cell.cy - row * block_px, cell.cx - col * block_px
    low, high = _INTERIOR_MARGIN_PX, block_px - _INTERIOR_MARGIN_PX
    return low <= dy <= high and low <= dx <= high


def assign_cell_anomalies(rng, cells, layout: BlockLayout, anomaly_kinds, morphologies, modality) -> list[CellSpec]:
    """Turn cells of anomalous blocks into abnormal cells or mark them with the block's artefact.

    In ``mitotic_figure`` and ``apoptotic`` blocks only the converted cells carry the
    anomaly kind; in artefact blocks every cell of the block does. Returns the new cell
    list with ids renumbered from 1.
    """
    block_px = layout.block_px
    for row, col, type_index, kind_index in layout.annotated_blocks():
        if kind_index < 0:
            continue
        kind = anomaly_kinds[kind_index]
        members = _cells_in_block(cells, row, col, block_px)
        if kind not in ("mitotic_figure", "apoptotic"):
            for cell in members:
                cell.anomaly_kind = kind
            continue

        # At most about a third of the block's cells turn abnormal, so the tile still shows its cell type.
        high = 2 if kind == "mitotic_figure" else 3
        count = int(rng.integers(1, high + 1))
        count = max(1, min(count, len(members) // 3))
        chosen = _choose_cells(rng, cells, members, count, (row, col, type_index), morphologies, modality, layout)
        convert = make_mitotic if kind == "mitotic_figure" else make_apoptotic
        for cell in chosen:
            convert(rng, cell)
        cells = _drop_overlapping(cells, chosen)
    for index, cell in enumerate(cells, start=1):
        cell.cell_id = index
    return cells


def _choose_cells(rng, cells, members, count, block, morphologies, modality, layout) -> list[CellSpec]:
    """Pick ``count`` interior cells of a block, adding new cells where too few exist."""
    row, col, type_index = block
    block_px = layout.block_px
    eligible = [cell for cell in members if _is_interior(cell, row, col, block_px)]
    order = rng.permutation(len(eligible))
    chosen = [eligible[i] for i in order[:count]]
    while len(chosen) < count:
        centre = (
            row * block_px + rng.uniform(_INTERIOR_MARGIN_PX, block_px - _INTERIOR_MARGIN_PX),
            col * block_px + rng.uniform(_INTERIOR_MARGIN_PX, block_px - _INTERIOR_MARGIN_PX),
        )
        region = layout.regions[row, col]
        cell = make_cell(
            rng, 0, centre, type_index, morphologies[type_index], float(layout.region_angles[region]), modality
        )
        cells.append(cell)
        chosen.append(cell)
    return chosen


def _drop_overlapping(cells: list[CellSpec], chosen: list[CellSpec]) -> list[CellSpec]:
    """Remove normal cells whose nucleus would overlap an abnormal cell, so the figure stays visible."""
    centres = np.array([(other.cy, other.cx) for other in chosen])
    reach = np.array([other.extent() for other in chosen])
    remaining = []
    for cell in cells:
        if cell.anomaly_kind in ("mitotic_figure", "apoptotic"):
            remaining.append(cell)
            continue
        distance = np.hypot(centres[:, 0] - cell.cy, centres[:, 1] - cell.cx)
        if np.all(distance >= reach + 0.3 * cell.radii[1]):
            remaining.append(cell)
    return remaining


def _particle(rng, canvas: np.ndarray) -> None:
    """Draw one irregular star-shaped particle of 2-6 px radius into ``canvas``."""
    size = canvas.shape[0]
    n_vertices = int(rng.integers(7, 13))
    angles = np.sort(rng.uniform(0.0, 2 * np.pi, n_vertices))
    radius = rng.uniform(2.0, 6.0) * rng.uniform(0.55, 1.25, n_vertices)
    centre = rng.uniform(0, size, 2)
    rows, cols = draw.polygon(centre[0] + radius * np.sin(angles), centre[1] + radius * np.cos(angles), canvas.shape)
    canvas[rows, cols] = np.maximum(canvas[rows, cols], rng.uniform(0.6, 1.3))


def _fibre(rng, canvas: np.ndarray) -> None:
    """Draw one curved fibre of 1-3 px width across ``canvas``."""
    size = canvas.shape[0]
    points = rng.uniform(-0.2 * size, 1.2 * size, (3, 2)).round().astype(int)
    rows, cols = draw.bezier_curve(*points[0], *points[1], *points[2], weight=rng.uniform(0.5, 2.0), shape=canvas.shape)
    stroke = np.zeros_like(canvas)
    stroke[rows, cols] = rng.uniform(0.5, 1.0)
    width = int(rng.integers(1, 4))
    np.maximum(canvas, ndimage.grey_dilation(stroke, size=(width, width)), out=canvas)


def paint_debris(rng, maps, row: int, col: int, block_px: int, bright_fraction: float) -> None:
    """Cover 15-30 % of a block with particles and fibres, into ``maps.debris_dark`` and ``debris_bright``.

    ``bright_fraction`` is the share of autofluorescent (bright) pieces; the rest absorb light.
    """
    canvases = {
        "dark": np.zeros((block_px, block_px), np.float32),
        "bright": np.zeros((block_px, block_px), np.float32),
    }
    target = rng.uniform(0.15, 0.3)
    for _ in range(60):
        canvas = canvases["bright" if rng.random() < bright_fraction else "dark"]
        if rng.random() < 0.3:
            _fibre(rng, canvas)
        else:
            _particle(rng, canvas)
        covered = np.mean((canvases["dark"] > 0.3) | (canvases["bright"] > 0.3))
        if covered >= target:
            break
    window = block_slices(row, col, block_px)
    for name, canvas in canvases.items():
        target_map = maps.debris_dark if name == "dark" else maps.debris_bright
        np.maximum(target_map[window], ndimage.gaussian_filter(canvas, 0.6), out=target_map[window])


def blocks_with(layout: BlockLayout, anomaly_kinds, kind: str) -> list[tuple[int, int]]:
    """Return (row, column) of the blocks that carry anomaly ``kind``."""
    if kind not in anomaly_kinds:
        return []
    index = list(anomaly_kinds).index(kind)
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(layout.anomalies == index))]
