"""Write the run-level outputs: images.tsv, conditions.tsv, merged tables, index.html."""

from __future__ import annotations

import logging
from pathlib import Path

from vlm_micro.atomic import write_text
from vlm_micro.reporting.index_page import render_index
from vlm_micro.reporting.results import list_image_ids
from vlm_micro.reporting.settings import ReportSettings
from vlm_micro.reporting.summary import (
    build_conditions_table, build_images_table, load_results, merge_tables, run_vocabulary, write_merged_table,
    write_tsv,
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
    results = load_results(results_dir, ids)
    images = build_images_table(results)
    conditions = build_conditions_table(images)
    paths = {"images": results_dir / "images.tsv", "conditions": results_dir / "conditions.tsv"}
    write_tsv(images, paths["images"])
    write_tsv(conditions, paths["conditions"])

    table_files = ["images.tsv", "conditions.tsv"]
    for kind in ("tiles", "cells"):
        merged = merge_tables(results_dir, kind, ids)
        if merged is None and kind == "cells":
            continue
        if merged is None:
            merged = _empty_tiles_table()
        written = write_merged_table(merged, results_dir / "tables" / f"{kind}.parquet", settings.csv)
        paths[kind] = written[0]
        if len(written) > 1:
            paths[f"{kind}_csv"] = written[1]
        table_files += [str(path.relative_to(results_dir)) for path in written]

    classes, _ = run_vocabulary(results)
    colors = {}
    for result in results:
        colors.update({name: color for name, color in result.colors().items() if name not in colors})
    paths["index"] = results_dir / "index.html"
    write_text(paths["index"], render_index(images, conditions, classes, colors, table_files))
    log.info("summarised %d images (%d failed): %s", len(images), int((images["status"] != "ok").sum()),
             paths["index"])
    return paths


def _empty_tiles_table():
    import pandas as pd

    return pd.DataFrame({"image_id": pd.Series(dtype=str), "tile_id": pd.Series(dtype="int64")})
