"""Fine-tune any open_clip model on annotated tiles and write it as a model folder.

Steps:

1. check the annotation tables, load the base model and read the tiles through the
   pipeline's reader;
2. split by image and score the base model on the validation images;
3. train contrastively (:mod:`vlm_micro.training.contrastive`);
4. ensemble the weights with the base model at the alpha that validation prefers
   (WiSE-FT), optionally capped by reference tiles of the base model's domain;
5. fit the softmax temperatures on the validation images;
6. write an open_clip ``local-dir:`` folder with ``vlm_micro.json``, ``MODEL_CARD.md``
   and ``training_summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from vlm_micro.errors import AnnotationError, ConfigError, ModelLoadError
from vlm_micro.labeling.vocabulary import Vocabulary
from vlm_micro.training import calibration, wise
from vlm_micro.training.annotations import load_annotations
from vlm_micro.training.captions import build_caption_bank
from vlm_micro.training.contrastive import TrainSettings, selection_score, train_contrastive, validation_scores
from vlm_micro.training.data import TileData, build_tile_data, split_by_image
from vlm_micro.training.tiles import read_annotation_tiles

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
SUMMARY_FILE = "training_summary.json"


@dataclass(frozen=True)
class FinetuneSettings:
    """Settings of a fine-tuning run: base model, annotations, output folder and recipe.

    The fields are the keys of the ``finetune`` section of ``config/config.yaml``.
    """

    base: str = "builtin:demo"
    annotations: str | None = None
    out: str = "results/finetuned"
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-4
    seed: int = 0
    device: str = "auto"
    lock_image: bool = False
    lock_text: bool = False
    val_fraction: float = 0.25  # share of images held out for validation
    patience: int = 3
    weight_decay: float = 0.1
    steps_per_epoch: int | None = None
    alphas: tuple[float, ...] = wise.DEFAULT_ALPHAS  # WiSE-FT weights to sweep
    alpha_tolerance: float = 0.005  # smallest alpha within this of the best score wins
    reference_annotations: str | None = None  # base-domain tiles, never trained on, that cap alpha
    max_reference_drop: float = 0.03  # largest macro-F1 loss on the reference tiles that alpha may cost
    include_uncorrected: bool = False  # run tables: keep predicted labels of unreviewed rows
    resume: bool = True  # continue from OUT/checkpoints/last.pt when present

    @classmethod
    def from_dict(cls, section: dict | None) -> "FinetuneSettings":
        """Build settings from a mapping such as the config's ``finetune`` section."""
        section = dict(section or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"unknown finetune setting {unknown[0]!r}; known settings: {', '.join(sorted(known))}")
        if "alphas" in section:
            section["alphas"] = tuple(float(a) for a in section["alphas"])
        settings = cls(**section)
        if not 0.0 < settings.val_fraction < 1.0:
            raise ConfigError(f"finetune setting val_fraction is {settings.val_fraction!r}; it must be between 0 and 1")
        if not 0.0 <= settings.max_reference_drop <= 1.0:
            raise ConfigError(f"finetune setting max_reference_drop is {settings.max_reference_drop!r}; use 0 to 1")
        if not settings.alphas or any(not 0.0 <= a <= 1.0 for a in settings.alphas):
            raise ConfigError(f"finetune setting alphas is {list(settings.alphas)!r}; give weights between 0 and 1")
        settings.train_settings().validate()
        return settings

    def train_settings(self) -> TrainSettings:
        """Return the contrastive training recipe of these settings."""
        return TrainSettings(
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
            weight_decay=self.weight_decay, steps_per_epoch=self.steps_per_epoch, lock_image=self.lock_image,
            lock_text=self.lock_text, patience=self.patience, seed=self.seed,
        )


