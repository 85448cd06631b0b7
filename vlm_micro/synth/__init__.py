"""Synthetic microscopy with pixel-level ground truth.

Fields of view at 0.5 um/px laid out as a grid of 64 x 64 px blocks, each holding one
cell type (or empty background), in fluorescence (nuclear stain) or brightfield (H&E or
IHC), with anomalous blocks (out of focus, saturation, debris, mitotic figures,
apoptotic cells). Used for the demo, the tests, the benchmarks and to train the bundled
model.
"""

from vlm_micro.synth.dataset import ANNOTATION_COLUMNS, generate_dataset, image_id_for, write_ome_tiff
from vlm_micro.synth.morphology import ANOMALY_KINDS, BLOCK_PX, MORPHOLOGIES, PIXEL_SIZE_UM
from vlm_micro.synth.render import FieldTruth, render_field

__all__ = [
    "ANNOTATION_COLUMNS",
    "ANOMALY_KINDS",
    "BLOCK_PX",
    "MORPHOLOGIES",
    "PIXEL_SIZE_UM",
    "FieldTruth",
    "generate_dataset",
    "image_id_for",
    "render_field",
    "write_ome_tiff",
]
