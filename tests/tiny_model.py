"""The tiny open_clip model that the pipeline and reliability tests label with.

Random weights in a one-layer model are enough to exercise every stage of a run, and
writing the model needs no model hub.
"""

from __future__ import annotations

import copy
from pathlib import Path

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"width": 32, "layers": 1, "patch_size": 8, "image_size": 32, "head_width": 16},
    "text_cfg": {"width": 32, "layers": 1, "context_length": 32, "heads": 2},
}


def write_tiny_model(folder: Path, name: str) -> Path:
    """Write the tiny model in local-dir format (0.5 um/px, 64 px tiles) into ``folder`` under ``name``."""
    import open_clip
    import torch

    from vlm_micro.model import save_model_dir

    torch.manual_seed(0)
    model = open_clip.model.CLIP(**copy.deepcopy(TINY_CFG)).eval()
    meta = {"name": name, "pixel_size_um": 0.5, "tile_size_px": 64}
    return save_model_dir(model, copy.deepcopy(TINY_CFG), folder, meta=meta)
