"""Figures of the per-image report, drawn once and shared by the HTML page and the PDF.

The cell-type overlay and the anomaly heat map are composed from pixels by
:mod:`vlm_micro.reporting.maps`, the composition chart by
:mod:`vlm_micro.reporting.charts`. The HTML report embeds the PNG encoding of each
figure and the one-page PDF places its pixels, so neither draws it again.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from vlm_micro.reporting import charts, maps

PANEL_DPI = maps.DPI  # pixels per inch of the figures; about 150 once placed on the PDF page
# zlib level of the PNG figures. On a 552 px map, level 1 took under a third of the time of
# level 6 (the default) for a file about 10 % larger.
PNG_COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class Panel:
    """One drawn figure.

    Attributes
    ----------
    rgb : (rows, columns, 3) uint8 ndarray
        The figure's pixels.
    png : bytes
        ``rgb`` encoded as PNG.
    dpi : float
        Pixels per inch the figure was drawn at, so ``rgb.shape[1] / dpi`` is its width in inches.
    """

    rgb: np.ndarray
    png: bytes
    dpi: float

    @property
    def size_in(self) -> tuple[float, float]:
        """Width and height in inches at the drawing resolution."""
        return self.rgb.shape[1] / self.dpi, self.rgb.shape[0] / self.dpi


@dataclass(frozen=True)
class ReportPanels:
    """The figures of one image report; the maps are None when the image size is unknown."""

    overlay: Panel | None
    heatmap: Panel | None
    composition: Panel


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an RGB uint8 array as PNG at :data:`PNG_COMPRESS_LEVEL`."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(
        buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL
    )
    return buffer.getvalue()


def render_panels(ctx) -> ReportPanels:
    """Draw the overlay, heat map and composition figures of a report context."""
    overlay = heatmap = None
    if ctx.raster is not None:
        grid = maps.map_grid(ctx.raster, ctx.view["shape"])
        overlay = _panel(maps.overlay_figure(grid, ctx.view, ctx.stats, ctx.colors, ctx.classes, ctx.unit))
        heatmap = _panel(maps.heatmap_figure(grid, ctx.view, ctx.settings.anomaly_threshold))
    composition = _panel(charts.composition_chart(ctx.stats, ctx.colors, ctx.classes, ctx.unit))
    return ReportPanels(overlay, heatmap, composition)


def _panel(rgb: np.ndarray) -> Panel:
    rgb = np.ascontiguousarray(rgb[..., :3])
    return Panel(rgb, encode_png(rgb), PANEL_DPI)
