"""vlm-micro: label microscopy tiles and cells with a contrastive vision-language model."""

__version__ = "0.1.0"
