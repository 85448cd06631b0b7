"""Result sections of the per-image HTML report: maps, composition, anomalies, examples, QC."""

from __future__ import annotations

import numpy as np

from vlm_micro.reporting import figures
from vlm_micro.reporting.context import ReportContext, nominal_tile_px
from vlm_micro.reporting.gallery import GalleryTile
from vlm_micro.reporting.html_common import data_table, esc, fmt_number, fmt_percent, img_tag, kv_table, swatch
from vlm_micro.reporting.stats import float_column


def maps_section(ctx: ReportContext) -> str:
    """Return the colour overlay of cell types and the anomaly heat map, side by side."""
    if ctx.raster is None:
        return "<h2>Where each cell type was predicted</h2>\n<p>The image size is unknown, so no map can be drawn.</p>"
    overlay = figures.data_uri(ctx.panels.overlay.png)
    heatmap = figures.data_uri(ctx.panels.heatmap.png)
    return (
        "<h2>Where each cell type was predicted, and where anomalies are</h2>\n"
        '<div class="figures">'
        f"<figure>{img_tag(overlay, 'Image with tiles coloured by predicted cell type')}"
        f"<figcaption>{esc(_overlay_caption(ctx))}</figcaption></figure>"
        f"<figure>{img_tag(heatmap, 'Anomaly score per tile over the image')}"
        f"<figcaption>{esc(_heatmap_caption(ctx))}</figcaption></figure>"
        "</div>"
    )


def _overlay_caption(ctx: ReportContext) -> str:
    if ctx.view["placement"] == "cells":
        shape_text = "Each disk marks one detected nucleus, sized by its area"
    else:
        tile_px = nominal_tile_px(ctx.result)
        size = f"{tile_px * ctx.result.pixel_size_um:g} µm" if ctx.result.pixel_size_um else f"{tile_px} px"
        shape_text = f"Each coloured square is one tile of {size} × {size}"
    return (f"{shape_text}; its colour is the most probable cell type. Hatched {ctx.unit} are uncertain. "
            "Areas without colour had too little tissue or cells and were not labelled.")


def _heatmap_caption(ctx: ReportContext) -> str:
    return (f"Anomaly score per {ctx.unit[:-1]}, from 0 (looks like normal cells) to 1 (matches the anomaly "
            f"descriptions: artefacts such as blur, saturation or debris, or abnormal cells). {ctx.unit.capitalize()} "
            f"scoring {ctx.settings.anomaly_threshold:g} or more (cyan mark on the colour bar) are outlined in "
            "cyan and counted as anomalous.")


def composition_section(ctx: ReportContext) -> str:
    """Return the composition chart and the table of counts, shares and uncertain counts."""
    stats, classes, colors = ctx.stats, ctx.classes, ctx.colors
    chart = figures.data_uri(ctx.panels.composition.png)
    # Detected cells get their own column only when they differ from the labelled units.
    with_cells = bool(stats["cell_counts"]) and stats["cell_counts"] != stats["counts"]
    header = ["cell type", ctx.unit, "share", "of which uncertain"] + (["cells detected"] if with_cells else [])
    rows = []
    for name in classes:
        count = stats["counts"][name]
        row = [f'<span class="nowrap">{swatch(colors[name])}{esc(name)}</span>', f"{count:,}", fmt_percent(stats["fractions"][name]),
               f"{stats['uncertain_counts'][name]:,}"]
        if with_cells:
            row.append(f"{stats['cell_counts'].get(name, 0):,}")
        rows.append(row)
    total = ["<strong>all</strong>", f"<strong>{stats['n_tiles']:,}</strong>", "100 %" if stats["n_tiles"] else "–",
             f"{sum(stats['uncertain_counts'].values()):,} ({fmt_percent(stats['uncertain_fraction'])})"]
    if with_cells:
        total.append(f"<strong>{stats['n_cells']:,}</strong>")
    rows.append(total)
    numeric = set(range(1, len(header)))
    text = (f"<p>Shares are of all {stats['n_tiles']:,} labelled {esc(ctx.unit)}; each counts towards its most "
            "probable cell type, uncertain ones included (hatched part of each bar).</p>")
    if ctx.n_planes > 1:
        text += f"<p>Counts cover all {ctx.n_planes} planes of the file.</p>"
    return ("<h2>Composition</h2>\n" + text + '<div class="figures">'
            f"<figure>{img_tag(chart, 'Bar chart of predicted cell types')}</figure>"
            f"<div>{data_table(header, rows, numeric)}{_cells_note(ctx)}</div></div>")


def _cells_note(ctx: ReportContext) -> str:
    if ctx.stats["n_cells"] is None:
        return ""
    return (f'<p class="caption">{ctx.stats["n_cells"]:,} nuclei were detected. Each was labelled from a tile '
            "centred on it, so the counts above are cell counts per predicted type.</p>")


def anomaly_section(ctx: ReportContext) -> str:
    """Return the anomaly summary, the count per anomaly kind and the most anomalous tiles."""
    stats = ctx.stats
    text = (f"<p>{stats['n_anomalous']:,} of {stats['n_tiles']:,} {esc(ctx.unit)} ({fmt_percent(stats['anomaly_rate'])}) "
            f"scored {ctx.settings.anomaly_threshold:g} or more; the mean anomaly score is "
            f"{fmt_number(stats['mean_anomaly_score'], 2)}. The kind is the anomaly description that matched "
            "best.</p>")
    kinds = [[esc(kind), f"{count:,}"] for kind, count in stats["anomaly_kind_counts"].items()]
    table = data_table(["anomaly kind", f"anomalous {ctx.unit}"], kinds, {1}) if kinds else ""
    cards = "".join(_card(tile, ctx, "anomaly") for tile in ctx.anomalies)
    gallery = (f"<h3>The {len(ctx.anomalies)} highest-scoring {esc(ctx.unit)}</h3>"
               f'<div class="gallery">{cards}</div>') if cards else ""
    return "<h2>Anomalies</h2>\n" + text + table + gallery


