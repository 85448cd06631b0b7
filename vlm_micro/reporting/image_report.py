"""Write all per-image outputs: HTML report, PDF page, GeoJSON and label map."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from vlm_micro.atomic import write_text
from vlm_micro.reporting.context import build_context
from vlm_micro.reporting.exports import (
    write_empty_label_map, write_failed_exports, write_geojson, write_label_map,
)
from vlm_micro.reporting.html_report import render_failed_report, render_report
from vlm_micro.reporting.pdf_report import write_failed_pdf, write_pdf
from vlm_micro.reporting.results import load_image_result
from vlm_micro.reporting.settings import ReportSettings

log = logging.getLogger(__name__)


def report_paths(results_dir: str | Path, image_id: str) -> dict[str, Path]:
    """Return the paths of every per-image output, keyed html, pdf, geojson, labels, labels_json."""
    results_dir = Path(results_dir)
    return {
        "html": results_dir / "reports" / f"{image_id}.html",
        "pdf": results_dir / "reports" / f"{image_id}.pdf",
        "geojson": results_dir / "exports" / f"{image_id}.geojson",
        "labels": results_dir / "exports" / f"{image_id}_labels.ome.tif",
        "labels_json": results_dir / "exports" / f"{image_id}_labels.json",
    }


def write_image_report(results_dir: str | Path, image_id: str, config: dict | None = None) -> dict[str, Path]:
    """Write the report and exports of one image from the pipeline's stored results.

    Parameters
    ----------
    results_dir : str or Path
        Output folder of the run (contains ``status/``, ``tables/``, ``thumbs/``).
    image_id : str
        Image to report on.
    config : dict, optional
        The run's configuration. The ``report``, ``labeling`` and ``read`` sections are
        used. Missing sections take their defaults.

    Returns
    -------
    dict of Path
        The files written, keyed as in :func:`report_paths`. ``pdf`` is absent when
        ``report.pdf`` is false.

    Raises
    ------
    ResultsError
        When the image's status file or tile table is missing or unreadable.
    ConfigError
        When the ``report`` or ``labeling`` section is invalid.

    Notes
    -----
    A failed image gets a short report with its error, an empty GeoJSON and a 1 x 1
    background label map, so every image has the same set of output files.
    """
    config = config or {}
    settings = ReportSettings.from_config(config)
    result = load_image_result(results_dir, image_id)
    paths = report_paths(results_dir, image_id)
    if not settings.pdf:
        paths.pop("pdf")

    if not result.ok:
        generated = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        write_text(paths["html"], render_failed_report(result, generated, settings.pdf))
        if settings.pdf:
            write_failed_pdf(result, paths["pdf"], generated)
        write_failed_exports(result, paths["geojson"], paths["labels"])
        log.info("wrote failure report of %s: %s", image_id, paths["html"])
        return paths

    ctx = build_context(result, settings, config.get("read"))
    write_text(paths["html"], render_report(ctx))
    if settings.pdf:
        write_pdf(ctx, paths["pdf"])
    n_features = write_geojson(result, ctx.view["tiles"], paths["geojson"])
    if ctx.raster is not None:
        write_label_map(result, ctx.view["tiles"], ctx.raster, paths["labels"])
    else:
        log.warning("image size of %s unknown, so its label map is left empty", image_id)
        write_empty_label_map(result, paths["labels"], "image size unknown, no labels")
    log.info("wrote report of %s (%d features): %s", image_id, n_features, paths["html"])
    return paths
