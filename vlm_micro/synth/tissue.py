"""Tissue maps of a synthetic field: where the DNA, cytoplasm and matrix are.

The maps are modality-free densities in arbitrary units; :mod:`vlm_micro.synth.optics`
turns them into a fluorescence or brightfield image. Cells are placed on a jittered,
rotated grid per region, and only where the whole nucleus fits inside blocks of the
cell's type, so every nucleus lies within blocks annotated with its type.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

from vlm_micro.synth.cells import make_cell
from vlm_micro.synth.layout import BACKGROUND, BlockLayout
from vlm_micro.synth.morphology import CELL_ANOMALIES, Morphology
from vlm_micro.synth.nuclei import CellSpec, paint_halo, paint_nucleus

log = logging.getLogger(__name__)


@dataclass
class TissueMaps:
    """Density maps of one field, each (rows, columns) float32, plus instance labels."""

    dna: np.ndarray  # nuclear DNA (haematoxylin, nuclear stain)
    nucleolus: np.ndarray  # nucleoli, 0..1
    cytoplasm: np.ndarray  # eosin of the cytoplasm
    cytoplasm_hema: np.ndarray  # haematoxylin of the cytoplasm
    membrane: np.ndarray  # cell borders
    stroma: np.ndarray  # extracellular matrix
    marker: np.ndarray  # IHC marker (DAB)
    clear: np.ndarray  # cleared halo, 0..1, removes cytoplasm and matrix
    debris_dark: np.ndarray  # absorbing particles and fibres
    debris_bright: np.ndarray  # autofluorescent or refractile particles
    labels: np.ndarray  # uint16 nucleus instance labels, 0 = none

    @classmethod
    def zeros(cls, shape: tuple[int, int]) -> "TissueMaps":
        arrays = {f.name: np.zeros(shape, dtype=np.float32) for f in fields(cls) if f.name != "labels"}
        return cls(labels=np.zeros(shape, dtype=np.uint16), **arrays)


def noise_field(rng: np.random.Generator, shape: tuple[int, int], sigma) -> np.ndarray:
    """Return Gaussian-smoothed white noise with zero mean and unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-6)


def type_clearance(pixel_types: np.ndarray) -> np.ndarray:
    """Return, per pixel, the distance in pixels to the nearest pixel of another type.

    The field border does not count as another type, so cells may be cut by the border.
    """
    clearance = np.zeros(pixel_types.shape, dtype=np.float32)
    for type_index in np.unique(pixel_types):
        inside = pixel_types == type_index
        clearance[inside] = ndimage.distance_transform_edt(inside)[inside]
    return clearance


def grid_sites(rng: np.random.Generator, shape, morphology: Morphology, angle: float) -> np.ndarray:
    """Return (n, 2) jittered sites (row, column) of a rotated hexagonal grid covering the field."""
    across = morphology.spacing_px
    along = across * morphology.spacing_ratio
    half = 0.75 * float(np.hypot(*shape))
    v_steps = np.arange(-half, half, across * np.sqrt(3) / 2)
    u_steps = np.arange(-half, half, along)
    u, v = np.meshgrid(u_steps, v_steps)
    u = u + (np.arange(v_steps.size)[:, None] % 2) * along / 2 + rng.uniform(0, along)
    u, v = u.ravel(), v.ravel() + rng.uniform(0, across)
    u += rng.normal(0.0, morphology.jitter * along, u.size)
    v += rng.normal(0.0, morphology.jitter * across, v.size)
    rows = shape[0] / 2 + u * np.sin(angle) + v * np.cos(angle)
    cols = shape[1] / 2 + u * np.cos(angle) - v * np.sin(angle)
    keep = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    keep &= rng.random(rows.size) < morphology.occupancy
    return np.stack([rows[keep], cols[keep]], axis=1)


def place_cells(rng, layout: BlockLayout, morphologies, modality: str) -> list[CellSpec]:
    """Place the cells of every region; a cell is kept only if its nucleus fits in its type's blocks."""
    pixel_types = layout.to_pixels(layout.types)
    pixel_regions = layout.to_pixels(layout.regions)
    clearance = type_clearance(pixel_types)
    cells: list[CellSpec] = []
    for region in np.unique(layout.regions[layout.types != BACKGROUND]):
        type_index = int(layout.types[layout.regions == region][0])
        morphology = morphologies[type_index]
        angle = float(layout.region_angles[region])
        sites = grid_sites(rng, pixel_types.shape, morphology, angle)
        rows, cols = sites[:, 0].astype(int), sites[:, 1].astype(int)
        sites = sites[pixel_regions[rows, cols] == region]
        for row, col in sites:
            spec = make_cell(rng, len(cells) + 1, (row, col), type_index, morphology, angle, modality)
            if clearance[int(row), int(col)] >= spec.extent() - spec.edge_px:
                cells.append(spec)
    for index, spec in enumerate(cells, start=1):
        spec.cell_id = index
    return cells


def _cell_lookup(cells: list[CellSpec], morphologies, attribute: str) -> np.ndarray:
    """Return one value per cell of a morphology attribute; abnormal cells get 0."""
    values = [
        0.0 if cell.anomaly_kind in CELL_ANOMALIES else getattr(morphologies[cell.type_index], attribute)
        for cell in cells
    ]
    return np.array(values, dtype=np.float32)


