"""Random cell parameters: one :class:`CellSpec` per cell, normal or abnormal."""

from __future__ import annotations

import numpy as np

from vlm_micro.synth.morphology import Morphology
from vlm_micro.synth.nuclei import CellSpec

# Fraction of fluorescence nuclei that lie partly out of the focal plane: dimmer, softer.
OUT_OF_PLANE_FRACTION = 0.1


def _outline(rng: np.random.Generator, morphology: Morphology, scale: float):
    """Return the semi-axes and radial harmonics (order, amplitude, phase) of a nucleus."""
    major, minor = morphology.nucleus_radii_px
    major *= scale * rng.uniform(0.95, 1.05)
    minor *= scale * rng.uniform(0.95, 1.05)
    if morphology.shape == "pleomorphic":
        minor = major * rng.uniform(0.6, 0.95)
        orders = np.arange(2, 6)
        amplitudes = morphology.irregularity * rng.uniform(0.3, 1.2, size=orders.size) / np.sqrt(orders - 1)
    else:
        orders = np.arange(2, 5)
        amplitudes = morphology.irregularity * rng.normal(0.0, 1.0, size=orders.size)
    phases = rng.uniform(0.0, 2 * np.pi, size=orders.size)
    return (float(major), float(minor)), np.stack([orders, amplitudes, phases], axis=1)


def _lobes(rng: np.random.Generator, arc_radius: float, lobe_radius: float) -> np.ndarray:
    """Return (u, v, radius) of the 3-5 lobes of a segmented nucleus along a C- or S-shaped arc."""
    n_lobes = int(rng.integers(3, 6))
    span = np.deg2rad(rng.uniform(190.0, 280.0))
    angles = np.linspace(-span / 2, span / 2, n_lobes) + rng.normal(0.0, 0.15, n_lobes)
    radius = arc_radius * rng.uniform(0.85, 1.05, n_lobes)
    centres = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    centres -= centres.mean(axis=0)
    radii = lobe_radius * rng.uniform(0.8, 1.1, n_lobes)
    return np.column_stack([centres, radii])


def _nucleoli(rng: np.random.Generator, morphology: Morphology, minor: float) -> np.ndarray:
    low, high = morphology.nucleoli
    count = int(rng.integers(low, high + 1)) if high > 0 else 0
    if count == 0:
        return np.zeros((0, 3))
    angle = rng.uniform(0.0, 2 * np.pi, count)
    distance = minor * 0.45 * np.sqrt(rng.uniform(0.0, 1.0, count))
    radius = morphology.nucleolus_radius_px * rng.uniform(0.8, 1.3, count)
    return np.column_stack([distance * np.cos(angle), distance * np.sin(angle), radius])


def make_cell(
    rng: np.random.Generator,
    cell_id: int,
    centre: tuple[float, float],
    type_index: int,
    morphology: Morphology,
    region_angle: float,
    modality: str,
) -> CellSpec:
    """Draw the parameters of one normal cell of a given type centred at ``centre`` (row, column)."""
    scale = float(np.clip(rng.lognormal(0.0, morphology.size_cv), 0.6, 1.8))
    radii, harmonics = _outline(rng, morphology, scale)
    if morphology.shape == "spindle":
        angle = region_angle + rng.normal(0.0, 0.15)
    else:
        angle = rng.uniform(0.0, 2 * np.pi)
    dna = morphology.dna * float(rng.lognormal(0.0, morphology.dna_cv))
    edge = 1.0
    if modality == "fluorescence" and rng.random() < OUT_OF_PLANE_FRACTION:
        dna *= rng.uniform(0.35, 0.6)
        edge = rng.uniform(2.0, 3.0)

    spec = CellSpec(
        cell_id=cell_id,
        cy=float(centre[0]),
        cx=float(centre[1]),
        type_index=type_index,
        shape=morphology.shape,
        angle=float(angle),
        radii=radii,
        dna=float(dna),
        edge_px=float(edge),
        texture=(morphology.texture_fine, morphology.texture_coarse),
        # Nuclear stains show vesicular chromatin less than haematoxylin does.
        rim=morphology.rim * (0.4 if modality == "fluorescence" else 1.0),
        harmonics=harmonics,
        nucleoli=_nucleoli(rng, morphology, radii[1]),
        cell_radius=morphology.cell_radius_px * float(np.sqrt(scale)),
        cytoplasm=morphology.cytoplasm * float(rng.uniform(0.85, 1.15)),
        cytoplasm_hema=morphology.cytoplasm_hema,
        marker=morphology.marker * float(rng.uniform(0.8, 1.2)),
    )
    if morphology.shape == "lobed":
        spec.parts = _lobes(rng, radii[0], radii[1])
        spec.harmonics = np.zeros((0, 3))
    if morphology.shape == "spindle":
        spec.bend = float(rng.normal(0.0, 0.6))
    return spec


