"""Write the run-level outputs: images.tsv, conditions.tsv, merged tables, index.html."""

from __future__ import annotations

import logging
from pathlib import Path

from vlm_micro.atomic import write_text
from vlm_micro.reporting.index_page import render_index
from vlm_micro.reporting.results import list_image_ids
from vlm_micro.reporting.settings import ReportSettings
from vlm_micro.reporting.summary import (
    build_conditions_table, build_images_table, run_vocabulary, summarise_run, write_tsv,
)

log = logging.getLogger(__name__)


def write_run_summary(results_dir: str | Path, config: dict | None = None,
                      image_ids: list[str] | None = None) -> dict[str, Path]:
    """Summarise a run from its stored per-image results.

    Parameters
    ----------
    results_dir : str or Path
        Output folder of the run.
    config : dict, optional
        The run's configuration. ``report.csv`` adds CSV copies of the merged tables.
    image_ids : list of str, optional
        Images to include, in this order. Default: every image with a status file,
        which includes images that earlier runs on the same folder left behind.

    Returns
    -------
    dict of Path
        ``images``, ``conditions``, ``tiles``, ``index`` and, when written, ``cells``,
        ``tiles_csv`` and ``cells_csv``.

    Notes
    -----
    An image whose status file is missing or unreadable is listed as failed with the
    reason, so the summary always has one row per image.
    """
    results_dir = Path(results_dir)
    settings = ReportSettings.from_config(config)
    ids = list(image_ids) if image_ids is not None else list_image_ids(results_dir)
    summaries, table_paths = summarise_run(results_dir, ids, settings.csv)
    images = build_images_table(summaries)
    conditions = build_conditions_table(images)
    paths = {"images": results_dir / "images.tsv", "conditions": results_dir / "conditions.tsv"}
    write_tsv(images, paths["images"])
    write_tsv(conditions, paths["conditions"])
    paths.update(table_paths)
    # Listed in the order written: tiles.parquet, tiles.csv, cells.parquet, cells.csv.
    table_files = ["images.tsv", "conditions.tsv"] + [str(path.relative_to(results_dir)) for path in table_paths.values()]

    classes, _ = run_vocabulary(summaries)
    colors = {}
    for summary in summaries:
        colors.update({name: color for name, color in summary.colors.items() if name not in colors})
    paths["index"] = results_dir / "index.html"
    write_text(paths["index"], render_index(images, conditions, classes, colors, table_files))
    log.info("summarised %d images (%d failed): %s", len(images), int((images["status"] != "ok").sum()),
             paths["index"])
    return paths

