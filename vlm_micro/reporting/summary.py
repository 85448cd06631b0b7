"""Run-level tables: images.tsv, conditions.tsv and the merged tile and cell tables.

Every column written here is documented in docs/outputs.md, and a test compares the two.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vlm_micro.atomic import atomic_path
from vlm_micro.reporting.results import (
    ImageResult, ResultsError, load_image_result, load_image_status, table_path, tile_table_path,
)
from vlm_micro.reporting.stats import image_stats

log = logging.getLogger(__name__)

# Columns of images.tsv before the sample-sheet columns and the per-class columns.
LEADING_COLUMNS = ("image_id", "path", "status", "error")
# Group of images whose sample sheet gives no condition.
NO_CONDITION = "unassigned"
ALL_IMAGES = "all"


def tsv_text(value) -> str:
    """Flatten a value to one line without tabs, for a TSV cell."""
    return " ".join(str(value).split()) if value is not None else ""


@dataclass
class ImageSummary:
    """Per-image values that the run summary keeps: the status and the numbers from the tables, no table rows."""

    image_id: str
    status: dict
    ok: bool
    path: str
    class_names: list[str]
    anomaly_kinds: list[str]
    colors: dict[str, str]  # class name -> hex colour
    placement: str  # grid or cells; empty for a failed image
    shape: tuple[int, int] | None  # level-0 (rows, columns) of the first plane
    pixel_size_um: float | None
    stats: dict | None  # image_stats of the tables; None for a failed image
    metadata: list[tuple[str, object]]  # sample-sheet (column, value) pairs in sheet order


# Status entries that the summary has used up once an image is summarised. Leaving
# them out halves the memory that each image's summary takes.
_USED_STATUS_KEYS = ("info", "summary", "vocabulary")


def summarise_image(result: ImageResult) -> ImageSummary:
    """Return the values that the run summary needs from one image's loaded result."""
    status = {key: value for key, value in result.status.items() if key not in _USED_STATUS_KEYS}
    names = result.class_names
    return ImageSummary(
        image_id=result.image_id, status=status, ok=result.ok, path=result.path,
        class_names=names, anomaly_kinds=result.anomaly_kinds, colors=result.colors(names),
        placement=result.placement if result.ok else "", shape=result.plane_shape(),
        pixel_size_um=result.pixel_size_um, stats=image_stats(result, names) if result.ok else None,
        metadata=result.sheet_metadata(),
    )


def image_row(summary: ImageSummary, classes: list[str], kinds: list[str]) -> dict:
    """Return the images.tsv row of one image (failed images get empty measurements)."""
    status = summary.status
    qc = status.get("qc") or {}
    shape = summary.shape
    plane = status.get("plane") or {}
    row = {
        "image_id": summary.image_id,
        "path": tsv_text(summary.path),
        "status": status.get("status"),
        "error": tsv_text(status.get("error") or ""),
        "width": shape[1] if shape else pd.NA,
        "height": shape[0] if shape else pd.NA,
        "pixel_size_um": summary.pixel_size_um if summary.pixel_size_um else pd.NA,
        "uncalibrated": bool(status["uncalibrated"]) if status.get("uncalibrated") is not None else pd.NA,
        "series": plane.get("series", pd.NA),
        "projection": tsv_text(plane.get("projection") or ""),
        "placement": summary.placement,
    }
    measured = _measurements(summary, classes, kinds) if summary.ok else _empty_measurements(classes, kinds)
    row.update(measured)
    row.update({
        "foreground_fraction": qc.get("foreground_fraction", pd.NA),
        "mean_focus": qc.get("mean_focus", pd.NA),
        "saturated_fraction": qc.get("saturated_fraction", pd.NA),
        "qc_warnings": "; ".join(tsv_text(w) for w in qc.get("warnings") or []),
        "model": tsv_text((status.get("model") or {}).get("name") or ""),
        "model_checksum": tsv_text((status.get("model") or {}).get("checksum") or ""),
        "elapsed_s": status.get("elapsed_s", pd.NA),
        "report": f"reports/{summary.image_id}.html",
    })
    return row


