"""Synthetic microscopy with pixel-level ground truth.

Fields of view at 0.5 um/px are laid out as a grid of 64 x 64 px blocks. Each block
holds one cell type or is empty background. Modalities are fluorescence (nuclear stain)
and brightfield (H&E or IHC). Anomalous blocks are out of focus, saturated, covered with
debris, or contain mitotic figures or apoptotic cells. The demo, the tests, the
benchmarks and the training of the bundled model use these images.
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
