"""Figures of the per-image report, drawn once and shared by the HTML page and the PDF.

Each figure (cell-type overlay, anomaly heat map, composition chart) is drawn once on
an Agg canvas. The HTML report embeds its PNG encoding and the one-page PDF places its
pixels, so neither draws it again.

Figures are laid out in inches with room to spare and the white margins are cut from
the pixels afterwards. This replaces ``savefig(bbox_inches="tight")``, which costs a
second layout pass of the whole figure. When the estimate was too small and a figure
touches its edge, it is drawn again the slow, exact way.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vlm_micro.reporting import figures

log = logging.getLogger(__name__)

PANEL_DPI = 120  # pixels per inch of the PNG figures; about 150 once placed on the PDF page
PNG_COMPRESS_LEVEL = 1  # zlib level: a quarter of the time of the default level 6 for about 10 % larger files
PAD_IN = 0.06  # white margin left around the content of a figure

MAP_WIDTH_IN = 4.6  # width of the map figures (overlay, heat map)
MAP_SIDE_IN = 0.2  # space left and right of a map, where the end labels of the colour bar go
MAP_MAX_HEIGHT_IN = 6.5  # maps of tall images are narrowed to stay below this height
TITLE_BAND_IN = 0.4
LEGEND_FONT_PT = 7.5
TITLE_FONT_PT = 11
OVERLAY_TITLE = "Predicted cell type (hatched = uncertain)"
HEATMAP_TITLE = "Anomaly score (cyan outline = anomalous)"


@dataclass(frozen=True)
class Panel:
    """One drawn figure.

    Attributes
    ----------
    rgb : (rows, columns, 3) uint8 ndarray
        The figure's pixels, white margins cut.
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


def render_figure(fig: Figure, dpi: float = PANEL_DPI) -> Panel:
    """Draw ``fig`` once and return its pixels with the white margins cut, and their PNG.

    Falls back to ``savefig(bbox_inches="tight")`` when the content touches the edge of
    the figure, which means that the figure was laid out too small and something may
    have been cut off.
    """
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    content = np.any(rgb != 255, axis=2)
    rows = np.flatnonzero(content.any(axis=1))
    cols = np.flatnonzero(content.any(axis=0))
    if rows.size == 0:
        rgb = rgb[:1, :1].copy()
        return Panel(rgb, encode_png(rgb), dpi)
    if rows[0] == 0 or cols[0] == 0 or rows[-1] == rgb.shape[0] - 1 or cols[-1] == rgb.shape[1] - 1:
        log.debug("figure content reaches the edge, so it is drawn again with a tight bounding box")
        return _render_tight(fig, dpi)
    pad = max(1, round(PAD_IN * dpi))
    top, bottom = max(0, rows[0] - pad), min(rgb.shape[0], rows[-1] + 1 + pad)
    left, right = max(0, cols[0] - pad), min(rgb.shape[1], cols[-1] + 1 + pad)
    rgb = np.ascontiguousarray(rgb[top:bottom, left:right])
    return Panel(rgb, encode_png(rgb), dpi)


def _render_tight(fig: Figure, dpi: float) -> Panel:
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=PAD_IN, facecolor="white")
    buffer.seek(0)
    with Image.open(buffer) as image:
        rgb = np.asarray(image.convert("RGB"))
    return Panel(rgb, encode_png(rgb), dpi)


def render_panels(ctx) -> ReportPanels:
    """Draw the overlay, heat map and composition figures of a report context."""
    overlay = heatmap = None
    if ctx.raster is not None:
        overlay = render_figure(overlay_figure(ctx))
        heatmap = render_figure(heatmap_figure(ctx))
    return ReportPanels(overlay, heatmap, render_figure(composition_figure(ctx)))


def _map_box(shape: tuple[int, int], bottom_band_in: float) -> tuple[float, float, float, float]:
    """Return (figure height, map left, map width, map height) in inches for a map figure."""
    aspect = shape[0] / max(1, shape[1])
    width = MAP_WIDTH_IN - 2 * MAP_SIDE_IN
    height = width * aspect
    if height > MAP_MAX_HEIGHT_IN:
        height = MAP_MAX_HEIGHT_IN
        width = height / aspect
    fig_height = TITLE_BAND_IN + height + bottom_band_in
    return fig_height, (MAP_WIDTH_IN - width) / 2, width, height


def _add_axes_in(fig: Figure, left: float, bottom: float, width: float, height: float):
    """Add axes placed in inches from the bottom left corner of the figure."""
    fig_width, fig_height = fig.get_size_inches()
    return fig.add_axes((left / fig_width, bottom / fig_height, width / fig_width, height / fig_height))


def _legend_layout(labels: list[str]) -> tuple[int, float]:
    """Return the legend columns and an upper estimate of the legend height in inches."""
    char_in = 0.62 * LEGEND_FONT_PT / 72  # wider than the mean glyph of DejaVu Sans
    entry_in = max(len(label) for label in labels) * char_in + 4 * LEGEND_FONT_PT / 72
    ncol = 2 if 2 * entry_in <= MAP_WIDTH_IN - 2 * PAD_IN else 1
    rows = math.ceil(len(labels) / ncol)
    return ncol, rows * 1.6 * LEGEND_FONT_PT / 72 + 0.2


def overlay_figure(ctx) -> Figure:
    """Return the figure of the map coloured by predicted cell type, with its legend below."""
    handles = figures.overlay_legend_handles(ctx.stats, ctx.colors, ctx.classes, ctx.unit)
    ncol, legend_in = _legend_layout([handle.get_label() for handle in handles])
    fig_height, left, width, height = _map_box(ctx.view["shape"], legend_in)
    fig = Figure(figsize=(MAP_WIDTH_IN, fig_height))
    ax = _add_axes_in(fig, left, legend_in, width, height)
    figures.draw_overlay(ax, ctx.view, ctx.raster, ctx.colors, ctx.classes)
    ax.set_title(OVERLAY_TITLE, fontsize=TITLE_FONT_PT)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=ncol,
              fontsize=LEGEND_FONT_PT, frameon=False)
    return fig


def heatmap_figure(ctx) -> Figure:
    """Return the figure of the anomaly score map with its colour bar below."""
    colorbar_band_in = 0.75
    fig_height, left, width, height = _map_box(ctx.view["shape"], colorbar_band_in)
    fig = Figure(figsize=(MAP_WIDTH_IN, fig_height))
    ax = _add_axes_in(fig, left, colorbar_band_in, width, height)
    mappable = figures.draw_heatmap(ax, ctx.view, ctx.raster, ctx.settings.anomaly_threshold)
    ax.set_title(HEATMAP_TITLE, fontsize=TITLE_FONT_PT)
    colorbar_ax = _add_axes_in(fig, left, colorbar_band_in - 0.25, width, 0.14)
    figures.add_score_colorbar(fig, colorbar_ax, mappable, ctx.settings.anomaly_threshold)
    return fig


def composition_figure(ctx) -> Figure:
    """Return the bar chart of tiles per predicted cell type."""
    classes = ctx.classes
    label_in = 0.25 + max((len(name) for name in classes), default=4) * 0.62 * 8 / 72
    bars_in = 0.3 * max(1, len(classes))
    bottom_in, top_in = 0.5, 0.1
    fig = Figure(figsize=(MAP_WIDTH_IN, bottom_in + bars_in + top_in))
    # The right margin leaves room for the count printed after the longest bar.
    ax = _add_axes_in(fig, label_in, bottom_in, MAP_WIDTH_IN - label_in - 0.4, bars_in)
    figures.draw_composition(ax, ctx.stats, ctx.colors, classes, ctx.unit)
    return fig