def _measurements(summary: ImageSummary, classes: list[str], kinds: list[str]) -> dict:
    stats = summary.stats
    qc = summary.status.get("qc") or {}
    row = {
        "n_tiles": stats["n_tiles"],
        "n_skipped_background": qc.get("n_skipped_background", pd.NA),
        "n_cells": stats["n_cells"] if stats["n_cells"] is not None else pd.NA,
    }
    row.update({f"count_{name}": stats["counts"].get(name, 0) for name in classes})
    row.update({f"frac_{name}": stats["fractions"].get(name, math.nan) for name in classes})
    row.update({
        "uncertain_fraction": stats["uncertain_fraction"],
        "n_anomalous": stats["n_anomalous"],
        "anomaly_rate": stats["anomaly_rate"],
        "mean_anomaly_score": stats["mean_anomaly_score"],
    })
    row.update({f"anomalous_{kind}": stats["anomaly_kind_counts"].get(kind, 0) for kind in kinds})
    return row


def _empty_measurements(classes: list[str], kinds: list[str]) -> dict:
    names = (["n_tiles", "n_skipped_background", "n_cells"] + [f"count_{c}" for c in classes]
             + [f"frac_{c}" for c in classes] + ["uncertain_fraction", "n_anomalous", "anomaly_rate",
                                                  "mean_anomaly_score"] + [f"anomalous_{k}" for k in kinds])
    return {name: pd.NA for name in names}


def failed_result(results_dir: Path, image_id: str, error: str) -> ImageResult:
    """Stand in for an image whose status file cannot be read, so it still gets a row."""
    status = {"image_id": image_id, "path": "", "status": "failed", "error": error}
    return ImageResult(image_id=image_id, status=status, results_dir=results_dir)


def load_results(results_dir: Path, image_ids: list[str]) -> list[ImageResult]:
    """Load every image's status and tables; unreadable ones become failed entries.

    The thumbnails are not read: the run summary does not show them.
    """
    results = []
    for image_id in image_ids:
        try:
            results.append(load_image_result(results_dir, image_id, thumbnail=False))
        except ResultsError as exc:
            log.warning("listing %s as failed: %s", image_id, exc)
            results.append(failed_result(results_dir, image_id, str(exc)))
    return results


# Tile-table columns that the images.tsv row, the statistics and the cell predictions
# read. The run summary keeps only these of each image in memory.
SUMMARY_TILE_COLUMNS = ("series", "frame", "y", "x", "height", "width", "placement", "cell_id", "cell_type",
                        "cell_type_prob", "uncertain", "anomaly_score", "anomaly_kind", "is_anomalous")


