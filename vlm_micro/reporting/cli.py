"""Subcommands ``report`` (per-image reports and exports) and ``summarize`` (run summary)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the ``report`` and ``summarize`` subcommands."""
    report = subparsers.add_parser(
        "report",
        help="write the HTML and PDF report, GeoJSON and label map of images of a finished run",
        description="Write reports/{id}.html, reports/{id}.pdf, exports/{id}.geojson and "
        "exports/{id}_labels.ome.tif from the stored results of a run. The model is not rerun.",
    )
    report.add_argument("--results", required=True, type=Path, metavar="OUT",
                        help="output folder of the run (contains status/, tables/, thumbs/)")
    report.add_argument("--image-id", nargs="+", metavar="ID", dest="image_ids",
                        help="images to report on (default: every image with a status file)")
    _add_config_argument(report)
    report.set_defaults(func=run_report)

    summarize = subparsers.add_parser(
        "summarize",
        help="write images.tsv, conditions.tsv, the merged tables and index.html of a finished run",
        description="Summarise the images of a run: OUT/images.tsv, OUT/conditions.tsv, "
        "OUT/tables/tiles.parquet (and cells.parquet), OUT/index.html. Without --image-list or "
        "--image-id, every image with a status file in OUT is included, also those left by "
        "earlier runs on the same folder with other images.",
    )
    summarize.add_argument("--results", required=True, type=Path, metavar="OUT",
                           help="output folder of the run")
    images = summarize.add_mutually_exclusive_group()
    images.add_argument("--image-list", nargs="+", type=Path, metavar="JSON", dest="image_lists",
                        help="JSON files that name the images to include, in order: a list of image ids, or an "
                        "object whose 'images' entries have an 'image_id' (the shard files and manifests of the "
                        "workflow). An image without a status file is listed as failed")
    images.add_argument("--image-id", nargs="+", metavar="ID", dest="image_ids",
                        help="images to include, in order")
    _add_config_argument(summarize)
    summarize.set_defaults(func=run_summarize)


def _add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="CFG",
                        help="configuration of the run (default: OUT/config.yaml when present, else built-in "
                        "defaults). Its report, labeling and read sections are used")


def load_report_config(config_path: Path | None, results_dir: Path) -> dict:
    """Load and validate the configuration, defaulting to the copy saved in the results folder."""
    from vlm_micro.config import load_config

    if config_path is None:
        saved = results_dir / "config.yaml"
        if not saved.is_file():
            log.info("no --config given and %s not found, so default report settings are used", saved)
            return {}
        config_path = saved
    return load_config(config_path, check_files=False, check_settings=False)


def run_report(args: argparse.Namespace) -> int:
    """Handle ``vlm-micro report``: write the outputs of each image and print the HTML paths."""
    from vlm_micro.reporting import list_image_ids, write_image_report

    config = load_report_config(args.config, args.results)
    image_ids = args.image_ids or list_image_ids(args.results)
    for image_id in image_ids:
        paths = write_image_report(args.results, image_id, config)
        print(paths["html"])
    return 0


def run_summarize(args: argparse.Namespace) -> int:
    """Handle ``vlm-micro summarize``: write the run tables and index.html and print its path."""
    from vlm_micro.reporting import read_image_list, write_run_summary

    config = load_report_config(args.config, args.results)
    # An id given twice would give two rows in images.tsv and its tiles twice in tiles.parquet.
    image_ids = list(dict.fromkeys(args.image_ids)) if args.image_ids else args.image_ids
    if args.image_lists:
        image_ids = list(dict.fromkeys(image_id for path in args.image_lists for image_id in read_image_list(path)))
    paths = write_run_summary(args.results, config, image_ids)
    print(paths["index"])
    return 0
