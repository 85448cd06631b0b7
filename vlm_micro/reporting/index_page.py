"""The run index: one sortable table of all images with links, and plots across the run."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pandas as pd

from vlm_micro import __version__
from vlm_micro.reporting import figures, run_figures
from vlm_micro.reporting.html_common import (
    data_table, esc, fmt_number, fmt_percent, href, img_tag, page, readable_time, swatch, template_text,
)
from vlm_micro.reporting.panels import encode_png
from vlm_micro.reporting.results import DEMO_MODEL_NAME
from vlm_micro.reporting.summary import ALL_IMAGES, LEADING_COLUMNS, NO_CONDITION, condition_column


def render_index(images: pd.DataFrame, conditions: pd.DataFrame, classes: list[str], colors: dict[str, str],
                 table_files: list[str]) -> str:
    """Return the run's index.html.

    Parameters
    ----------
    images, conditions : DataFrame
        The contents of images.tsv and conditions.tsv.
    classes : list of str
        Cell types of the run in vocabulary order. ``colors`` maps them to hex colours.
    table_files : list of str
        Paths of the run-level tables relative to the index, to link to.
    """
    n_failed = int((images["status"] != "ok").sum())
    generated = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    parts = [
        f"<h1>vlm-micro run: {len(images):,} images</h1>",
        f'<p class="subtitle">{len(images) - n_failed:,} processed · {n_failed:,} failed · '
        f"made {esc(readable_time(generated))} by vlm-micro {esc(__version__)}</p>",
        _notices(images),
        _failures(images),
        "<h2>Images</h2>",
        "<p>Click a column heading to sort. Click an image name to open its report. Percentages are shares "
        "of the labelled tiles (or cells) of each image.</p>",
        _images_table(images, classes, colors),
        _composition_plot(images, classes, colors),
        _conditions_part(images, conditions, classes, colors),
        _tables_part(table_files),
    ]
    return page(f"vlm-micro run: {len(images)} images", "\n".join(p for p in parts if p),
                script=template_text("sortable.js"), wide=True)


def _notices(images: pd.DataFrame) -> str:
    out = ['<div class="note">Cell types and anomaly scores are <strong>model predictions</strong>, not '
           "ground truth, and each report gives the share of uncertain predictions. Compare conditions only "
           "with several images per condition.</div>"]
    if (images.get("model", pd.Series(dtype=str)) == DEMO_MODEL_NAME).any():
        out.append('<div class="warning"><strong>Demo model.</strong> Some or all images were labelled with the '
                   "bundled demo model, trained on synthetic images only and not validated on real tissue. "
                   "Do not draw biological conclusions from its labels.</div>")
    return "\n".join(out)


def _failures(images: pd.DataFrame) -> str:
    failed = images[images["status"] != "ok"]
    if failed.empty:
        return ""
    items = "".join(
        f'<li><a href="{href("reports", str(row.image_id) + ".html")}"><code>{esc(row.image_id)}</code></a>: '
        f"{esc(row.error or 'no error message')}</li>" for row in failed.itertuples())
    if len(failed) == len(images):
        rest = "no image was labelled. The reasons below say what to fix before running again."
    else:
        rest = f"{'were' if len(failed) != 1 else 'was'} not labelled; the other images are complete."
    return (f'<div class="error"><strong>{len(failed):,} image{"s" if len(failed) != 1 else ""} failed</strong> '
            f"and {rest}<ul>{items}</ul></div>")


def metadata_columns(images: pd.DataFrame) -> list[str]:
    """Return the sample-sheet columns of images.tsv (between ``error`` and ``width``)."""
    columns = list(images.columns)
    start = len(LEADING_COLUMNS)
    end = columns.index("width") if "width" in columns else start
    return columns[start:end]


def _images_table(images: pd.DataFrame, classes: list[str], colors: dict[str, str]) -> str:
    meta = metadata_columns(images)
    with_cells = "n_cells" in images and pd.to_numeric(images["n_cells"], errors="coerce").notna().any()
    counts = ["tiles"] + (["cells"] if with_cells else [])
    header = ["image", "status"] + meta + counts + ["most frequent type", "uncertain", "anomaly rate", "notes"]
    first_numeric = 2 + len(meta)
    numeric = set(range(first_numeric, first_numeric + len(counts))) | {len(header) - 3, len(header) - 2}
    rows, row_classes = [], []
    for _, row in images.iterrows():
        ok = row["status"] == "ok"
        cells = [
            (f'<a href="{href("reports", str(row["image_id"]) + ".html")}">{esc(row["image_id"])}</a>',
             str(row["image_id"])),
            '<span class="tag ok">ok</span>' if ok else '<span class="tag bad">failed</span>',
        ]
        cells += [esc(row[name]) for name in meta]
        cells.append(_number_cell(row.get("n_tiles"), integer=True))
        if with_cells:
            cells.append(_number_cell(row.get("n_cells"), integer=True))
        cells.append(_top_class(row, classes, colors))
        cells += [_percent_cell(row.get("uncertain_fraction")), _percent_cell(row.get("anomaly_rate"))]
        cells.append(_notes_cell(row, ok))
        rows.append(cells)
        row_classes.append("" if ok else "failed")
    return data_table(header, rows, numeric, table_id="images", sortable=True, row_classes=row_classes)


def _notes_cell(row: pd.Series, ok: bool) -> str:
    """Return the error of a failed image, or the QC warnings of a processed one."""
    if not ok:
        return f"<strong>error:</strong> {esc(row.get('error') or 'no error message')}"
    warnings = row.get("qc_warnings") or ""
    return f"QC: {esc(warnings)}" if warnings else ""


def _as_number(value) -> float:
    """Return a table value as a float; NaN when it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _number_cell(value, integer: bool = False):
    number = _as_number(value)
    if math.isnan(number):
        return ("–", "")
    return (f"{int(number):,}" if integer else fmt_number(float(number), 3), repr(float(number)))