def load_summary_result(results_dir: Path, image_id: str) -> tuple[ImageResult, pa.Table | None]:
    """Read one image for the run summary, its tile table once.

    Returns the result, whose ``tiles`` has only the :data:`SUMMARY_TILE_COLUMNS`, and
    the whole tile table as an Arrow table (None for a failed image).

    Raises
    ------
    ResultsError
        As :func:`vlm_micro.reporting.results.load_image_result`.
    """
    result = load_image_status(results_dir, image_id)
    if not result.ok:
        return result, None
    path = tile_table_path(result)
    try:
        # ParquetFile reads one file in half the time of read_table, which sets up a dataset.
        with pq.ParquetFile(path) as handle:
            table = handle.read()
        cells_path = table_path(result.results_dir, "cells", image_id)
        if cells_path.is_file():
            result.cells = pd.read_parquet(cells_path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ResultsError(f"cannot read table {path}: {exc}") from exc
    result.tiles = table.select([name for name in SUMMARY_TILE_COLUMNS if name in table.column_names]).to_pandas()
    return result, table


def summarise_run(results_dir: Path, image_ids: list[str], csv: bool) -> tuple[list[ImageSummary], dict[str, Path]]:
    """Summarise every image and write the merged tile and cell tables.

    The images are read one at a time. Their tile and cell tables are appended to
    ``tables/tiles.parquet`` and ``tables/cells.parquet`` (see
    :class:`vlm_micro.reporting.merged.MergedTableWriter`), and only their numbers are
    kept, so memory does not grow with the number of tiles or cells of the run. Images
    whose status or tables cannot be read become failed entries, and their rows are
    left out of the merged tables.

    Returns
    -------
    summaries : list of ImageSummary
        One per image id, in order.
    paths : dict of Path
        The merged tables written: ``tiles`` and, when written, ``cells``,
        ``tiles_csv`` and ``cells_csv``.
    """
    from vlm_micro.reporting.merged import MergedTableWriter, merged_schema, read_schemas

    tile_schemas = read_schemas([table_path(results_dir, "tiles", image_id) for image_id in image_ids])
    cell_schemas = read_schemas([table_path(results_dir, "cells", image_id) for image_id in image_ids])
    # Without any tile table (every image failed), tiles.parquet gets the two key columns and no rows.
    tile_schema = merged_schema(tile_schemas) or pa.schema([("image_id", pa.large_string()), ("tile_id", pa.int64())])
    cell_schema = merged_schema(cell_schemas, tile_schemas, CELL_PREDICTION_COLUMNS)

    summaries: list[ImageSummary] = []
    with contextlib.ExitStack() as stack:
        writers = {kind: stack.enter_context(MergedTableWriter(results_dir / "tables" / f"{kind}.parquet", schema, csv))
                   for kind, schema in (("tiles", tile_schema), ("cells", cell_schema)) if schema is not None}
        for image_id in image_ids:
            try:
                result, table = load_summary_result(results_dir, image_id)
            except ResultsError as exc:
                log.warning("listing %s as failed: %s", image_id, exc)
                summaries.append(summarise_image(failed_result(results_dir, image_id, str(exc))))
                continue
            summaries.append(summarise_image(result))
            if table is not None and "tiles" in writers:
                writers["tiles"].add(image_id, table)
            if result.cells is not None and "cells" in writers:
                cells = with_cell_predictions(result.cells, result.tiles)
                writers["cells"].add(image_id, pa.Table.from_pandas(cells, preserve_index=False))
    paths = {}
    for kind, writer in writers.items():
        paths[kind] = writer.paths[0]
        if len(writer.paths) > 1:
            paths[f"{kind}_csv"] = writer.paths[1]
    return summaries, paths


def run_vocabulary(images: list[ImageSummary] | list[ImageResult]) -> tuple[list[str], list[str]]:
    """Return the cell types and anomaly kinds of the run, in first-seen vocabulary order."""
    classes: list[str] = []
    kinds: list[str] = []
    for image in images:
        classes += [name for name in image.class_names if name not in classes]
        kinds += [kind for kind in image.anomaly_kinds if kind not in kinds]
    return classes, kinds


def build_images_table(images: list[ImageSummary] | list[ImageResult]) -> pd.DataFrame:
    """Return images.tsv as a DataFrame, one row per image, failures included.

    Sample-sheet columns follow ``error``, in sample-sheet order. A sample-sheet column
    whose name clashes with a column of this table is renamed ``meta_<name>``.
    """
    summaries = [image if isinstance(image, ImageSummary) else summarise_image(image) for image in images]
    classes, kinds = run_vocabulary(summaries)
    rows = [image_row(summary, classes, kinds) for summary in summaries]
    fixed = list(rows[0]) if rows else list(LEADING_COLUMNS)
    metadata_columns: list[str] = []
    for summary, row in zip(summaries, rows):
        for key, value in summary.metadata:
            name = f"meta_{key}" if key in fixed or key.startswith(("count_", "frac_", "anomalous_")) else str(key)
            if name not in metadata_columns:
                metadata_columns.append(name)
            row[name] = tsv_text(value) if value is not None else ""
    columns = list(LEADING_COLUMNS) + metadata_columns + [c for c in fixed if c not in LEADING_COLUMNS]
    table = pd.DataFrame(rows, columns=columns)
    for name in metadata_columns:
        table[name] = table[name].fillna("")
    return with_column_types(table)


def with_column_types(table: pd.DataFrame) -> pd.DataFrame:
    """Give images.tsv columns nullable integer, float and boolean types (NA for failed images)."""
    integers = {"width", "height", "series", "n_tiles", "n_skipped_background", "n_cells", "n_anomalous"}
    floats = {"pixel_size_um", "uncertain_fraction", "anomaly_rate", "mean_anomaly_score", "foreground_fraction",
              "mean_focus", "saturated_fraction", "elapsed_s"}
    for name in table.columns:
        if name in integers or name.startswith(("count_", "anomalous_")):
            table[name] = pd.to_numeric(table[name], errors="coerce").round().astype("Int64")
        elif name in floats or name.startswith("frac_"):
            table[name] = pd.to_numeric(table[name], errors="coerce").astype(float)
    if "uncalibrated" in table:
        table["uncalibrated"] = table["uncalibrated"].astype("boolean")
    return table


def metric_columns(images: pd.DataFrame) -> list[str]:
    """Return the per-image fractions and rates that conditions.tsv summarises."""
    fractions = [c for c in images.columns if c.startswith("frac_")]
    return fractions + ["uncertain_fraction", "anomaly_rate", "mean_anomaly_score"]


def condition_column(images: pd.DataFrame) -> str | None:
    """Return the sample-sheet column that names the condition, if there is one."""
    for name in ("condition", "meta_condition"):
        if name in images and (images[name].astype(str) != "").any():
            return name
    return None


def build_conditions_table(images: pd.DataFrame) -> pd.DataFrame:
    """Return conditions.tsv: mean, sample standard deviation and n per condition.

    Each image counts once (image-level means, not tile-pooled). Failed images and
    images without labelled tiles are left out of the statistics and counted in
    ``n_failed`` or ``n_images``. Without a condition column all images form one group
    named ``all``, and images without a condition form the group ``unassigned``.
    """
    column = condition_column(images)
    groups = images[column].astype(str).replace("", NO_CONDITION) if column else pd.Series(ALL_IMAGES, index=images.index)
    metrics = metric_columns(images)
    rows = []
    for condition in dict.fromkeys(groups):
        members = images[groups == condition]
        usable = members[(members["status"] == "ok") & (pd.to_numeric(members["n_tiles"], errors="coerce") > 0)]
        row = {"condition": condition, "n_images": len(members),
               "n_failed": int((members["status"] != "ok").sum()), "n": len(usable)}
        for metric in metrics:
            values = pd.to_numeric(usable[metric], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            values = values[np.isfinite(values)]
            row[f"{metric}_mean"] = float(values.mean()) if values.size else math.nan
            row[f"{metric}_std"] = float(values.std(ddof=1)) if values.size >= 2 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def write_tsv(table: pd.DataFrame, path: Path) -> None:
    """Write a table as UTF-8 TSV atomically; missing values are empty cells."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="", float_format="%.6g")


# Predictions copied from a cell's tile into the merged cell table.
CELL_PREDICTION_COLUMNS = ("cell_type", "cell_type_prob", "uncertain", "anomaly_score", "anomaly_kind", "is_anomalous")


def with_cell_predictions(cells: pd.DataFrame, tiles: pd.DataFrame | None) -> pd.DataFrame:
    """Add the predictions of the tile centred on each cell, matched by ``cell_id`` and plane."""
    if "cell_id" not in cells or tiles is None:
        return cells
    keys = [name for name in ("cell_id", "series", "frame") if name in cells and name in tiles]
    prediction_columns = [name for name in CELL_PREDICTION_COLUMNS if name in tiles and name not in cells]
    if not prediction_columns:
        return cells
    predictions = tiles.dropna(subset=["cell_id"])[keys + prediction_columns].drop_duplicates(keys)
    for name in keys:
        predictions[name] = predictions[name].astype(cells[name].dtype)
    return cells.merge(predictions, on=keys, how="left")
