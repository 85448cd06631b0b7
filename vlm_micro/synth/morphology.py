"""Cell morphology of the synthetic generator, per cell type, in pixels at 0.5 um/px.

Each entry describes how one cell type is drawn: nucleus shape and size, DNA density
(haematoxylin in brightfield, nuclear stain intensity in fluorescence), chromatin
texture, cytoplasm, extracellular matrix and the IHC marker level. The values follow
textbook histology at 0.5 um/px (a 7 um lymphocyte nucleus is 14 px across) and were
tuned by eye so that every type is recognisable in a 64 x 64 px tile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vlm_micro.errors import ConfigError

log = logging.getLogger(__name__)

PIXEL_SIZE_UM = 0.5
BLOCK_PX = 64


@dataclass(frozen=True)
class Morphology:
    """Drawing parameters of one cell type; lengths in pixels at 0.5 um/px."""

    shape: str  # round, lobed, kidney, spindle, oval or pleomorphic
    spacing_px: float  # mean distance between cell centres
    spacing_ratio: float  # grid spacing along the region's axis over spacing across it
    jitter: float  # random displacement of grid sites, as a fraction of spacing_px
    occupancy: float  # fraction of grid sites that hold a cell
    nucleus_radii_px: tuple[float, float]  # semi-axes (major, minor) of the nucleus
    size_cv: float  # coefficient of variation of the nucleus size
    irregularity: float  # amplitude of the random radial harmonics of the outline
    dna: float  # mean DNA density (1 = a typical interphase nucleus)
    dna_cv: float
    texture_fine: float  # strength of fine chromatin granularity
    texture_coarse: float  # strength of coarse chromatin clumps
    rim: float  # 0 = solid chromatin, 1 = chromatin only along the nuclear envelope
    nucleoli: tuple[int, int]  # min and max number of nucleoli
    nucleolus_radius_px: float
    cell_radius_px: float  # reach of the cytoplasm from the cell centre
    cytoplasm: float  # eosin density of the cytoplasm
    cytoplasm_hema: float  # haematoxylin density of the cytoplasm (basophilia)
    foam: float  # strength of cytoplasmic vacuoles
    membrane: float  # eosin density added along cell borders
    stroma: float  # eosin density of the extracellular matrix
    marker: float  # DAB density of the cytokeratin-like marker in the IHC variant


# fmt: off
MORPHOLOGIES: dict[str, Morphology] = {
    # Small round dense nucleus of about 7 um with a thin rim of cytoplasm, densely packed.
    "lymphocyte": Morphology(
        shape="round", spacing_px=15.5, spacing_ratio=1.0, jitter=0.22, occupancy=0.96,
        nucleus_radii_px=(7.0, 6.5), size_cv=0.07, irregularity=0.03, dna=1.3, dna_cv=0.12,
        texture_fine=0.15, texture_coarse=0.15, rim=0.0, nucleoli=(0, 0), nucleolus_radius_px=0.0,
        cell_radius_px=8.5, cytoplasm=0.2, cytoplasm_hema=0.06, foam=0.0, membrane=0.0,
        stroma=0.12, marker=0.0,
    ),
    # Cell of 10-12 um with a nucleus of 3-5 lobes joined by thin strands, in pale matrix.
    "neutrophil": Morphology(
        shape="lobed", spacing_px=25.0, spacing_ratio=1.0, jitter=0.3, occupancy=0.8,
        nucleus_radii_px=(5.5, 3.3), size_cv=0.08, irregularity=0.0, dna=1.2, dna_cv=0.1,
        texture_fine=0.12, texture_coarse=0.12, rim=0.0, nucleoli=(0, 0), nucleolus_radius_px=0.0,
        cell_radius_px=11.0, cytoplasm=0.3, cytoplasm_hema=0.02, foam=0.0, membrane=0.0,
        stroma=0.08, marker=0.0,
    ),
    # Cell of 15-20 um with a pale kidney-shaped nucleus and large foamy cytoplasm.
    "macrophage": Morphology(
        shape="kidney", spacing_px=34.0, spacing_ratio=1.0, jitter=0.18, occupancy=0.95,
        nucleus_radii_px=(10.0, 7.0), size_cv=0.08, irregularity=0.05, dna=0.75, dna_cv=0.12,
        texture_fine=0.2, texture_coarse=0.15, rim=0.35, nucleoli=(0, 1), nucleolus_radius_px=1.2,
        cell_radius_px=18.0, cytoplasm=0.34, cytoplasm_hema=0.03, foam=0.65, membrane=0.08,
        stroma=0.05, marker=0.03,
    ),
    # Elongated spindle nucleus aligned with wavy collagen fibres.
    "fibroblast": Morphology(
        shape="spindle", spacing_px=19.0, spacing_ratio=2.2, jitter=0.2, occupancy=0.8,
        nucleus_radii_px=(14.0, 3.0), size_cv=0.15, irregularity=0.0, dna=1.05, dna_cv=0.12,
        texture_fine=0.2, texture_coarse=0.1, rim=0.0, nucleoli=(0, 0), nucleolus_radius_px=0.0,
        cell_radius_px=0.0, cytoplasm=0.0, cytoplasm_hema=0.0, foam=0.0, membrane=0.0,
        stroma=0.6, marker=0.0,
    ),
    # Regular cobblestone sheet of polygonal cells with round-oval nuclei and a nucleolus.
    "epithelial": Morphology(
        shape="oval", spacing_px=22.0, spacing_ratio=1.0, jitter=0.08, occupancy=1.0,
        nucleus_radii_px=(6.8, 5.6), size_cv=0.06, irregularity=0.03, dna=0.85, dna_cv=0.1,
        texture_fine=0.2, texture_coarse=0.1, rim=0.35, nucleoli=(1, 1), nucleolus_radius_px=1.3,
        cell_radius_px=15.0, cytoplasm=0.42, cytoplasm_hema=0.03, foam=0.0, membrane=0.4,
        stroma=0.05, marker=0.85,
    ),
    # Crowded large pleomorphic hyperchromatic nuclei of variable size and outline.
    "tumor": Morphology(
        shape="pleomorphic", spacing_px=21.0, spacing_ratio=1.0, jitter=0.4, occupancy=0.97,
        nucleus_radii_px=(10.5, 8.0), size_cv=0.25, irregularity=0.16, dna=1.35, dna_cv=0.22,
        texture_fine=0.25, texture_coarse=0.3, rim=0.15, nucleoli=(1, 3), nucleolus_radius_px=1.8,
        cell_radius_px=13.0, cytoplasm=0.28, cytoplasm_hema=0.15, foam=0.0, membrane=0.1,
        stroma=0.08, marker=0.6,
    ),
}
# fmt: on

ANOMALY_KINDS = ("out_of_focus", "saturation", "debris", "mitotic_figure", "apoptotic")
CELL_ANOMALIES = ("mitotic_figure", "apoptotic")  # drawn as abnormal cells in the block


def check_names(class_names, anomaly_kinds) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Validate that the generator can draw every requested cell type and anomaly kind.

    Raises
    ------
    ConfigError
        When a name has no drawing rule here or a list is empty.
    """
    class_names = tuple(class_names)
    anomaly_kinds = tuple(anomaly_kinds)
    if not class_names:
        raise ConfigError("the list of cell types is empty; give at least one of " + ", ".join(MORPHOLOGIES))
    for name in class_names:
        if name not in MORPHOLOGIES:
            raise ConfigError(
                f"cell type {name!r} has no synthetic morphology; use a vocabulary whose cell types "
                f"are among {', '.join(MORPHOLOGIES)}"
            )
    for name in anomaly_kinds:
        if name not in ANOMALY_KINDS:
            raise ConfigError(
                f"anomaly kind {name!r} cannot be rendered; use anomaly kinds among {', '.join(ANOMALY_KINDS)}"
            )
    return class_names, anomaly_kinds