def _percent_cell(value):
    number = _as_number(value)
    if math.isnan(number):
        return ("–", "")
    return (fmt_percent(float(number)), repr(float(number)))


def _top_class(row: pd.Series, classes: list[str], colors: dict[str, str]):
    fractions = {name: _as_number(row.get(f"frac_{name}")) for name in classes}
    fractions = {name: value for name, value in fractions.items() if not math.isnan(value)}
    if not fractions:
        return ("–", "")
    name = max(fractions, key=fractions.get)
    return (f"{swatch(colors.get(name, '#808080'))}{esc(name)} ({fmt_percent(fractions[name], 0)})", name)


def _figure_html(rgb, alt: str, caption: str) -> str:
    if rgb is None:
        return ""
    uri = figures.data_uri(encode_png(rgb))
    return f"<figure>{img_tag(uri, alt)}<figcaption>{esc(caption)}</figcaption></figure>"


def _composition_plot(images: pd.DataFrame, classes: list[str], colors: dict[str, str]) -> str:
    rgb = run_figures.composition_per_image(images, classes, colors)
    if rgb is None:
        return ""
    n_plotted = min(run_figures.MAX_IMAGES_PLOTTED, int((images["status"] == "ok").sum()))
    caption = "One bar per processed image. The share of uncertain predictions is given at the right."
    if n_plotted == run_figures.MAX_IMAGES_PLOTTED:
        caption += f" Only the first {n_plotted} images are plotted. images.tsv lists all of them."
    figure = _figure_html(rgb, "Stacked bars of cell-type shares per image", caption)
    return f'<h2>Composition per image</h2>\n<div class="stack">{figure}</div>'


def _conditions_part(images: pd.DataFrame, conditions: pd.DataFrame, classes: list[str], colors: dict[str, str]) -> str:
    column = condition_column(images)
    if column:
        groups = images[column].astype(str).replace("", NO_CONDITION)
        intro = (f"<p>Images are grouped by the sample-sheet column <code>{esc(column)}</code>. Means and standard "
                 "deviations are over images (each image counts once), and n is the number of processed images "
                 "with labelled tiles.</p>")
    else:
        groups = pd.Series(ALL_IMAGES, index=images.index)
        intro = ("<p>The sample sheet has no <code>condition</code> column, so all images form one group "
                 "<code>all</code>. Add a condition column to compare groups.</p>")
    header = ["condition", "n", "failed"] + classes + ["uncertain", "anomaly rate"]
    rows = []
    for _, row in conditions.iterrows():
        cells = [esc(row["condition"]), f"{int(row['n']):,}", f"{int(row['n_failed']):,}"]
        for metric in [f"frac_{name}" for name in classes] + ["uncertain_fraction", "anomaly_rate"]:
            cells.append(_mean_sd(row.get(f"{metric}_mean"), row.get(f"{metric}_std")))
        rows.append(cells)
    table = data_table(header, rows, set(range(1, len(header))), table_id="conditions", sortable=True)
    composition = _figure_html(run_figures.composition_per_condition(conditions, classes, colors),
                               "Stacked bars of mean cell-type shares per condition",
                               "Mean share of each predicted cell type over the images of each condition.")
    anomaly = _figure_html(run_figures.anomaly_rate_per_condition(images, conditions, groups),
                           "Anomaly rate per condition",
                           "Bars: mean anomaly rate of the images of each condition, with one standard deviation. "
                           "Dots: single images.")
    return ("<h2>Conditions</h2>\n" + intro + "<p>Values are mean ± standard deviation of the per-image shares.</p>"
            + table + f'<div class="stack">{composition}{anomaly}</div>')


def _mean_sd(mean, std):
    if mean is None or pd.isna(mean):
        return ("–", "")
    text = fmt_percent(mean)
    if std is not None and not pd.isna(std):
        text += f" ± {100 * float(std):.1f}"
    return (text, repr(float(mean)))


def _tables_part(table_files: list[str]) -> str:
    descriptions = {
        "images.tsv": "one row per image: status, counts, shares, anomaly rate, QC (tab-separated)",
        "conditions.tsv": "mean, standard deviation and n per condition (tab-separated)",
        "tables/tiles.parquet": "every labelled tile of every image with all predictions (Parquet)",
        "tables/tiles.csv": "the same as CSV, without embeddings",
        "tables/cells.parquet": "every detected cell (Parquet)",
        "tables/cells.csv": "the same as CSV",
    }
    items = "".join(f'<li><a href="{href(*name.split("/"))}"><code>{esc(name)}</code></a>: '
                    f"{esc(descriptions.get(name, ''))}</li>" for name in table_files)
    return ("<h2>Tables</h2>\n<p>Every column is described in the vlm-micro documentation (docs/outputs.md).</p>"
            f"<ul>{items}</ul><footer>Made by vlm-micro {esc(__version__)}</footer>")
