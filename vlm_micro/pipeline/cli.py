"""Subcommands ``run``, ``demo`` and ``process-shard``.

Exit status of ``run`` and ``demo``: 0 when every image has status ok in ``images.tsv``
(an image with no labelled tile, such as a blank one, is ok with a QC warning), 3 when
the run finished but at least one image failed (``images.tsv`` gives the reason per image). Any
other error (invalid config, locked or read-only results folder, failed workflow)
gives 1. Ctrl-C, SIGTERM and SIGHUP stop snakemake and its jobs, and the status is 128
plus the signal number (130, 143, 129).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vlm_micro.errors import VlmMicroError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_IMAGES_FAILED = 3

# Config keys that command-line options set, named by the option in error messages.
OPTION_SOURCES = {"images": "--images", "sample_sheet": "--sample-sheet", "out": "--out", "model.spec": "--model"}


def register(subparsers) -> None:
    """Add the run, demo and process-shard subcommands."""
    run = subparsers.add_parser(
        "run",
        help="label images with the Snakemake workflow",
        description="Label a folder or glob of images (or a sample sheet) with the workflow and write reports. "
        "Exit status: 0 every image ok (a blank image is ok with a QC warning), 3 some images failed (see OUT/images.tsv), 1 error, "
        "130, 143 or 129 stopped by Ctrl-C, SIGTERM or SIGHUP.",
    )
    # Both options choose the images to label, and the sample sheet would win silently.
    image_source = run.add_mutually_exclusive_group()
    image_source.add_argument(
        "--images", nargs="+", metavar="PATH",
        help="image folders, files or glob patterns (a glob the shell expanded works too); "
        "replaces the config's images and sample_sheet; cannot be combined with --sample-sheet",
    )
    image_source.add_argument(
        "--sample-sheet",
        help="tab-separated sample sheet (columns path, image_id, condition, replicate, pixel_size_um); "
        "replaces the config's sample_sheet, which takes precedence over its images; cannot be combined with --images",
    )
    run.add_argument("--out", help="results folder (required without --config)")
    run.add_argument("--config", help="config YAML (default: config/config.yaml of vlm-micro, paths relative to its repository)")
    run.add_argument("--model", help="model spec, replaces model.spec (builtin:NAME, local-dir:PATH, hf-hub:ORG/NAME, ARCH@FILE)")
    _add_workflow_arguments(run)
    run.set_defaults(func=handle_run)

    demo = subparsers.add_parser(
        "demo",
        help="write demo images and label them with the bundled model",
        description="Write synthetic and scikit-image demo images into --data, label them and print the index page path.",
    )
    demo.add_argument("--out", default="results", help="results folder (default: results)")
    demo.add_argument("--data", default="demo_data", help="folder for the demo images and sample sheet (default: demo_data)")
    demo.add_argument("--model", help="model spec (default: the bundled builtin:demo)")
    _add_workflow_arguments(demo)
    demo.set_defaults(func=handle_demo)

    shard = subparsers.add_parser(
        "process-shard",
        help="label the images of one shard file (called by the workflow)",
        description="Label every image of a shard file written by the workflow and write the shard manifest.",
    )
    shard.add_argument("shard_file", help="shard JSON written by the workflow")
    shard.add_argument("--manifest", required=True, help="path of the manifest JSON written when the shard is done")
    shard.add_argument("--threads", type=positive_int, default=None, help="CPU cores of the shard; torch gets one less when reports are written")
    shard.set_defaults(func=handle_process_shard)


def positive_int(text: str) -> int:
    """Parse a command-line count that must be at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give 1 or more") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1; give 1 or more")
    return value


def _add_workflow_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cores", type=positive_int, default=None, help="CPU cores snakemake may use (default: all)")
    parser.add_argument("--profile", help="workflow profile: default, slurm, or a folder with config.yaml")
    parser.add_argument(
        "snakemake_args", nargs="*", metavar="-- SNAKEMAKE_ARGS",
        help="further snakemake arguments after --, e.g. -- --dry-run",
    )