def examples_section(ctx: ReportContext) -> str:
    """Return, per cell type, the tiles the model was most confident about."""
    parts = ["<h2>Examples per cell type</h2>",
             "<p>The most confident predictions of each cell type, with the three most probable classes "
             "and the anomaly descriptions that matched best. Use them to judge whether the labels make "
             "sense for your sample.</p>"]
    for name in ctx.classes:
        tiles = ctx.examples.get(name) or []
        parts.append(f"<h3>{swatch(ctx.colors[name])}{esc(name)}</h3>")
        if tiles:
            parts.append('<div class="gallery">' + "".join(_card(tile, ctx, "example") for tile in tiles) + "</div>")
        else:
            parts.append(f'<p class="caption">No {esc(ctx.unit)} were predicted as {esc(name)}.</p>')
    return "\n".join(parts)


def _card(tile: GalleryTile, ctx: ReportContext, mode: str) -> str:
    """Return one gallery card: the tile, its scores and the reasons for them."""
    row = tile.row
    score = fmt_number(_float(row.get("anomaly_score")), 2)
    label = esc(row.get("cell_type", ""))
    probability = fmt_number(_float(row.get("cell_type_prob")), 2)
    if mode == "anomaly":
        flagged = bool(row.get("is_anomalous", False))
        kind = esc(row.get("anomaly_kind") or "") if flagged else "below threshold: not anomalous"
        title = f"anomaly score {score}<br>{kind or 'anomalous'}"
    else:
        title = f"{label}, probability {probability}"
    image = (img_tag(figures.data_uri(ctx.tile_png(tile)), f"tile {row.get('tile_id')}")
             if tile.rgb is not None else '<p class="caption">pixels unavailable</p>')
    where = f"tile {esc(row.get('tile_id'))} at x {int(row['x']):,}, y {int(row['y']):,} px"
    if ctx.n_planes > 1:
        where += f", series {esc(row.get('series'))}, frame {esc(row.get('frame'))}"
    if tile.source == "thumbnail":
        where += " (from the thumbnail: low resolution)"
    uncertain = ' <span class="tag bad">uncertain</span>' if bool(row.get("uncertain", False)) else ""
    extra = f"anomaly score {score}" if mode == "example" else f"predicted {label} ({probability}){uncertain}"
    if mode == "example":
        extra += uncertain
    return (f'<div class="card">{image}<div class="title">{title}</div><div class="meta">{where}</div>'
            f'<div class="meta">{extra}</div>{_reasons(tile)}</div>')


def _reasons(tile: GalleryTile) -> str:
    classes = "".join(
        f"<li>{esc(name)} {fmt_number(score, 2)}"
        f'<span class="bar" style="width:{max(1, round(60 * (score or 0)))}px"></span></li>'
        for name, score in tile.top_classes)
    prompts = "".join(f"<li>“{esc(text)}”" + (f" {fmt_number(score, 2)}" if score is not None else "") + "</li>"
                      for text, score in tile.top_prompts[:3])
    out = f'<div class="meta">top classes:</div><ol>{classes}</ol>' if classes else ""
    if prompts:
        out += f'<div class="meta">best-matching anomaly descriptions:</div><ul>{prompts}</ul>'
    return out


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def qc_section(ctx: ReportContext) -> str:
    """Return the quality-control table and the count of tiles per QC flag."""
    qc = ctx.result.status.get("qc") or {}
    tiles = ctx.result.tiles
    rows = [
        (f"{ctx.unit.capitalize()} labelled", f"{ctx.stats['n_tiles']:,}"),
        ("Background tiles skipped", fmt_number(qc.get("n_skipped_background"))),
        ("Foreground (share of the image with tissue or cells)", fmt_percent(qc.get("foreground_fraction"))),
        ("Mean focus (variance of the Laplacian, higher is sharper)", fmt_number(qc.get("mean_focus"))),
        ("Saturated pixels (share at the maximum grey value)", fmt_percent(qc.get("saturated_fraction"), 2)),
    ]
    if tiles is not None and "focus" in tiles and len(tiles):
        focus = float_column(tiles, "focus")
        rows.append(("Focus range over tiles (5th to 95th percentile)",
                     f"{fmt_number(_percentile(focus, 5))} to {fmt_number(_percentile(focus, 95))}"))
    for flag, count in _flag_counts(tiles).items():
        rows.append((f"{ctx.unit.capitalize()} flagged {flag}", f"{count:,}"))
    warnings = qc.get("warnings") or []
    rows.append(("Warnings", "<br>".join(esc(w) for w in warnings) if warnings else "none"))
    return "<h2>Quality control</h2>\n" + kv_table(rows)


def _percentile(values, q):
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, q)) if finite.size else float("nan")


def _flag_counts(tiles) -> dict[str, int]:
    counts: dict[str, int] = {}
    if tiles is None or "qc_flags" not in tiles:
        return counts
    for flags in tiles["qc_flags"].fillna("").astype(str):
        for flag in filter(None, (part.strip() for part in flags.split(";"))):
            counts[flag] = counts.get(flag, 0) + 1
    return dict(sorted(counts.items()))