def paint_cytoplasm(rng, maps: TissueMaps, cells: list[CellSpec], pixel_types, morphologies, fine) -> np.ndarray:
    """Paint cytoplasm, cell borders and the IHC marker of every cell; return the cell-body mask.

    A pixel belongs to the cell with the nearest centre, a Voronoi partition computed with
    a Euclidean distance transform. It is cytoplasm when it also lies within that cell's
    radius and in a block of the cell's type. Dense sheets thus get polygonal cells, and
    sparse cells stay round.
    """
    shape = pixel_types.shape
    body = np.zeros(shape, dtype=np.float32)
    if not cells:
        return body
    seeds = np.zeros(shape, dtype=np.int32)
    rows = np.clip(np.round([cell.cy for cell in cells]).astype(int), 0, shape[0] - 1)
    cols = np.clip(np.round([cell.cx for cell in cells]).astype(int), 0, shape[1] - 1)
    seeds[rows, cols] = np.arange(1, len(cells) + 1)
    distance, (near_rows, near_cols) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    owner = seeds[near_rows, near_cols] - 1

    radius = np.array([cell.cell_radius for cell in cells], dtype=np.float32)[owner]
    owner_type = np.array([cell.type_index for cell in cells])[owner]
    body = np.clip(radius - distance + 0.5, 0.0, 1.0).astype(np.float32) * (owner_type == pixel_types)

    vacuoles = np.clip((noise_field(rng, shape, 1.3) - 0.2) * 1.2, 0.0, 1.0)
    foam = _cell_lookup(cells, morphologies, "foam")[owner]
    granular = 1.0 + 0.2 * fine
    level = np.array([cell.cytoplasm for cell in cells], dtype=np.float32)[owner]
    maps.cytoplasm[:] = body * level * granular * (1.0 - foam * vacuoles)
    maps.cytoplasm_hema[:] = body * np.array([cell.cytoplasm_hema for cell in cells], dtype=np.float32)[owner]

    border = np.zeros(shape, dtype=bool)
    border[:-1, :] |= owner[:-1, :] != owner[1:, :]
    border[:, :-1] |= owner[:, :-1] != owner[:, 1:]
    membrane = ndimage.gaussian_filter(border.astype(np.float32), 0.6) * 2.0
    maps.membrane[:] = np.clip(membrane, 0, 1) * body * _cell_lookup(cells, morphologies, "membrane")[owner]

    marker = np.array([cell.marker for cell in cells], dtype=np.float32)[owner]
    maps.marker[:] = marker * (0.55 * body * granular + 0.9 * np.clip(membrane, 0, 1) * body)
    return body


def fibre_canvases(rng, shape) -> tuple[np.ndarray, np.ndarray]:
    """Return two noise canvases smoothed far more along columns than along rows.

    The first gives fine fibres and the second coarse bundles. Both are square and large
    enough to cover the field at any rotation.
    """
    side = int(np.ceil(np.hypot(*shape))) + 16
    return noise_field(rng, (side, side), (1.1, 12.0)), noise_field(rng, (side, side), (3.5, 22.0))


def fibre_pattern(rng, shape, angle: float, canvases) -> np.ndarray:
    """Return wavy collagen bundles along ``angle`` (radians) with clefts between them, 0..1.

    The anisotropic noise of ``canvases`` is sampled on rotated, sinusoidally displaced
    coordinates, which gives parallel wavy fibres.
    """
    fibres, bundles = canvases
    side = fibres.shape[0]
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    rows -= shape[0] / 2
    cols -= shape[1] / 2
    along = cols * np.cos(angle) + rows * np.sin(angle)
    across = rows * np.cos(angle) - cols * np.sin(angle)
    wavelength = rng.uniform(35.0, 70.0)
    across += rng.uniform(0.8, 2.2) * np.sin(2 * np.pi * along / wavelength + rng.uniform(0, 2 * np.pi))
    across += 3.0 * noise_field(rng, shape, 12.0)
    offset = rng.uniform(0, side, 2)
    coordinates = np.stack([across + offset[0], along + offset[1]])
    fibres = ndimage.map_coordinates(fibres, coordinates, order=1, mode="grid-wrap")
    bundles = ndimage.map_coordinates(bundles, coordinates, order=1, mode="grid-wrap")
    clefts = np.clip((bundles + 0.9) * 1.5, 0.0, 1.0)
    return (0.62 + 0.38 * np.clip(fibres, -1.0, 1.0)) * clefts


def paint_stroma(rng, maps: TissueMaps, layout: BlockLayout, morphologies, body: np.ndarray) -> None:
    """Paint the extracellular matrix: fibrous in fibroblast regions, mottled elsewhere."""
    pixel_types = layout.to_pixels(layout.types)
    pixel_regions = layout.to_pixels(layout.regions)
    levels = np.array([m.stroma for m in morphologies] + [0.0], dtype=np.float32)
    level = levels[pixel_types]  # index BACKGROUND (-1) selects the trailing 0
    texture = np.clip(0.8 + 0.25 * noise_field(rng, pixel_types.shape, 5.0), 0.3, None)
    canvases = None
    for region in np.unique(layout.regions[layout.types != BACKGROUND]):
        type_index = int(layout.types[layout.regions == region][0])
        if morphologies[type_index].shape != "spindle":
            continue
        if canvases is None:
            canvases = fibre_canvases(rng, pixel_types.shape)
        inside = pixel_regions == region
        texture[inside] = fibre_pattern(rng, pixel_types.shape, float(layout.region_angles[region]), canvases)[inside]
    maps.stroma[:] = level * texture * (1.0 - 0.85 * body)
