"""The ``vlm-micro synth`` subcommand: write a synthetic dataset with ground truth."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the ``synth`` subcommand to the ``vlm-micro`` parser."""
    parser = subparsers.add_parser(
        "synth",
        help="write synthetic microscopy images with ground truth and a tile annotation table",
        description=(
            "Render synthetic fields of view at 0.5 um/px as OME-TIFF: a grid of 64 x 64 px blocks, "
            "each one cell type or empty, some with anomalies. Writes DIR/images, DIR/truth "
            "(instance labels and cell tables), DIR/annotations.csv (one row per annotated block) "
            "and DIR/synth.json. The same arguments give byte-identical files."
        ),
    )

    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created when missing)")
    parser.add_argument("--n-images", required=True, type=int, metavar="N", help="number of images to render")
    parser.add_argument("--seed", required=True, type=int, metavar="S", help="dataset seed (integer >= 0)")

    parser.add_argument(
        "--modality",
        choices=("fluorescence", "brightfield", "mixed"),
        default="mixed",
        help="fluorescence nuclear stain, brightfield, or mixed: alternating, fluorescence first (default: mixed)",
    )
    parser.add_argument(
        "--stain",
        choices=("he", "ihc"),
        default="he",
        help="brightfield stain: he (haematoxylin and eosin) or ihc (haematoxylin and DAB) (default: he)",
    )
    parser.add_argument(
        "--size", type=int, default=512, metavar="PX", help="image side in pixels, a multiple of 64 (default: 512)"
    )
    parser.add_argument(
        "--anomaly-fraction",
        type=float,
        default=0.2,
        metavar="P",
        help="probability that an annotated block carries an anomaly, 0 to 1 (default: 0.2)",
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="YAML",
        help="vocabulary whose cell types and anomaly kinds are drawn (default: the project's config/labels.yaml)",
    )

    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="processes rendering in parallel (default: 1)"
    )
    parser.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    """Render the dataset with a progress bar and print where the annotation table is."""
    from tqdm import tqdm

    from vlm_micro.synth.dataset import generate_dataset

    with tqdm(total=args.n_images, unit="image", desc="synth", disable=None) as bar:
        annotations = generate_dataset(
            args.out,
            args.n_images,
            args.seed,
            modality=args.modality,
            stain=args.stain,
            size_px=args.size,
            anomaly_fraction=args.anomaly_fraction,
            labels=args.labels,
            n_workers=args.workers,
            progress=lambda done: bar.update(done - bar.n),
        )
    n_anomalous = int(annotations["anomaly"].sum())
    print(f"wrote {args.n_images} images, {len(annotations)} annotated tiles ({n_anomalous} anomalous)")
    print(f"annotations: {args.out}/annotations.csv")
    return 0
