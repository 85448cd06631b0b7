"""Per-image reports, exports and run summaries, made from the pipeline's stored results.

``write_image_report`` writes ``reports/{id}.html`` (self-contained), ``reports/{id}.pdf``
(one A4 page), ``exports/{id}.geojson`` (QuPath) and ``exports/{id}_labels.ome.tif``
(label map with a JSON sidecar). ``write_run_summary`` writes ``images.tsv``,
``conditions.tsv``, ``tables/tiles.parquet`` (and ``tables/cells.parquet``) and
``index.html``. Neither reruns the model.

The names below are imported on first use, so that importing the subcommand module
``vlm_micro.reporting.cli`` does not load matplotlib and pandas.
"""

from __future__ import annotations

from vlm_micro.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "ImageResult": "vlm_micro.reporting.results",
    "ResultsError": "vlm_micro.reporting.results",
    "list_image_ids": "vlm_micro.reporting.results",
    "load_image_result": "vlm_micro.reporting.results",
    "read_image_list": "vlm_micro.reporting.results",
    "ReportSettings": "vlm_micro.reporting.settings",
    "report_paths": "vlm_micro.reporting.image_report",
    "write_image_report": "vlm_micro.reporting.image_report",
    "write_run_summary": "vlm_micro.reporting.run_report",
})