def finetune(settings: FinetuneSettings, vocabulary: Vocabulary, read_settings=None, progress: bool = False,
             on_step=None) -> dict:
    """Fine-tune ``settings.base`` on ``settings.annotations`` and write ``settings.out``.

    Parameters
    ----------
    settings : FinetuneSettings
    vocabulary : Vocabulary
        Labels and prompts; the captions are built from it.
    read_settings : ReadSettings, optional
        How images are read (as in the pipeline).
    progress : bool
        Show progress bars.
    on_step : callable, optional
        Passed to :func:`train_contrastive`.

    Returns
    -------
    dict
        The training summary also written to ``OUT/training_summary.json``: data
        summary, recipe, history, WiSE-FT sweep and chosen alpha, temperatures, and the
        validation metrics before and after.

    Raises
    ------
    AnnotationError, ModelLoadError, ConfigError
        On unusable annotations, base model or settings.
    """
    from vlm_micro.model import load_model

    if not settings.annotations:
        raise ConfigError("no annotations given; pass --annotations CSV_OR_FOLDER or set finetune.annotations in the config")
    started = time.perf_counter()
    out = Path(settings.out)
    # Loading the model and reading the tiles can take minutes, so both annotation
    # tables are checked first and a mistake in the reference table fails at once.
    check_annotation_paths(settings)
    table = load_annotations(settings.annotations, vocabulary, settings.include_uncorrected)
    reference_table = load_annotations(settings.reference_annotations, vocabulary) if settings.reference_annotations else None
    loaded = load_model(settings.base, device=settings.device)
    train, val = load_split(settings, table, vocabulary, loaded, read_settings, progress)
    reference = load_reference(reference_table, vocabulary, loaded, read_settings, progress)

    before = evaluate_split(loaded, vocabulary, val)
    reference_before = evaluate_split(loaded, vocabulary, reference) if reference else None
    # Training and the sweep score with the learned logit scale; the base model's fitted
    # temperatures belong to its own weights.
    training_view = dataclasses.replace(loaded, meta=without_temperatures(loaded.meta))
    base_state = state_copy(loaded.model)
    result = train_contrastive(training_view, vocabulary, build_caption_bank(vocabulary, loaded.tokenizer), train, val,
                               settings.train_settings(), checkpoint_dir=out / CHECKPOINT_DIR if settings.resume else None,
                               progress=progress, on_step=on_step)
    tuned_state = state_copy(loaded.model)
    sweep = wise.sweep_alphas(loaded.model, base_state, tuned_state, settings.alphas,
                              lambda: sweep_scores(training_view, vocabulary, val, reference))
    floor = None
    if reference_before and reference_before["macro_f1"] is not None:
        floor = reference_before["macro_f1"] - settings.max_reference_drop
    alpha = wise.choose_alpha(sweep, settings.alpha_tolerance, reference_floor=floor)
    if alpha == 0.0:
        log.warning(
            "fine-tuning changed no weights: the validation tiles%s preferred WiSE-FT alpha 0, so %s keeps the base "
            "model's weights and only refits its temperatures; annotate more tiles or images, or raise the learning "
            "rate", " within the reference cap" if floor is not None else "", out,
        )
    loaded.model.load_state_dict(wise.interpolate_state(base_state, tuned_state, alpha))
    temperatures = fit_temperatures(training_view, vocabulary, val)
    calibrated = dataclasses.replace(training_view, meta={**training_view.meta, **temperatures})

    summary = {
        "base_model": {"spec": loaded.spec, "name": loaded.name, "checksum": loaded.checksum},
        "annotations": str(settings.annotations),
        "data": data_summary(table, train, val, vocabulary),
        "recipe": {**dataclasses.asdict(settings.train_settings()), "val_fraction": settings.val_fraction,
                   "alphas": list(settings.alphas), "alpha_tolerance": settings.alpha_tolerance},
        "history": result.history,
        "best_epoch": result.best_epoch + 1,
        "stopped_early": result.stopped_early,
        "wise_ft": {"sweep": sweep, "alpha": alpha},
        "calibration": temperatures,
        "validation_before": before,
        "validation_after": evaluate_split(calibrated, vocabulary, val),
        "train_seconds": round(result.seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    if reference:
        summary["reference"] = {
            "annotations": str(settings.reference_annotations), "tiles": len(reference),
            "max_drop": settings.max_reference_drop, "before": reference_before,
            "after": evaluate_split(calibrated, vocabulary, reference),
        }
    write_finetuned_model(loaded, out, vocabulary, summary, temperatures)
    if settings.resume:
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    return summary


def check_annotation_paths(settings: FinetuneSettings) -> None:
    """Raise AnnotationError naming the option when the annotations or the reference annotations do not exist."""
    paths = (
        ("annotations", settings.annotations, "--annotations or finetune.annotations", ""),
        ("reference annotations", settings.reference_annotations,
         "--reference-annotations or finetune.reference_annotations", ", or leave it unset"),
    )
    for name, value, option, alternative in paths:
        if value and not Path(value).expanduser().exists():
            raise AnnotationError(
                f"{name} not found: {value}; fix {option} to name a CSV, TSV or parquet table "
                f"or a folder with one subfolder per class{alternative}"
            )


def load_split(settings: FinetuneSettings, table, vocabulary: Vocabulary, loaded, read_settings, progress):
    """Read the tiles of an annotation table and split them by image; return (train, val)."""
    tiles, modalities = read_annotation_tiles(table, loaded.image_size, read_settings, progress)
    data = build_tile_data(table, tiles, modalities, vocabulary)
    train_rows, val_rows = split_by_image(data.image_ids, data.class_index, settings.val_fraction, settings.seed)
    return data.subset(train_rows), data.subset(val_rows)


def load_reference(table, vocabulary: Vocabulary, loaded, read_settings, progress):
    """Read the reference tiles of the base model's domain, or return None without a reference table."""
    if table is None:
        return None
    tiles, modalities = read_annotation_tiles(table, loaded.image_size, read_settings, progress)
    return build_tile_data(table, tiles, modalities, vocabulary)


def state_copy(model) -> dict:
    """Return a detached copy of a model's state dict."""
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def without_temperatures(meta: dict) -> dict:
    """Return model metadata without fitted temperatures."""
    return {key: value for key, value in meta.items() if key not in calibration.TEMPERATURE_KEYS}


def evaluate_split(loaded, vocabulary: Vocabulary, data: TileData) -> dict:
    """Return zero-shot macro-F1, accuracy, anomaly AUROC and ECE on labelled tiles."""
    scores = validation_scores(loaded, vocabulary, data)
    scores["ece"] = calibration.class_ece(loaded, vocabulary, data)
    return scores


def sweep_scores(loaded, vocabulary: Vocabulary, data: TileData, reference: TileData | None = None) -> dict:
    """Validation metrics, the ``score`` that :func:`wise.choose_alpha` ranks by, and the reference macro-F1."""
    scores = validation_scores(loaded, vocabulary, data)
    score = selection_score(scores, "macro_f1")
    scores["score"] = None if np.isnan(score) else score
    if reference is not None:
        scores["reference_macro_f1"] = validation_scores(loaded, vocabulary, reference)["macro_f1"]
    return scores


def fit_temperatures(loaded, vocabulary: Vocabulary, data: TileData) -> dict:
    """Fit the class temperature and, when anomaly labels exist, the anomaly temperature."""
    return calibration.fit_model_temperatures(loaded, vocabulary, data)


def data_summary(table, train: TileData, val: TileData, vocabulary: Vocabulary) -> dict:
    """Count tiles, images, cell types, anomaly states and modalities of the annotations."""
    states = ["normal"] + list(vocabulary.anomaly_kind_names)

    def counts(data: TileData) -> dict:
        return {
            "tiles": int(len(data)),
            "images": int(len(set(data.image_ids))),
            "cell_types": {name: int((data.class_index == k).sum()) for k, name in enumerate(vocabulary.class_names)},
            "anomaly_states": {name: int((data.state_index == k).sum()) for k, name in enumerate(states)},
        }

    modalities = table["modality"].replace("", "from image").value_counts()
    return {
        "tiles": int(len(table)),
        "images": int(table["image_path"].nunique()),
        "modalities": {str(k): int(v) for k, v in modalities.items()},
        "train": counts(train),
        "validation": counts(val),
    }


def base_model_config(loaded) -> tuple[dict, dict]:
    """Return the (model_cfg, preprocess_cfg) of the model that ``loaded.spec`` names."""
    import copy

    import open_clip

    from vlm_micro.model.loading import BUILTIN_DIR, CONFIG_FILE, resolve_spec

    kind, value = resolve_spec(loaded.spec)
    preprocess = {"size": loaded.image_size, "mean": list(loaded.mean), "std": list(loaded.std)}
    if kind == "checkpoint":
        config = open_clip.get_model_config(value.split("@", 1)[0])
        if config is None:
            raise ModelLoadError(f"open_clip has no config for {loaded.spec!r}; save the base model as a folder first")
        return copy.deepcopy(config), preprocess
    if kind == "hf-hub":
        from vlm_micro.model.hub import find_hub_model

        folder = find_hub_model(value)[0]
    else:
        folder = BUILTIN_DIR / value if kind == "builtin" else Path(value).expanduser()
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    return config["model_cfg"], {**(config.get("preprocess_cfg") or {}), **preprocess}


def write_finetuned_model(loaded, out: Path, vocabulary: Vocabulary, summary: dict, temperatures: dict) -> Path:
    """Write the fine-tuned weights, ``vlm_micro.json``, the model card and the summary."""
    from vlm_micro.model import save_model_dir
    from vlm_micro.training.model_card import finetune_card

    model_cfg, preprocess_cfg = base_model_config(loaded)
    inherited = {key: loaded.meta[key] for key in ("pixel_size_um", "tile_size_px") if key in loaded.meta}
    meta = {
        **inherited,
        **temperatures,
        "name": out.resolve().name,
        "vocabulary_checksum": vocabulary.checksum(),
        "base_model": summary["base_model"],
        "wise_ft_alpha": summary["wise_ft"]["alpha"],
        "validation_macro_f1": summary["validation_after"].get("macro_f1"),
        "validation_anomaly_auroc": summary["validation_after"].get("anomaly_auroc"),
        "trained_with": "vlm-micro finetune",
    }
    extra = {"MODEL_CARD.md": finetune_card(summary, meta), SUMMARY_FILE: json.dumps(summary, indent=2) + "\n"}
    folder = save_model_dir(loaded.model, model_cfg, out, preprocess_cfg, meta, extra)
    log.info("wrote fine-tuned model to %s (use --model local-dir:%s)", folder, folder)
    return folder
