"""The per-image HTML report, built section by section.

The page is one self-contained file: figures are embedded as PNG data URIs, the style
sheet is inline and there is no script.
"""

from __future__ import annotations

import logging

from vlm_micro import __version__
from vlm_micro.reporting.context import ReportContext
from vlm_micro.reporting.html_common import esc, fmt_percent, href, kv_table, page, readable_time
from vlm_micro.reporting.html_sections import (
    anomaly_section, composition_section, examples_section, maps_section, qc_section,
)
from vlm_micro.reporting.results import DEMO_MODEL_NAME, ImageResult

log = logging.getLogger(__name__)


def render_report(ctx: ReportContext) -> str:
    """Return the complete HTML report of an image that was processed successfully."""
    sections = [
        header_section(ctx.result, ctx.generated, ctx.stats["n_tiles"], ctx.unit),
        notice_section(ctx),
        image_section(ctx.result, ctx.n_planes),
        maps_section(ctx),
        composition_section(ctx),
        anomaly_section(ctx),
        examples_section(ctx),
        qc_section(ctx),
        provenance_section(ctx.result),
        files_section(ctx.result, ctx.settings.pdf),
    ]
    return page(f"vlm-micro report: {ctx.result.name}", "\n".join(sections))


def render_failed_report(result: ImageResult, generated: str, pdf: bool) -> str:
    """Return a short HTML report saying that the image failed and why."""
    error = result.status.get("error") or "no error message was recorded"
    body = [
        header_section(result, generated, None, "tiles"),
        '<div class="error"><strong>This image could not be processed.</strong> '
        f"The pipeline stopped with this error:<br><code>{esc(error)}</code></div>",
        "<p>No labels, figures or exports exist for this image. Fix the cause named above "
        "(for example a damaged file, an unsupported format or a wrong path in the sample "
        "sheet) and run the pipeline again. The other images of the run are not affected.</p>",
        image_section(result, 1),
        provenance_section(result),
        files_section(result, pdf),
    ]
    return page(f"vlm-micro report: {result.name} (failed)", "\n".join(body))


def header_section(result: ImageResult, generated: str, n_tiles: int | None, unit: str) -> str:
    status = '<span class="tag ok">processed</span>' if result.ok else '<span class="tag bad">failed</span>'
    parts = [f"image id <code>{esc(result.image_id)}</code>", status]
    if n_tiles is not None:
        parts.append(f"{n_tiles:,} {esc(unit)} labelled")
    parts.append(f"report made {esc(readable_time(generated))} by vlm-micro {esc(__version__)}")
    return (f"<h1>Cell types and anomalies: {esc(result.name)}</h1>\n"
            f'<p class="subtitle">{" · ".join(parts)}</p>')


def notice_section(ctx: ReportContext) -> str:
    """Return the boxes on how to read the labels, the demo model, calibration and QC."""
    stats, settings, result = ctx.stats, ctx.settings, ctx.result
    model = result.model_name or (result.status.get("model") or {}).get("spec") or "unknown"
    boxes = [
        f'<div class="note">The cell types and anomaly scores on this page are <strong>predictions of the '
        f"model {esc(model)}</strong>, not ground truth. {fmt_percent(stats['uncertain_fraction'])} of the "
        f"{stats['n_tiles']:,} {esc(ctx.unit)} are <strong>uncertain</strong> (hatched in the figures): their "
        f"most probable class had a probability below {settings.uncertain_probability:g} or led the second "
        f"class by less than {settings.uncertain_margin:g}. Check uncertain areas by eye.</div>"
    ]
    if result.model_name == DEMO_MODEL_NAME:
        boxes.append(
            '<div class="warning"><strong>Demo model.</strong> This report was made with the bundled demo '
            "model, which was trained on synthetic images only and has not been validated on real tissue. "
            "Use it to try the pipeline, not to draw biological conclusions. Fine-tune or choose a model "
            "validated for your samples.</div>")
    if result.pixel_size_um is None:
        boxes.append(
            '<div class="warning"><strong>Uncalibrated image.</strong> The file does not state its pixel '
            "size, so tiles were cut at the image's own resolution and no sizes in µm are given. Cells may "
            "appear at a different scale than the model expects. Set <code>pixel_size_um</code> in the "
            "sample sheet or configuration to fix this.</div>")
    if stats["n_tiles"] == 0:
        boxes.append(
            '<div class="warning"><strong>Nothing was labelled.</strong> No tile had enough foreground. '
            "Check the image, or lower <code>tiling.min_foreground</code> in the configuration.</div>")
    warnings = (result.status.get("qc") or {}).get("warnings") or []
    if warnings:
        items = "".join(f"<li>{esc(warning)}</li>" for warning in warnings)
        boxes.append(f'<div class="warning"><strong>Quality warnings</strong><ul>{items}</ul></div>')
    return "\n".join(boxes)


