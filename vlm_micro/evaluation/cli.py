"""The ``vlm-micro evaluate`` subcommand."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add ``evaluate`` to the ``vlm-micro`` parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="measure a model's zero-shot labels against annotated tiles",
        description=(
            "Label every annotated tile as the pipeline does and write OUT/metrics.json (accuracy, balanced "
            "accuracy, macro-F1, per-class precision and recall, anomaly AUROC, expected calibration error), "
            "OUT/predictions.parquet, OUT/confusion_matrix.png and OUT/index.html."
        ),
    )
    parser.add_argument("--model", metavar="SPEC", help="model spec (default: evaluate.model of the config, builtin:demo)")
    parser.add_argument("--annotations", metavar="CSV_OR_FOLDER", help="annotations (default: evaluate.annotations)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: evaluate.out)")
    parser.add_argument("--config", metavar="FILE", help="workflow config (default: config/config.yaml when present)")
    parser.add_argument("--labels", metavar="FILE", help="vocabulary (default: the config's labels)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: the config's model.device)")
    parser.add_argument("--batch-size", type=int, default=256, help="tiles per forward pass (default: 256)")
    parser.add_argument("--include-uncorrected", action="store_true",
                        help="run tables only: also count predicted labels of rows without a correction")
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Handle ``vlm-micro evaluate``; prints headline metrics as ``name: value`` lines."""
    from vlm_micro.errors import ConfigError
    from vlm_micro.evaluation.evaluate import evaluate_model, write_evaluation
    from vlm_micro.model import DEFAULT_SPEC, load_model
    from vlm_micro.training.annotations import load_annotations
    from vlm_micro.training.cli import load_labels, read_config, read_settings_from

    config = read_config(args.config)
    section = dict(config.get("evaluate") or {})
    spec = args.model or section.get("model") or DEFAULT_SPEC
    annotations = args.annotations or section.get("annotations")
    out = args.out or section.get("out") or "results/evaluation"
    if not annotations:
        raise ConfigError("no annotations given; pass --annotations CSV_OR_FOLDER or set evaluate.annotations in the config")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size is {args.batch_size}; it must be >= 1")
    device = args.device or (config.get("model") or {}).get("device") or "auto"

    vocabulary = load_labels(args.labels, config)
    table = load_annotations(annotations, vocabulary, args.include_uncorrected)
    loaded = load_model(spec, device=device)
    metrics, predictions = evaluate_model(loaded, vocabulary, table, read_settings_from(config), args.batch_size,
                                          progress=True, label_settings=config.get("labeling"))
    metrics["annotations"] = str(annotations)
    path = write_evaluation(out, metrics, predictions)
    for key in ("n_tiles", "accuracy", "balanced_accuracy", "macro_f1", "anomaly_auroc", "ece"):
        value = metrics.get(key)
        print(f"{key}: {'n/a' if value is None else round(value, 4) if isinstance(value, float) else value}")
    print(f"metrics: {Path(path).resolve()}")
    print(f"report: {(Path(out) / 'index.html').resolve()}")
    return 0