def make_mitotic(rng: np.random.Generator, spec: CellSpec) -> CellSpec:
    """Turn ``spec`` into a mitotic figure: one metaphase plate or two anaphase plates.

    The condensed chromosomes are drawn far denser than interphase chromatin, so they are
    very bright in fluorescence and nearly black in H&E, with ragged edges where
    chromosome arms stick out. The cell rounds up with pale cytoplasm.
    """
    half_length = rng.uniform(8.0, 11.0)
    half_width = rng.uniform(1.8, 2.6)
    if rng.random() < 0.6:
        offsets = [0.0]
    else:
        gap = rng.uniform(4.5, 6.5)
        offsets = [-gap, gap]
    bars = np.array(
        [[v, half_length * rng.uniform(0.85, 1.0), half_width, *rng.uniform(0, 2 * np.pi, 2)] for v in offsets]
    )
    n_arms = int(rng.integers(5, 10))
    arm_v = rng.choice(offsets, n_arms) + rng.choice([-1.0, 1.0], n_arms) * (half_width + rng.uniform(0.3, 1.4, n_arms))
    arms = np.column_stack([rng.uniform(-half_length, half_length, n_arms), arm_v, rng.uniform(0.9, 1.4, n_arms)])
    spec.shape = "mitotic_figure"
    spec.radii = (float(half_length), float(half_width))
    spec.bars, spec.parts = bars, arms
    spec.harmonics, spec.nucleoli = np.zeros((0, 3)), np.zeros((0, 3))
    spec.dna = float(2.7 * rng.uniform(0.9, 1.1))
    spec.edge_px, spec.texture, spec.rim = 0.8, (0.08, 0.05), 0.0
    spec.cell_radius = max(spec.cell_radius, 11.0)
    spec.cytoplasm, spec.cytoplasm_hema = 0.12, 0.0
    spec.halo_px = 2.0
    spec.anomaly_kind = "mitotic_figure"
    return spec


def make_apoptotic(rng: np.random.Generator, spec: CellSpec) -> CellSpec:
    """Turn ``spec`` into an apoptotic cell: a shrunken, deeply eosinophilic cell body with
    a cleared halo and 4-7 dense round nuclear fragments (apoptotic bodies)."""
    n_fragments = int(rng.integers(4, 8))
    angle = rng.uniform(0.0, 2 * np.pi, n_fragments)
    distance = rng.uniform(1.5, 6.0, n_fragments)
    radius = rng.uniform(1.5, 2.7, n_fragments)
    spec.shape = "apoptotic"
    spec.parts = np.column_stack([distance * np.cos(angle), distance * np.sin(angle), radius])
    spec.radii = (6.0, 6.0)
    spec.harmonics, spec.nucleoli, spec.bars = np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 5))
    spec.dna = float(2.8 * rng.uniform(0.9, 1.1))
    spec.edge_px, spec.texture, spec.rim = 0.7, (0.03, 0.03), 0.0
    spec.cell_radius = float(rng.uniform(7.5, 9.5))
    spec.cytoplasm, spec.cytoplasm_hema, spec.marker = 0.85, 0.0, spec.marker * 0.5
    spec.halo_px = 3.5
    spec.anomaly_kind = "apoptotic"
    return spec
