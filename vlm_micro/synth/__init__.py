"""Synthetic microscopy with pixel-level ground truth.

Fields of view at 0.5 um/px are laid out as a grid of 64 x 64 px blocks. Each block
holds one cell type or is empty background. Modalities are fluorescence (nuclear stain)
and brightfield (H&E or IHC). Anomalous blocks are out of focus, saturated, covered with
debris, or contain mitotic figures or apoptotic cells. The demo, the tests, the
benchmarks and the training of the bundled model use these images.
"""

from vlm_micro.lazy import lazy_exports

# Imported on first use: the renderer loads scipy and scikit-image, which would add
# about 0.4 s to every vlm-micro command, because the command line imports
# vlm_micro.synth.cli.
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "ANNOTATION_COLUMNS": "vlm_micro.synth.dataset",
    "generate_dataset": "vlm_micro.synth.dataset",
    "image_id_for": "vlm_micro.synth.dataset",
    "write_ome_tiff": "vlm_micro.synth.dataset",
    "ANOMALY_KINDS": "vlm_micro.synth.morphology",
    "BLOCK_PX": "vlm_micro.synth.morphology",
    "MORPHOLOGIES": "vlm_micro.synth.morphology",
    "PIXEL_SIZE_UM": "vlm_micro.synth.morphology",
    "FieldTruth": "vlm_micro.synth.render",
    "render_field": "vlm_micro.synth.render",
})
