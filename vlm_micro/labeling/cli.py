"""The ``vlm-micro search`` subcommand: text search over the tiles of a finished run."""

from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the ``search`` subcommand to the ``vlm-micro`` parser."""
    parser = subparsers.add_parser(
        "search",
        help="list the tiles of a finished run that best match a text query",
        description=(
            "Encode QUERY with the run's model and rank every tile of RESULTS by the cosine "
            "similarity of its stored embedding (tables/tiles/*.parquet) to the query."
        ),
    )
    parser.add_argument("results", metavar="RESULTS", help="results folder of a finished run")
    parser.add_argument("query", metavar="QUERY", help='text to search for, for example "mitotic figure"')
    parser.add_argument("--top", type=int, default=10, help="number of tiles to list (default: 10)")
    parser.add_argument("--model", metavar="SPEC",
                        help="model spec that encodes the query (default: the model recorded in RESULTS/status/*.json)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line instead of a table")
    parser.set_defaults(func=run_search)


def run_search(args: argparse.Namespace) -> int:
    """Handle ``vlm-micro search`` and print the matching tiles to stdout."""
    from vlm_micro.labeling.search import run_model, search_tiles, tile_tables
    from vlm_micro.model import DEFAULT_SPEC, load_model

    tile_tables(args.results)  # a folder that is not a results folder fails here, before any model warning
    recorded_spec, recorded_checksum = run_model(args.results)
    spec = args.model or recorded_spec
    if spec is None:
        log.warning("no model recorded in %s/status; encoding the query with %s", args.results, DEFAULT_SPEC)
        spec = DEFAULT_SPEC
    loaded = load_model(spec, device=args.device)
    if recorded_checksum and loaded.checksum != recorded_checksum:
        log.warning("the weights of %s differ from those that labelled %s; similarity scores may not be meaningful",
                    spec, args.results)
    result = search_tiles(args.results, args.query, loaded, top=args.top)
    if args.json:
        # Missing values (NaN, pandas NA) become JSON null.
        records = result.astype(object).where(result.notna(), None).to_dict(orient="records")
        for record in records:
            print(json.dumps(record, default=_json_default))
    else:
        result.to_csv(sys.stdout, sep="\t", index=False, float_format="%.4f")
    return 0


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)
