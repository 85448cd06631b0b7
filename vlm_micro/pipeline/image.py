"""Label one image: read its views, plan tiles, run the model, write tables and status.

A failure of one image never stops the shard: :func:`process_image` catches it, writes
a status file with ``status: failed`` and a one-line reason, and returns. Only an
:class:`~vlm_micro.errors.OutputError` (the results folder cannot be written) is raised,
because every later image would fail the same way.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone

import pandas as pd

from vlm_micro import __version__
from vlm_micro.config import ImageEntry
from vlm_micro.errors import OutputError, VlmMicroError
from vlm_micro.io.diagnose import reading_file
from vlm_micro.pipeline.outputs import ImageOutputs, file_signature, write_json, write_parquet, write_png

log = logging.getLogger(__name__)

# Plane keys copied into every tile row, so tables of multi-series or time-lapse
# files record which plane a tile comes from.
PLANE_COLUMNS = ("series", "frame", "projection")


def utc_now() -> str:
    """Return the current time as an ISO 8601 UTC string with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def one_line(text: str, limit: int = 500) -> str:
    """Collapse whitespace and newlines into single spaces and cut at ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def error_message(path: str, exc: BaseException, unexpected: bool, log_hint: str = "") -> str:
    """Build the one-line reason stored in a failed status: the file, then the cause."""
    cause = one_line(str(exc)) or type(exc).__name__
    if unexpected:
        where = f"; traceback in {log_hint}" if log_hint else ""
        cause = f"unexpected {type(exc).__name__}: {cause}{where}"
    if path in cause or os.path.basename(path) in cause:
        return cause
    return one_line(f"{path}: {cause}")


def process_image(entry: ImageEntry, context) -> dict:
    """Label one image and write its outputs; return its status record.

    Parameters
    ----------
    entry : ImageEntry
        The image, its id, its pixel size override and sample sheet metadata.
    context : ShardContext
        Settings, vocabulary and the lazily loaded model of the shard.

    Returns
    -------
    dict
        The status record written to ``status/{image_id}.json``.

    Raises
    ------
    OutputError
        When an output file cannot be written.
    """
    outputs = ImageOutputs(context.out, entry.image_id)
    outputs.remove_stale()
    record = base_record(entry, context)
    start = time.perf_counter()
    try:
        # Pixels are read lazily while tiling, so tifffile's log records name the file here too.
        with reading_file(entry.path):
            tiles, cells, thumbnail = _label_image(entry, context, record)
    except OutputError:
        raise
    except VlmMicroError as exc:
        log.warning("image %s failed: %s", entry.image_id, one_line(str(exc)))
        return _finish_failed(outputs, record, error_message(entry.path, exc, False), start)
    except Exception as exc:  # noqa: BLE001 - one broken image must not stop the shard
        log.exception("image %s (%s) failed with an unexpected error", entry.image_id, entry.path)
        return _finish_failed(outputs, record, error_message(entry.path, exc, True, context.log_hint), start)
    write_parquet(outputs.tiles, tiles)
    if cells is not None:
        write_parquet(outputs.cells, cells)
    write_png(outputs.thumbnail, thumbnail)
    record.update(status="ok", error="", finished=utc_now(), elapsed_s=round(time.perf_counter() - start, 3))
    write_json(outputs.status, record)
    log.info("image %s: %d tiles in %.1f s", entry.image_id, len(tiles), record["elapsed_s"])
    return record


def base_record(entry: ImageEntry, context) -> dict:
    """Return the status fields known before the image is read."""
    vocabulary = context.vocabulary
    return {
        "image_id": entry.image_id,
        "path": entry.path,
        "source": file_signature(entry.path),
        "status": "failed",
        "error": "",
        "info": {},
        "plane": None,
        "qc": {},
        "summary": {},
        "pixel_size_um": entry.pixel_size_um,
        "uncalibrated": None,
        "tile_size_um": None,
        "model": context.model_info(),
        "config_checksum": context.checksum,
        "vocabulary": {
            "checksum": vocabulary.checksum(),
            "classes": list(vocabulary.class_names),
            "anomaly_kinds": list(vocabulary.anomaly_kind_names),
            "colors": vocabulary.colors(),
        },
        "vlm_micro_version": __version__,
        "started": utc_now(),
        "finished": None,
        "elapsed_s": None,
        "metadata": dict(entry.metadata),
        "metadata_columns": list(entry.metadata_columns),
        "n_views": 0,
    }


def _finish_failed(outputs: ImageOutputs, record: dict, message: str, start: float) -> dict:
    record.update(status="failed", error=message, finished=utc_now(), elapsed_s=round(time.perf_counter() - start, 3))
    write_json(outputs.status, record)
    return record


def _label_image(entry: ImageEntry, context, record: dict):
    """Run inspect, open_views, plan_tiles and label_view; fill ``record`` as steps finish."""
    from vlm_micro.io import inspect_image, open_views
    from vlm_micro.labeling import summarize_image
    from vlm_micro.tiling import plan_tiles

    record["info"] = inspect_image(entry.path, context.read_settings)
    views = open_views(entry.path, context.read_settings, pixel_size_um=entry.pixel_size_um)
    if not views:
        raise VlmMicroError(f"{entry.path}: no image plane selected; check read.series and read.frames")
    try:
        return _label_views(entry, context, record, views)
    finally:
        # Views of one file share an open file handle; release it before the next image.
        for view in views:
            view.close()


def _label_views(entry: ImageEntry, context, record: dict, views: list):
    from vlm_micro.labeling import summarize_image
    from vlm_micro.tiling import TileQCAccumulator, apply_tile_qc, plan_tiles

    labeler = context.labeler()
    target_um, tile_px = context.target_pixel_size_um, context.tile_size_px
    tile_tables, cell_tables, qcs = [], [], []
    for view in views:
        # QC is measured on the batches that labelling reads, so each tile is decoded once.
        plan = plan_tiles(view, context.tile_settings, target_um, tile_px, measure_qc=False)
        accumulator = TileQCAccumulator(view, plan.tiles, tile_px)
        predictions = labeler.label_view(view, plan.tiles, tile_px, context.batch_size, on_batch=accumulator.add)
        apply_tile_qc(plan, accumulator.focus, accumulator.saturated_fraction, context.tile_settings)
        tile_tables.append(tile_table(entry.image_id, view.plane, plan.tiles, predictions))
        if plan.cells is not None:
            cell_tables.append(with_plane_columns(plan.cells, entry.image_id, view.plane))
        qcs.append(plan.qc)

    first = views[0]
    tiles = pd.concat(tile_tables, ignore_index=True)
    cells = pd.concat(cell_tables, ignore_index=True) if cell_tables else None
    thumbnail = first.thumbnail(context.tile_settings.thumbnail_px)
    record.update(
        plane={**plane_record(first.plane), "modality": first.modality, "shape": list(first.shape)},
        qc=with_sample_size_warning(merge_qc(qcs)),
        summary=summarize_image(tiles, cells, context.vocabulary),
        pixel_size_um=first.pixel_size_um,
        uncalibrated=first.pixel_size_um is None,
        tile_size_um=tile_size_um(first.pixel_size_um, target_um, tile_px),
        model=context.model_info(),
        n_views=len(views),
    )
    return tiles, cells, thumbnail


def tile_size_um(pixel_size_um: float | None, target_pixel_size_um: float | None, tile_size_px: int) -> float | None:
    """Return the tile side in micrometres, or None for an uncalibrated image."""
    if pixel_size_um is None:
        return None
    return float(tile_size_px * (target_pixel_size_um or pixel_size_um))


def plane_record(plane: dict) -> dict:
    """Return the series, frame and projection of a view's plane dict (None when absent)."""
    return {key: plane.get(key) for key in PLANE_COLUMNS}


