"""The one-page PDF of a per-image report, for lab records.

One A4 portrait page shows the content of the HTML report in compact form. It has the
title and how to read the labels, the cell-type overlay and the anomaly heat map, the
composition chart, image metadata and QC, the most anomalous tiles, one example per cell
type and the provenance. Everything is drawn on one matplotlib figure saved once, so the
file always has exactly one page.

The overlay, heat map and composition chart are the figures drawn for the HTML report,
placed as images at about 150 pixels per inch, and each gallery row is one image of its
tiles side by side. Only the text is drawn here, and it stays selectable in the PDF.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from vlm_micro import __version__
from vlm_micro.atomic import atomic_path
from vlm_micro.reporting import figures
from vlm_micro.reporting.context import ReportContext, tile_rgb_or_blank
from vlm_micro.reporting.panels import PNG_COMPRESS_LEVEL
from vlm_micro.reporting.results import DEMO_MODEL_NAME, ImageResult

A4_PORTRAIT_IN = (8.27, 11.69)
GALLERY_SLOTS = 8  # tiles per gallery row on the page
GALLERY_TILE_PX = 96  # side of a tile in the gallery row images, about 117 pixels per inch on the page
# Boxes (left, bottom, width, height) in figure coordinates of the placed figures.
OVERLAY_BOX = (0.04, 0.475, 0.44, 0.40)
HEATMAP_BOX = (0.53, 0.475, 0.44, 0.40)
COMPOSITION_BOX = (0.04, 0.255, 0.44, 0.195)


def plain(text) -> str:
    """Return ``text`` with ``$`` escaped, so matplotlib does not read it as mathtext."""
    return str("" if text is None else text).replace("$", r"\$")


def write_pdf(ctx: ReportContext, path: Path) -> None:
    """Write the one-page PDF report of a processed image to ``path`` atomically."""
    fig = Figure(figsize=A4_PORTRAIT_IN)
    _title(fig, ctx.result, _notice_lines(ctx))
    if ctx.raster is not None:
        _maps(fig, ctx)
    _composition(fig, ctx)
    _facts(fig, ctx)
    _gallery_row(fig, 0.155, "Most anomalous tiles (anomaly score, kind)",
                 [(tile, f"{_num(tile.row.get('anomaly_score'))} {tile.row.get('anomaly_kind') or ''}")
                  for tile in ctx.anomalies[:GALLERY_SLOTS]])
    examples = [(tiles[0], f"{name} {_num(tiles[0].row.get('cell_type_prob'))}")
                for name, tiles in ctx.examples.items() if tiles][:GALLERY_SLOTS]
    _gallery_row(fig, 0.045, "Most confident example per cell type (class, probability)", examples)
    _provenance(fig, ctx.result)
    _save(fig, path, ctx.result)


def write_failed_pdf(result: ImageResult, path: Path, generated: str) -> None:
    """Write a one-page PDF saying that the image failed and why."""
    fig = Figure(figsize=A4_PORTRAIT_IN)
    error = result.status.get("error") or "no error message was recorded"
    _title(fig, result, [f"Report made {generated}."])
    fig.text(0.05, 0.86, "This image could not be processed.", fontsize=12, fontweight="bold", color="#b00020")
    fig.text(0.05, 0.84, plain(textwrap.fill(f"Error: {error}", 110)), fontsize=9, va="top", family="monospace")
    fig.text(0.05, 0.76, "No labels, figures or exports exist for this image. Fix the cause above and run the "
             "pipeline again.", fontsize=9)
    _provenance(fig, result)
    _save(fig, path, result)


def _save(fig: Figure, path: Path, result: ImageResult) -> None:
    _compress_pdf_images_fast()
    with matplotlib.rc_context({"pdf.use14corefonts": _use_core_fonts(fig)}):
        with atomic_path(path) as tmp:
            with PdfPages(tmp, metadata={"Title": f"vlm-micro report: {result.name}",
                                         "Creator": f"vlm-micro {__version__}"}) as pdf:
                pdf.savefig(fig)


def _compress_pdf_images_fast() -> None:
    """Make matplotlib's PDF backend deflate embedded images at zlib level 1.

    The backend compresses each image by saving it as a PNG with Pillow's default
    level 6, which took about 0.15 s of the 0.43 s that the report of a 512 px image
    took in all. At level 1 the PDF is about 13 % larger. The backend offers no
    option for it, so its private ``PdfFile._writePng`` is wrapped once per process:
    the wrapper hands it the image behind a proxy whose ``save`` adds the level.
    When the method is missing, nothing changes.
    """
    from matplotlib.backends import backend_pdf

    original = getattr(backend_pdf.PdfFile, "_writePng", None)
    if original is None or getattr(original, "vlm_micro_level", None) is not None:
        return

    def write_png(self, img):
        return original(self, _FastPngImage(img))

    write_png.vlm_micro_level = PNG_COMPRESS_LEVEL
    backend_pdf.PdfFile._writePng = write_png


class _FastPngImage:
    """A Pillow image whose ``save`` uses zlib level :data:`PNG_COMPRESS_LEVEL`."""

    def __init__(self, image) -> None:
        self._image = image

    def save(self, buffer, format=None, **params):
        """Save to ``buffer``, the in-memory file that the backend reads the PNG chunks from."""
        params.setdefault("compress_level", PNG_COMPRESS_LEVEL)
        return self._image.save(buffer, format=format, **params)

    def __getattr__(self, name):
        return getattr(self._image, name)


def _use_core_fonts(fig: Figure) -> bool:
    """Decide whether the page's text can use the PDF core fonts (Helvetica, Courier).

    The core fonts are not embedded, which makes writing the page faster, but they
    cover only the Windows-1252 characters. A page with any other
    character keeps DejaVu Sans, embedded. The regular core fonts have the weight
    "medium" in matplotlib's font metrics, so text of weight "normal" is set to it,
    which avoids a font warning per text.
    """
    try:
        for text in fig.texts:
            text.get_text().encode("cp1252")
    except UnicodeEncodeError:
        return False
    for text in fig.texts:
        if text.get_fontweight() in ("normal", 400):
            text.set_fontweight("medium")
    return True


def _num(value, digits: int = 2) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "–"


def _notice_lines(ctx: ReportContext) -> list[str]:
    stats, settings = ctx.stats, ctx.settings
    uncertain = stats["uncertain_fraction"]
    share = f"{100 * uncertain:.1f} %" if uncertain == uncertain else "–"
    lines = [
        f"Labels are predictions of the model {ctx.result.model_name or 'unknown'}, not ground truth. {share} of "
        f"the {stats['n_tiles']:,} {ctx.unit} are uncertain (hatched): top probability below "
        f"{settings.uncertain_probability:g} or lead over the second class below {settings.uncertain_margin:g}."
    ]
    if ctx.result.model_name == DEMO_MODEL_NAME:
        lines.append("DEMO MODEL: trained on synthetic images only and not validated on real tissue, so "
                     "do not draw biological conclusions from it.")
    if ctx.result.pixel_size_um is None:
        lines.append("UNCALIBRATED: the file does not state its pixel size, so tiles were cut at native resolution.")
    return lines


def _title(fig: Figure, result: ImageResult, lines: list[str]) -> None:
    fig.text(0.04, 0.975, plain(textwrap.shorten(f"Cell types and anomalies: {result.name}", 90)),
             fontsize=13, fontweight="bold", va="top")
    fig.text(0.04, 0.953, plain(f"image id {result.image_id}  ·  status {result.status.get('status')}"),
             fontsize=8, color="#555555", va="top")
    y = 0.94
    for line in lines:
        wrapped = textwrap.fill(line, 135)
        color = "#b00020" if line.startswith(("DEMO MODEL", "UNCALIBRATED")) else "black"
        fig.text(0.04, y, plain(wrapped), fontsize=7.5, va="top", color=color)
        y -= 0.012 * (wrapped.count("\n") + 1) + 0.003


def _maps(fig: Figure, ctx: ReportContext) -> None:
    _place_image(fig, ctx.panels.overlay.rgb, ctx.panels.overlay.size_in, OVERLAY_BOX)
    _place_image(fig, ctx.panels.heatmap.rgb, ctx.panels.heatmap.size_in, HEATMAP_BOX)


def _composition(fig: Figure, ctx: ReportContext) -> None:
    left, bottom, width, height = COMPOSITION_BOX
    fig.text(left + width / 2, bottom + height + 0.006, "Composition", fontsize=9, ha="center", va="bottom")
    _place_image(fig, ctx.panels.composition.rgb, ctx.panels.composition.size_in, COMPOSITION_BOX)


def _place_image(fig: Figure, rgb: np.ndarray, size_in: tuple[float, float],
                 box: tuple[float, float, float, float], anchor_top: bool = True):
    """Show ``rgb`` in ``box`` (figure coordinates), as large as fits with its aspect ratio kept.

    The image is centred horizontally and put at the top of the box (at the bottom when
    ``anchor_top`` is false). It is embedded at its own resolution, without resampling.
    """
    fig_width, fig_height = fig.get_size_inches()
    left, bottom, width, height = box
    scale = min(1.0, width * fig_width / size_in[0], height * fig_height / size_in[1])
    image_width = size_in[0] * scale / fig_width
    image_height = size_in[1] * scale / fig_height
    image_bottom = bottom + height - image_height if anchor_top else bottom
    ax = fig.add_axes((left + (width - image_width) / 2, image_bottom, image_width, image_height))
    ax.imshow(rgb, interpolation="none")
    ax.set_axis_off()
    return ax


def _facts(fig: Figure, ctx: ReportContext) -> None:
    """Write image metadata, anomaly summary and QC as a text block on the right."""
    result, stats = ctx.result, ctx.stats
    qc = result.status.get("qc") or {}
    plane = result.status.get("plane") or {}
    shape = result.plane_shape()
    size = f"{shape[1]} × {shape[0]} px" if shape else "–"
    pixel = f"{result.pixel_size_um:g} µm/px" if result.pixel_size_um else "uncalibrated"
    frame = plane.get("frame")
    blocks = {
        "Image": [
            f"size {size}, pixel size {pixel}",
            f"axes {(result.status.get('info') or {}).get('axes', '–')}, series {plane.get('series', '–')}, "
            f"frame {'none' if frame is None else frame}, z projection {plane.get('projection') or 'none'}",
        ] + [f"{key}: {'–' if value is None else value}" for key, value in result.sheet_metadata()[:4]],
        "Anomalies": [
            f"{stats['n_anomalous']} of {stats['n_tiles']} {ctx.unit} anomalous "
            f"({_num(_pct(stats['anomaly_rate']), 1)} %)",
            f"mean score {_num(stats['mean_anomaly_score'])}; threshold {ctx.settings.anomaly_threshold:g}",
        ] + ([f"{stats['n_cells']} nuclei detected"] if stats["n_cells"] is not None else []),
        "Quality control": [
            f"foreground {_num(_pct(qc.get('foreground_fraction')), 1)} %, mean focus "
            f"{_num(qc.get('mean_focus'), 1)}, saturated {_num(_pct(qc.get('saturated_fraction')), 2)} %",
            f"background tiles skipped: {qc.get('n_skipped_background', '–')}",
        ] + [f"warning: {warning}" for warning in (qc.get("warnings") or [])[:4]],
    }
    y = 0.46
    for heading, lines in blocks.items():
        fig.text(0.53, y, heading, fontsize=7.5, fontweight="bold", va="top")
        y -= 0.014
        for line in lines:
            fig.text(0.545, y, plain(textwrap.shorten(str(line), 78, placeholder="…")), fontsize=7, va="top")
            y -= 0.013
        y -= 0.006


def _pct(value):
    try:
        return 100 * float(value)
    except (TypeError, ValueError):
        return None


def _gallery_row(fig: Figure, bottom: float, title: str, tiles: list) -> None:
    """Show up to :data:`GALLERY_SLOTS` tiles side by side as one image, with a caption under each."""
    fig.text(0.04, bottom + 0.087, title, fontsize=8.5, fontweight="bold")
    if not tiles:
        fig.text(0.04, bottom + 0.04, "none", fontsize=7.5, color="#555555")
        return
    fig_width, fig_height = fig.get_size_inches()
    slot = 0.92 / GALLERY_SLOTS  # figure width per tile
    side_in = min(slot * 0.9 * fig_width, 0.07 * fig_height)
    pitch_px = round(GALLERY_TILE_PX * slot * fig_width / side_in)
    strip = np.full((GALLERY_TILE_PX, pitch_px * (len(tiles) - 1) + GALLERY_TILE_PX, 3), 255, dtype=np.uint8)
    for position, (tile, _) in enumerate(tiles):
        square = _framed_square(tile_rgb_or_blank(tile))
        strip[:, position * pitch_px : position * pitch_px + GALLERY_TILE_PX] = square
    strip_in = (strip.shape[1] * side_in / GALLERY_TILE_PX, side_in)
    first_centre = 0.04 + slot * 0.45
    left = first_centre - side_in / fig_width / 2
    _place_image(fig, strip, strip_in, (left, bottom + 0.012, strip_in[0] / fig_width, 0.07), anchor_top=False)
    caption_top = bottom + 0.012 + (0.07 - side_in / fig_height) / 2 - 0.003
    pitch = pitch_px * side_in / GALLERY_TILE_PX / fig_width  # the rounded pitch, in figure coordinates
    for position, (_, caption) in enumerate(tiles):
        fig.text(first_centre + position * pitch, caption_top, plain(textwrap.shorten(caption, 24, placeholder="…")),
                 ha="center", va="top", fontsize=6)


def _framed_square(rgb: np.ndarray) -> np.ndarray:
    """Return the tile centred on a white :data:`GALLERY_TILE_PX` square, framed by a thin dark line."""
    pixels = figures.display_tile(rgb, GALLERY_TILE_PX)
    square = np.full((GALLERY_TILE_PX, GALLERY_TILE_PX, 3), 255, dtype=np.uint8)
    top = (GALLERY_TILE_PX - pixels.shape[0]) // 2
    left = (GALLERY_TILE_PX - pixels.shape[1]) // 2
    square[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    square[[0, -1], :] = 40
    square[:, [0, -1]] = 40
    return square


FOOTER_CHARS = 160  # characters per provenance line that fit the page width at 5.5 pt monospace
CHECKSUM_DIGITS = 16


def _short(checksum) -> str:
    return str(checksum)[:CHECKSUM_DIGITS] if checksum else "–"


def _tail(text: str, width: int) -> str:
    """Return ``text``, or its end behind an ellipsis when it is longer than ``width`` characters."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _provenance(fig: Figure, result: ImageResult) -> None:
    status = result.status
    model = status.get("model") or {}
    vocabulary = status.get("vocabulary") or {}
    elapsed = status.get("elapsed_s")
    head = (f"vlm-micro {status.get('vlm_micro_version', __version__)} · model {model.get('name', '–')} "
            f"({model.get('spec', '–')}) · file ")
    lines = [
        head + _tail(str(result.path), FOOTER_CHARS - len(head)),
        f"SHA-256, first {CHECKSUM_DIGITS} hex digits (all 64 are in the HTML report): "
        f"model {_short(model.get('checksum'))} · config {_short(status.get('config_checksum'))} · "
        f"vocabulary {_short(vocabulary.get('checksum'))}",
        f"started {status.get('started', '–')} · finished {status.get('finished', '–')} · "
        f"processing time {_num(elapsed, 1)} s",
    ]
    # The first line is already cut to fit, and shorten() would also collapse spaces in the path.
    text = "\n".join([lines[0]] + [textwrap.shorten(line, FOOTER_CHARS, placeholder="…") for line in lines[1:]])
    fig.text(0.04, 0.012, plain(text), fontsize=5.5, color="#444444", va="bottom", family="monospace")