def image_section(result: ImageResult, n_planes: int) -> str:
    """Return the table of file, size, axes, channels, pixel size and the plane used."""
    info = result.status.get("info") or {}
    plane = result.status.get("plane") or {}
    if not info:
        # The image failed before it could be inspected: only the file and the sample sheet are known.
        rows = [("File name", f"<code>{esc(result.name)}</code>"), ("Full path", f"<code>{esc(result.path)}</code>")]
        rows += [(f"Sample sheet: {key}", esc(_or_dash(value, "–"))) for key, value in result.sheet_metadata()]
        return "<h2>Image</h2>\n" + kv_table(rows)

    shape = result.plane_shape()
    size = "–"
    if shape:
        size = f"{shape[1]:,} × {shape[0]:,} px (width × height)"
        if result.pixel_size_um:
            size += f" = {shape[1] * result.pixel_size_um:,.0f} × {shape[0] * result.pixel_size_um:,.0f} µm"

    pixel = f"{result.pixel_size_um:g} µm per pixel" if result.pixel_size_um else "uncalibrated (not stated in the file)"
    rows = [
        ("File name", f"<code>{esc(result.name)}</code>"),
        ("Full path", f"<code>{esc(result.path)}</code>"),
        ("Image size", esc(size) if shape else size),
        ("Pixel size", esc(pixel)),
        ("Axes and shape in the file", f"{esc(info.get('axes', '–'))} {esc(_shape_text(info.get('shape')))}"),
        ("Data type", esc(info.get("dtype", "–"))),
        ("File format", esc(info.get("format", "–"))),
        ("Channels", esc(_channels_text(info.get("channels")))),
        ("Series used", esc(_series_text(plane.get("series"), info.get("series")))),
        ("Time frame used", esc(_or_dash(plane.get("frame"), "none (no time axis)"))),
        ("Z projection", esc(_or_dash(plane.get("projection"), "none (no z stack)"))),
    ]

    modality = plane.get("modality") or info.get("modality")
    if modality:
        rows.append(("Modality (prompts used)", esc(modality)))
    if n_planes > 1:
        rows.append(("Planes labelled", esc(f"{n_planes} (series × frames); figures show the first")))
    for key, value in result.sheet_metadata():
        rows.append((f"Sample sheet: {key}", esc(_or_dash(value, "–"))))
    return "<h2>Image</h2>\n" + kv_table(rows)


def _shape_text(shape) -> str:
    if isinstance(shape, (list, tuple)):
        return "(" + " × ".join(str(value) for value in shape) + ")"
    return "" if shape is None else str(shape)


def _channels_text(channels) -> str:
    """Describe the channels of ``info``: names (or numbers) and display colours."""
    if channels is None:
        return "–"
    entries = channels if isinstance(channels, (list, tuple)) else [channels]
    parts = []
    for position, entry in enumerate(entries):
        if isinstance(entry, dict):
            name = entry.get("name") or f"channel {entry.get('index', position)}"
            color = entry.get("color")
            parts.append(f"{name} (shown as {color})" if color else str(name))
        else:
            parts.append(str(entry))
    return ", ".join(parts) if parts else "–"


def _series_text(series, count) -> str:
    if series is None:
        return "–"
    return f"{series} (of {count} in the file, counting from 0)" if isinstance(count, int) else str(series)


def _or_dash(value, missing: str) -> str:
    return missing if value is None or value == "" else str(value)


def provenance_section(result: ImageResult) -> str:
    """Return versions, model, checksums, vocabulary and run times."""
    status = result.status
    model = status.get("model") or {}
    vocabulary = status.get("vocabulary") or {}
    rows = [
        ("vlm-micro version", esc(status.get("vlm_micro_version", "–"))),
        ("Model name", esc(model.get("name", "–"))),
        ("Model spec", f"<code>{esc(model.get('spec', '–'))}</code>"),
        ("Model checksum (SHA-256)", f"<code>{esc(model.get('checksum', '–'))}</code>"),
        ("Configuration checksum", f"<code>{esc(status.get('config_checksum', '–'))}</code>"),
        ("Labels vocabulary checksum", f"<code>{esc(vocabulary.get('checksum', '–'))}</code>"),
        ("Cell types", esc(", ".join(str(c) for c in vocabulary.get("classes") or []) or "–")),
        ("Anomaly kinds", esc(", ".join(str(k) for k in vocabulary.get("anomaly_kinds") or []) or "–")),
        ("Started", esc(readable_time(status.get("started") or "–"))),
        ("Finished", esc(readable_time(status.get("finished") or "–"))),
        ("Processing time", esc(f"{status['elapsed_s']:.1f} s") if isinstance(status.get("elapsed_s"), (int, float)) else "–"),
    ]
    for key in sorted(key for key in status if "seed" in key):
        rows.append((key.replace("_", " ").capitalize(), esc(status[key])))
    return "<h2>Provenance</h2>\n" + kv_table(rows)


def files_section(result: ImageResult, pdf: bool) -> str:
    """Return links to the PDF, the exports and the tile table of this image."""
    image_id = result.image_id
    links = []
    if pdf:
        links.append(f'<li><a href="{href(image_id + ".pdf")}">One-page PDF of this report</a></li>')
    if result.ok:
        links += [
            f'<li><a href="{href("..", "exports", image_id + ".geojson")}">GeoJSON of the labelled '
            "tiles or cells</a> (QuPath: File › Import objects)</li>",
            f'<li><a href="{href("..", "exports", image_id + "_labels.ome.tif")}">Label map (OME-TIFF)</a>, '
            f'class names in <a href="{href("..", "exports", image_id + "_labels.json")}">its JSON sidecar</a> '
            "(napari, Fiji)</li>",
            f'<li><a href="{href("..", "tables", "tiles", image_id + ".parquet")}">Tile table (Parquet)</a></li>',
        ]
    links.append(f'<li><a href="{href("..", "index.html")}">All images of this run</a></li>')
    return "<h2>Files</h2>\n<ul>" + "".join(links) + "</ul>\n<footer>Made by vlm-micro " + esc(__version__) + "</footer>"
