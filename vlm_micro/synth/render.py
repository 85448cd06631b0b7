"""Render one synthetic field of view with its ground truth."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vlm_micro.errors import ConfigError
from vlm_micro.synth.anomalies import assign_cell_anomalies, blocks_with, paint_debris
from vlm_micro.synth.layout import BlockLayout, plan_layout
from vlm_micro.synth.morphology import ANOMALY_KINDS, BLOCK_PX, MORPHOLOGIES, PIXEL_SIZE_UM, check_names
from vlm_micro.synth.nuclei import paint_halo, paint_nucleus
from vlm_micro.synth.optics import chromatin_noise, render_brightfield, render_fluorescence
from vlm_micro.synth.tissue import TissueMaps, paint_cytoplasm, paint_stroma, place_cells

log = logging.getLogger(__name__)

MODALITIES = ("fluorescence", "brightfield")
STAINS = ("he", "ihc")
FLUORESCENCE_STAIN = "dapi"  # value of the ``stain`` column for fluorescence images


@dataclass
class FieldTruth:
    """Ground truth of one rendered field of view.

    Attributes
    ----------
    labels : (M, N) ndarray of uint16
        Nucleus instance labels, 0 = no nucleus; a label value is the ``cell_id``
        of its row in ``cells``.
    cells : DataFrame
        One row per nucleus: cell_id, centroid_y, centroid_x (pixels), cell_type,
        anomaly_kind ('' for a normal cell).
    blocks : DataFrame
        One row per annotated block: y, x, height, width (pixels), cell_type, anomaly
        (0/1), anomaly_kind ('' when anomaly is 0). Background blocks are not listed.
    modality : str
        ``fluorescence`` or ``brightfield``.
    stain : str
        ``dapi`` for fluorescence, ``he`` or ``ihc`` for brightfield.
    pixel_size_um : float
    """

    labels: np.ndarray
    cells: pd.DataFrame
    blocks: pd.DataFrame
    modality: str
    stain: str
    pixel_size_um: float = PIXEL_SIZE_UM


def _validate(modality: str, stain: str, size_px: int, anomaly_fraction: float) -> None:
    if modality not in MODALITIES:
        raise ConfigError(f"modality {modality!r} is invalid; use fluorescence or brightfield")
    if stain not in STAINS:
        raise ConfigError(f"stain {stain!r} is invalid; use he or ihc")
    if not isinstance(size_px, (int, np.integer)) or size_px < BLOCK_PX or size_px % BLOCK_PX:
        raise ConfigError(f"image size {size_px!r} px is invalid; use a positive multiple of {BLOCK_PX}")
    if not 0.0 <= anomaly_fraction <= 1.0:
        raise ConfigError(f"anomaly fraction {anomaly_fraction!r} is invalid; use a value from 0 to 1")


def render_field(
    rng: np.random.Generator,
    modality: str,
    stain: str = "he",
    size_px: int = 512,
    *,
    class_names=None,
    anomaly_kinds=None,
    anomaly_fraction: float = 0.2,
) -> tuple[np.ndarray, FieldTruth]:
    """Render one synthetic field of view of ``size_px`` x ``size_px`` pixels at 0.5 um/px.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness; the same generator state gives the same image.
    modality : {'fluorescence', 'brightfield'}
    stain : {'he', 'ihc'}
        Brightfield stain; ignored for fluorescence.
    size_px : int
        Side of the square field, a multiple of 64 (the block size).
    class_names, anomaly_kinds : sequence of str, optional
        Cell types and anomaly kinds to draw (default: all six types and five kinds).
        Indices into these lists are what the layout draws, so their order matters.
    anomaly_fraction : float
        Probability that an annotated block carries an anomaly.

    Returns
    -------
    image : ndarray
        (size_px, size_px) uint16 for fluorescence, (size_px, size_px, 3) uint8 for
        brightfield.
    truth : FieldTruth
    """
    _validate(modality, stain, size_px, anomaly_fraction)
    class_names, anomaly_kinds = check_names(
        class_names if class_names is not None else MORPHOLOGIES,
        anomaly_kinds if anomaly_kinds is not None else ANOMALY_KINDS,
    )
    morphologies = [MORPHOLOGIES[name] for name in class_names]
    n_blocks = size_px // BLOCK_PX
    layout = plan_layout(rng, n_blocks, n_blocks, len(class_names), len(anomaly_kinds), anomaly_fraction, BLOCK_PX)

    maps = build_maps(rng, layout, morphologies, anomaly_kinds, modality)
    artefacts = {kind: blocks_with(layout, anomaly_kinds, kind) for kind in ("out_of_focus", "saturation")}
    if modality == "fluorescence":
        image = render_fluorescence(rng, maps.maps, artefacts, BLOCK_PX)
        stain = FLUORESCENCE_STAIN
    else:
        image = render_brightfield(rng, maps.maps, stain, artefacts, BLOCK_PX)

    truth = FieldTruth(
        labels=maps.maps.labels,
        cells=cell_table(maps.maps.labels, maps.cells, class_names),
        blocks=block_table(layout, class_names, anomaly_kinds),
        modality=modality,
        stain=stain,
    )
    return image, truth


@dataclass
class _BuiltMaps:
    maps: TissueMaps
    cells: list


def build_maps(rng, layout: BlockLayout, morphologies, anomaly_kinds, modality: str) -> _BuiltMaps:
    """Place and paint every cell, the matrix and the debris of one field."""
    shape = (layout.types.shape[0] * layout.block_px, layout.types.shape[1] * layout.block_px)
    maps = TissueMaps.zeros(shape)
    fine, coarse = chromatin_noise(rng, shape)
    cells = place_cells(rng, layout, morphologies, modality)
    cells = assign_cell_anomalies(rng, cells, layout, anomaly_kinds, morphologies, modality)
    # Abnormal cells last, so their label wins where they touch a neighbour.
    for cell in sorted(cells, key=lambda c: c.anomaly_kind in ("mitotic_figure", "apoptotic")):
        paint_nucleus(maps, cell, fine, coarse)
        paint_halo(maps, cell)

    body = paint_cytoplasm(rng, maps, cells, layout.to_pixels(layout.types), morphologies, fine)
    paint_stroma(rng, maps, layout, morphologies, body)
    bright_fraction = 0.7 if modality == "fluorescence" else 0.15
    for row, col in blocks_with(layout, anomaly_kinds, "debris"):
        paint_debris(rng, maps, row, col, layout.block_px, bright_fraction)
    return _BuiltMaps(maps, cells)


def cell_table(labels: np.ndarray, cells, class_names) -> pd.DataFrame:
    """Return one row per labelled nucleus with its centroid measured on ``labels``."""
    counts = np.bincount(labels.ravel(), minlength=len(cells) + 1)
    rows, cols = np.indices(labels.shape)
    sum_rows = np.bincount(labels.ravel(), weights=rows.ravel(), minlength=len(cells) + 1)
    sum_cols = np.bincount(labels.ravel(), weights=cols.ravel(), minlength=len(cells) + 1)
    records = []
    for cell in cells:
        area = counts[cell.cell_id]
        if area == 0:
            continue
        records.append(
            {
                "cell_id": cell.cell_id,
                "centroid_y": round(float(sum_rows[cell.cell_id] / area), 2),
                "centroid_x": round(float(sum_cols[cell.cell_id] / area), 2),
                "cell_type": class_names[cell.type_index],
                "anomaly_kind": cell.anomaly_kind,
            }
        )
    return pd.DataFrame.from_records(
        records, columns=["cell_id", "centroid_y", "centroid_x", "cell_type", "anomaly_kind"]
    )


def block_table(layout: BlockLayout, class_names, anomaly_kinds) -> pd.DataFrame:
    """Return one row per annotated block: y, x, height, width, cell_type, anomaly, anomaly_kind."""
    size = layout.block_px
    records = [
        {
            "y": row * size,
            "x": col * size,
            "height": size,
            "width": size,
            "cell_type": class_names[type_index],
            "anomaly": int(kind_index >= 0),
            "anomaly_kind": anomaly_kinds[kind_index] if kind_index >= 0 else "",
        }
        for row, col, type_index, kind_index in layout.annotated_blocks()
    ]
    return pd.DataFrame.from_records(
        records, columns=["y", "x", "height", "width", "cell_type", "anomaly", "anomaly_kind"]
    )
