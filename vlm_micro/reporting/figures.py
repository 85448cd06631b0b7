"""Figure helpers of the reports: data URIs and gallery tiles.

The figures themselves are composed from pixels: those of a per-image report by
:mod:`vlm_micro.reporting.maps` and :mod:`vlm_micro.reporting.charts`, those of the
run index by :mod:`vlm_micro.reporting.run_figures`.
"""

from __future__ import annotations

import base64
import io

import numpy as np


def data_uri(png: bytes) -> str:
    """Return a ``data:image/png;base64,...`` URI for embedding PNG bytes in HTML."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def display_tile(rgb: np.ndarray, side_px: int = 128) -> np.ndarray:
    """Scale an RGB uint8 tile so its longer side is ``side_px``: nearest neighbour up, Lanczos down."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
    scale = side_px / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    return np.asarray(image.resize(size, resample))


def rgb_png(rgb: np.ndarray, side_px: int = 128) -> bytes:
    """Encode an RGB uint8 tile as PNG, scaled so its longer side is ``side_px``."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(display_tile(rgb, side_px), mode="RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
