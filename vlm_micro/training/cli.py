"""The ``vlm-micro finetune`` and ``vlm-micro train-demo`` subcommands."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add ``finetune`` and ``train-demo`` to the ``vlm-micro`` parser."""
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune an open_clip model contrastively on annotated tiles",
        description=(
            "Fine-tune a model on annotations (a CSV/TSV/parquet table, a folder per class, or the per-tile "
            "table of an earlier run with corrected label columns), ensemble it with the base model (WiSE-FT), "
            "calibrate it and write an open_clip local-dir model folder with a model card. Values not given on "
            "the command line come from the finetune section of the config."
        ),
    )
    parser.add_argument("--base", metavar="SPEC", help="model to start from (default: finetune.base, builtin:demo)")
    parser.add_argument("--annotations", metavar="CSV_OR_FOLDER", help="annotations (default: finetune.annotations)")
    parser.add_argument("--out", metavar="DIR", help="output model folder (default: finetune.out)")
    parser.add_argument("--config", metavar="FILE", help="workflow config (default: config/config.yaml when present)")
    parser.add_argument("--labels", metavar="FILE", help="vocabulary (default: the config's labels)")
    parser.add_argument("--epochs", type=int, help="maximum passes over the training tiles")
    parser.add_argument("--batch-size", type=int, help="tiles per optimisation step")
    parser.add_argument("--learning-rate", type=float, help="peak AdamW learning rate")
    parser.add_argument("--seed", type=int, help="seed of the split, sampling and augmentation")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--val-fraction", type=float, help="share of images held out for validation (default 0.25)")
    parser.add_argument("--reference-annotations", metavar="CSV_OR_FOLDER",
                        help="annotated tiles of the base model's domain, never trained on; WiSE-FT alpha is capped so "
                             "their macro-F1 drops by at most --max-reference-drop")
    parser.add_argument("--max-reference-drop", type=float, help="largest allowed macro-F1 drop on the reference tiles (default 0.03)")
    parser.add_argument("--lock-image", action="store_true", help="freeze the image tower")
    parser.add_argument("--lock-text", action="store_true", help="freeze the text tower")
    parser.add_argument("--include-uncorrected", action="store_true",
                        help="run tables only: also train on predicted labels of rows without a correction")
    parser.add_argument("--no-resume", action="store_true", help="ignore a checkpoint left by an interrupted run")
    parser.set_defaults(func=run_finetune)

    demo = subparsers.add_parser(
        "train-demo",
        help="train the bundled demo model from scratch on synthetic data",
        description=(
            "Generate synthetic training data, train a small open_clip model from scratch, calibrate it, "
            "evaluate it on held-out synthetic images and write the model folder with its model card."
        ),
    )
    demo.add_argument("--out", metavar="DIR", required=True, help="model folder to write, e.g. vlm_micro/models/demo")
    demo.add_argument("--seed", type=int, default=None,
                      help="seed of the synthetic training data and the training (default: 1000)")
    demo.add_argument("--n-images", type=int, default=None, help="synthetic training images (default: 240)")
    demo.add_argument("--epochs", type=int, default=None, help="maximum training epochs (default: 24)")
    demo.add_argument("--eval-seed", type=int, default=None, help="seed of the held-out evaluation images (default: 7)")
    demo.add_argument("--eval-images", type=int, default=None, help="held-out evaluation images (default: 40)")
    demo.add_argument("--work-dir", metavar="DIR", default=None,
                      help="folder for synthetic data and checkpoints (default: .cache/train-demo)")
    demo.add_argument("--threads", type=int, default=None,
                      help="torch CPU threads (default: 2); the weights are reproducible for the same thread count")
    demo.add_argument("--labels", metavar="FILE", help="vocabulary (default: config/labels.yaml)")
    demo.set_defaults(func=run_train_demo)