def _overrides(args) -> dict:
    overrides = {}
    if args.images:
        images = args.images[0] if len(args.images) == 1 else list(args.images)
        overrides.update(images=images, sample_sheet=None)
    if args.sample_sheet:
        overrides["sample_sheet"] = args.sample_sheet
    if args.out:
        overrides["out"] = args.out
    if args.model is not None:  # an empty --model is an error, not the default model
        overrides["model"] = {"spec": args.model}
    return overrides


def handle_run(args) -> int:
    from vlm_micro.config import REPO_ROOT, load_config

    if not args.config and not args.out:
        raise VlmMicroError("--out is required unless --config names a config file with out; pass --out DIR")
    base_dir = Path.cwd() if args.config else REPO_ROOT
    config = load_config(args.config, _overrides(args), base_dir=base_dir, override_sources=OPTION_SOURCES)
    return _run_and_report(config, args)


def handle_demo(args) -> int:
    from vlm_micro.config import REPO_ROOT, load_config
    from vlm_micro.pipeline.demo import write_demo_data

    sheet = write_demo_data(Path(args.data))
    print(f"demo images and sample sheet written to {Path(args.data) / 'images'} and {sheet}", file=sys.stderr)
    overrides = {"sample_sheet": str(sheet.resolve()), "out": str(Path(args.out).resolve())}
    if args.model is not None:  # an empty --model is an error, not the default model
        overrides["model"] = {"spec": args.model}
    config = load_config(None, overrides, base_dir=REPO_ROOT, override_sources={"out": "--out", "model.spec": "--model"})
    return _run_and_report(config, args)


def _run_and_report(config: dict, args) -> int:
    """Check the image list, run the workflow and turn its outcome into an exit status."""
    from vlm_micro.config import list_images
    from vlm_micro.pipeline.run import run_workflow

    image_ids = [entry.image_id for entry in list_images(config)]
    log.info("%d image(s) to label into %s", len(image_ids), config["out"])
    result = run_workflow(config, cores=args.cores, profile=args.profile, extra=args.snakemake_args,
                          image_ids=image_ids)
    out = Path(config["out"])
    if result.returncode != 0:
        _raise_workflow_failure(result, out)
    if result.n_failed:
        print(f"{result.n_failed} of {result.n_images} image(s) failed; the reasons are in {out / 'images.tsv'}", file=sys.stderr)
    if result.index.is_file():
        print(result.index)
    return EXIT_IMAGES_FAILED if result.n_failed else EXIT_OK


def _raise_workflow_failure(result, out: Path) -> None:
    """Raise the error for a failed snakemake run, with the most specific cause found."""
    status = result.returncode
    if result.workflow_error:
        raise VlmMicroError(f"the workflow stopped before any job ran: {result.workflow_error}")
    if result.job_error:
        raise VlmMicroError(
            f"the workflow failed (snakemake exit status {status}); first job error: {result.job_error}; "
            f"see the messages above and the job logs in {out / 'logs'}"
        )
    if result.snakemake_error:
        # No job wrote an error, for example when sbatch rejected every job or the
        # workflow itself failed, so the cause is only in snakemake's log.
        raise VlmMicroError(
            f"the workflow failed (snakemake exit status {status}); snakemake: {result.snakemake_error}; "
            f"see the messages above and snakemake's log {result.snakemake_log}"
        )
    raise VlmMicroError(
        f"the workflow failed (snakemake exit status {status}); see the messages above and the job logs in {out / 'logs'}"
    )


def handle_process_shard(args) -> int:
    from vlm_micro.pipeline.shard import process_shard

    manifest = process_shard(args.shard_file, args.manifest, threads=args.threads)
    print(f"{manifest['shard']}: {manifest['n_ok']} ok, {manifest['n_failed']} failed, {manifest['n_reused']} reused", file=sys.stderr)
    return EXIT_OK
