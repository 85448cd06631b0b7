"""Nucleus outlines and painting of one cell into the field maps.

A nucleus is drawn in a small window around its centre. The window's pixel offsets are
rotated into the nucleus frame (u along the major axis, v across it). A shape function
returns an approximate signed distance to the outline in pixels (positive inside), and a
soft edge turns it into a density between 0 and 1. Chromatin texture comes from
field-wide noise maps sliced at the window, so no per-pixel Python loop runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class CellSpec:
    """Everything needed to draw one cell; lengths in pixels, angles in radians."""

    cell_id: int
    cy: float
    cx: float
    type_index: int
    shape: str  # round, oval, pleomorphic, kidney, spindle, lobed, mitotic_figure, apoptotic
    angle: float
    radii: tuple[float, float]  # semi-axes (major, minor) of the outline
    dna: float  # peak DNA density
    edge_px: float  # width of the soft edge
    texture: tuple[float, float]  # fine and coarse chromatin texture strength
    rim: float
    harmonics: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # order, amplitude, phase
    parts: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # u, v, radius of lobes or fragments
    bars: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))  # v, half length, half width, ripple phases
    nucleoli: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # u, v, radius
    bend: float = 0.0  # curvature of a spindle, as a fraction of its minor semi-axis
    cell_radius: float = 0.0
    cytoplasm: float = 0.0
    cytoplasm_hema: float = 0.0
    marker: float = 0.0
    halo_px: float = 0.0  # width of a cleared ring around a shrunken or dividing cell
    anomaly_kind: str = ""

    def extent(self) -> float:
        """Return the radius in pixels of a disc that contains the whole nucleus."""
        reach = self.radii[0] * (1.0 + np.abs(self.harmonics[:, 1]).sum()) + 2.0 * self.edge_px
        if len(self.parts):
            reach = max(reach, float(np.max(np.hypot(self.parts[:, 0], self.parts[:, 1]) + self.parts[:, 2])) + 2.0)
        if len(self.bars):
            reach = max(reach, float(np.max(np.abs(self.bars[:, 0]) + self.bars[:, 1] + self.bars[:, 2])) + 2.0)
        return float(reach)


def _ellipse_distance(u, v, spec: CellSpec) -> np.ndarray:
    major, minor = spec.radii
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    radius = major * minor / np.sqrt((minor * np.cos(theta)) ** 2 + (major * np.sin(theta)) ** 2)
    modulation = np.ones_like(theta)
    for order, amplitude, phase in spec.harmonics:
        modulation += amplitude * np.cos(order * theta + phase)
    if spec.shape == "kidney":
        # The hilum: an indentation on one long side gives the bean outline.
        notch = np.angle(np.exp(1j * (theta - np.pi / 2)))
        modulation *= 1.0 - 0.38 * np.exp(-(notch**2) / (2 * 0.45**2))
    return radius * modulation - rho


def _spindle_distance(u, v, spec: CellSpec) -> np.ndarray:
    major, minor = spec.radii
    along = np.clip(u / major, -1.0, 1.0)
    half_width = minor * np.clip(1.0 - np.abs(along) ** 2.5, 0.0, 1.0) ** 0.6
    centre_line = spec.bend * minor * (along**2 - 0.5)
    return np.minimum(half_width - np.abs(v - centre_line), major - np.abs(u))


def _parts_distance(u, v, parts: np.ndarray) -> np.ndarray:
    distance = np.full(u.shape, -np.inf, dtype=np.float32)
    for pu, pv, radius in parts:
        np.maximum(distance, radius - np.hypot(u - pu, v - pv), out=distance)
    return distance


def _segment_distance(u, v, start, end) -> np.ndarray:
    direction = np.subtract(end, start)
    length2 = float(direction @ direction) or 1.0
    t = np.clip(((u - start[0]) * direction[0] + (v - start[1]) * direction[1]) / length2, 0.0, 1.0)
    return np.hypot(u - start[0] - t * direction[0], v - start[1] - t * direction[1])


def _lobed_distance(u, v, spec: CellSpec) -> np.ndarray:
    distance = _parts_distance(u, v, spec.parts)
    # Thin chromatin strands join consecutive lobes of a segmented nucleus.
    for first, second in zip(spec.parts[:-1], spec.parts[1:]):
        strand = 0.9 - _segment_distance(u, v, first[:2], second[:2])
        np.maximum(distance, strand, out=distance)
    return distance


def _mitotic_distance(u, v, spec: CellSpec) -> np.ndarray:
    distance = _parts_distance(u, v, spec.parts) if len(spec.parts) else np.full(u.shape, -np.inf)
    for centre_v, half_length, half_width, phase_a, phase_b in spec.bars:
        # Ragged edges: chromosome arms stick out of the metaphase plate.
        ripple = 1.0 + 0.2 * np.sin(1.1 * u + phase_a) + 0.12 * np.sin(2.6 * u + phase_b)
        bar = np.minimum(half_width * ripple - np.abs(v - centre_v), half_length - np.abs(u))
        np.maximum(distance, bar, out=distance)
    return distance


def signed_distance(u, v, spec: CellSpec) -> np.ndarray:
    """Return the approximate signed distance in pixels to the outline of ``spec``."""
    if spec.shape == "spindle":
        return _spindle_distance(u, v, spec)
    if spec.shape == "lobed":
        return _lobed_distance(u, v, spec)
    if spec.shape == "apoptotic":
        return _parts_distance(u, v, spec.parts)
    if spec.shape == "mitotic_figure":
        return _mitotic_distance(u, v, spec)
    return _ellipse_distance(u, v, spec)


def window_offsets(cy: float, cx: float, half: float, shape: tuple[int, int]):
    """Return the clipped window around (cy, cx) and the row and column offsets in it.

    Returns None when the window lies outside the field.
    """
    y0, y1 = max(int(np.floor(cy - half)), 0), min(int(np.ceil(cy + half)) + 1, shape[0])
    x0, x1 = max(int(np.floor(cx - half)), 0), min(int(np.ceil(cx + half)) + 1, shape[1])
    if y0 >= y1 or x0 >= x1:
        return None
    dy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
    dx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]
    return (slice(y0, y1), slice(x0, x1)), dy, dx


def paint_nucleus(maps, spec: CellSpec, fine: np.ndarray, coarse: np.ndarray) -> None:
    """Paint the nucleus of ``spec`` into ``maps.dna``, ``maps.nucleolus`` and ``maps.labels``.

    Overlapping nuclei keep the higher density; the label of the later cell wins.
    """
    found = window_offsets(spec.cy, spec.cx, spec.extent(), maps.labels.shape)
    if found is None:
        return
    window, dy, dx = found
    cos, sin = np.float32(np.cos(spec.angle)), np.float32(np.sin(spec.angle))
    u = dx * cos + dy * sin
    v = dy * cos - dx * sin
    distance = signed_distance(u, v, spec).astype(np.float32)
    mask = np.clip(distance / spec.edge_px + 0.5, 0.0, 1.0)

    texture = 1.0 + spec.texture[0] * fine[window] + spec.texture[1] * coarse[window]
    # Vesicular nuclei: chromatin gathers along the envelope and the centre stays pale.
    profile = (1.0 - spec.rim) + spec.rim * np.exp(-np.maximum(distance, 0.0) / 1.8)
    density = mask * spec.dna * np.clip(texture, 0.2, None) * profile
    np.maximum(maps.dna[window], density, out=maps.dna[window])
    labels = maps.labels[window]
    labels[mask > 0.5] = spec.cell_id

    for nu, nv, radius in spec.nucleoli:
        spot = np.clip((radius - np.hypot(u - nu, v - nv)) / 0.7 + 0.5, 0.0, 1.0) * (mask > 0.5)
        np.maximum(maps.nucleolus[window], spot, out=maps.nucleolus[window])


def paint_halo(maps, spec: CellSpec) -> None:
    """Paint the cleared ring around a shrunken or dividing cell into ``maps.clear``."""
    if spec.halo_px <= 0:
        return
    outer = spec.cell_radius + spec.halo_px
    found = window_offsets(spec.cy, spec.cx, outer + 1.0, maps.labels.shape)
    if found is None:
        return
    window, dy, dx = found
    rho = np.hypot(dy, dx)
    ring = np.clip((outer - rho) / 1.5, 0.0, 1.0) * np.clip((rho - spec.cell_radius) / 1.0 + 0.5, 0.0, 1.0)
    np.maximum(maps.clear[window], ring, out=maps.clear[window])