def read_config(path: str | None) -> dict:
    """Load the workflow config, or return {} when no path is given and the default file is absent."""
    from vlm_micro.config import DEFAULT_CONFIG, load_config

    if path is None:
        if not Path("config/config.yaml").is_file() and not DEFAULT_CONFIG.is_file():
            return {}
        path = "config/config.yaml" if Path("config/config.yaml").is_file() else DEFAULT_CONFIG
    return load_config(path, base_dir=Path.cwd(), check_files=False, check_settings=False)


def load_labels(labels: str | None, config: dict):
    """Load the vocabulary from ``labels``, the config's ``labels`` key, or the source tree's default."""
    from vlm_micro.config import REPO_ROOT
    from vlm_micro.labeling.vocabulary import load_vocabulary

    path = labels or config.get("labels")
    if path is None or (not labels and not Path(path).is_file()):
        path = REPO_ROOT / "config" / "labels.yaml"
    return load_vocabulary(path)


def read_settings_from(config: dict):
    """Return the reader settings of the config's ``read`` section (defaults without one)."""
    from vlm_micro.io import ReadSettings

    return ReadSettings.from_dict(config.get("read") or {})


def run_finetune(args: argparse.Namespace) -> int:
    """Handle ``vlm-micro finetune``; prints the output folder and the validation metrics."""
    from vlm_micro.training.finetune import FinetuneSettings, finetune

    _show_training_log()
    config = read_config(args.config)
    section = dict(config.get("finetune") or {})
    overrides = {
        "base": args.base, "annotations": args.annotations, "out": args.out, "epochs": args.epochs,
        "batch_size": args.batch_size, "learning_rate": args.learning_rate, "seed": args.seed,
        "device": args.device, "val_fraction": args.val_fraction,
        "reference_annotations": args.reference_annotations, "max_reference_drop": args.max_reference_drop,
    }
    section.update({key: value for key, value in overrides.items() if value is not None})
    # Flags switch a setting on (resume: off); without the flag the config's value stays.
    for flag in ("lock_image", "lock_text", "include_uncorrected"):
        if getattr(args, flag):
            section[flag] = True
    if args.no_resume:
        section["resume"] = False
    settings = FinetuneSettings.from_dict(section)
    summary = finetune(settings, load_labels(args.labels, config), read_settings_from(config), progress=True)
    after, before = summary["validation_after"], summary["validation_before"]
    print(f"model: {Path(settings.out).resolve()}")
    print(f"wise_ft_alpha: {summary['wise_ft']['alpha']:.2f}")
    for key in ("macro_f1", "anomaly_auroc", "ece"):
        print(f"validation_{key}_before: {_format(before.get(key))}")
        print(f"validation_{key}_after: {_format(after.get(key))}")
    if "reference" in summary:
        print(f"reference_macro_f1_before: {_format(summary['reference']['before'].get('macro_f1'))}")
        print(f"reference_macro_f1_after: {_format(summary['reference']['after'].get('macro_f1'))}")
    return 0


def run_train_demo(args: argparse.Namespace) -> int:
    """Handle ``vlm-micro train-demo``; prints the model folder and its held-out metrics."""
    from vlm_micro.training.demo import DemoSettings, train_demo

    _show_training_log()
    overrides = {"seed": args.seed, "n_images": args.n_images, "epochs": args.epochs,
                 "eval_seed": args.eval_seed, "eval_images": args.eval_images, "work_dir": args.work_dir, "threads": args.threads}
    settings = DemoSettings.from_dict({key: value for key, value in overrides.items() if value is not None})
    meta = train_demo(args.out, settings, load_labels(args.labels, {}), progress=True)
    print(f"model: {Path(args.out).resolve()}")
    print(json.dumps({key: meta[key] for key in sorted(meta) if key.startswith("heldout")}, indent=2))
    return 0


def _format(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _show_training_log() -> None:
    """Show the per-epoch log lines even without -v (the CLI shows warnings only by default)."""
    for name in ("vlm_micro.training", "vlm_micro.evaluation"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