def with_plane_columns(table: pd.DataFrame, image_id: str, plane: dict) -> pd.DataFrame:
    """Return ``table`` with image_id, series, frame and projection as its first columns."""
    table = table.reset_index(drop=True).copy()
    values = {"image_id": image_id, **plane_record(plane)}
    for position, (name, value) in enumerate(values.items()):
        if name in table.columns:
            table = table.drop(columns=name)
        table.insert(position, name, pd.Series([value] * len(table), dtype=_plane_dtype(name), index=table.index))
    return table


def _plane_dtype(name: str) -> str:
    return "Int64" if name in ("series", "frame") else "string"


def tile_table(image_id: str, plane: dict, tiles: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Join a tile plan with its predictions, row by row, and add the plane columns."""
    if len(tiles) != len(predictions):
        raise RuntimeError(f"labeler returned {len(predictions)} rows for {len(tiles)} tiles")
    overlap = [name for name in predictions.columns if name in tiles.columns]
    joined = pd.concat([tiles.reset_index(drop=True), predictions.drop(columns=overlap).reset_index(drop=True)], axis=1)
    return with_plane_columns(joined, image_id, plane)


# Below this many labelled tiles, fractions of an image say little about its content.
MIN_TILES_FOR_COMPOSITION = 5


def with_sample_size_warning(qc: dict) -> dict:
    """Add a QC warning when an image has so few labelled tiles that its composition is anecdotal."""
    n_tiles = int(qc.get("n_tiles") or 0)
    if 0 < n_tiles < MIN_TILES_FOR_COMPOSITION:
        warning = (f"only {n_tiles} tile{'s' if n_tiles != 1 else ''} labelled, so the composition and anomaly "
                   f"rate of this image rest on very few tiles; check the pixel size and the foreground threshold")
        qc = {**qc, "warnings": [*(qc.get("warnings") or []), warning]}
    return qc


def merge_qc(qcs: list[dict]) -> dict:
    """Combine the QC dicts of several planes: counts add up, fractions are tile-weighted means."""
    if len(qcs) == 1:
        return dict(qcs[0])
    merged = dict(qcs[0])
    n_tiles = [int(qc.get("n_tiles") or 0) for qc in qcs]
    for key in ("n_tiles", "n_skipped_background"):
        merged[key] = sum(int(qc.get(key) or 0) for qc in qcs)
    for key in ("foreground_fraction", "mean_focus", "saturated_fraction"):
        pairs = [(qc.get(key), weight) for qc, weight in zip(qcs, n_tiles) if qc.get(key) is not None]
        total = sum(weight for _, weight in pairs)
        if pairs:
            merged[key] = sum(value * weight for value, weight in pairs) / total if total else pairs[0][0]
    warnings = []
    for qc in qcs:
        warnings.extend(w for w in qc.get("warnings") or [] if w not in warnings)
    merged["warnings"] = warnings
    merged["uncalibrated"] = any(bool(qc.get("uncalibrated")) for qc in qcs)
    return merged
