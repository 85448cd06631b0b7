"""Train the bundled demo model from scratch on synthetic microscopy.

No pretrained open_clip weights can be downloaded where this project is built, so the
demo model is a small CLIP trained here. :data:`DEMO_MODEL_CFG` (a 4-layer ViT on 64 px
tiles and a 2-layer text transformer) learns from synthetic tiles of ``vlm-micro synth``
with captions from ``config/labels.yaml``. It is trained by the same contrastive code
that ``vlm-micro finetune`` uses. The model is then calibrated on validation images
and written as an open_clip ``local-dir:`` folder. Finally it is evaluated on held-out
synthetic images rendered from a seed that training never uses, and the card reports
those numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path

from vlm_micro.errors import ConfigError
from vlm_micro.labeling.vocabulary import Vocabulary
from vlm_micro.training.annotations import load_annotations
from vlm_micro.training.calibration import fit_model_temperatures
from vlm_micro.training.captions import build_caption_bank
from vlm_micro.training.contrastive import TrainSettings, train_contrastive
from vlm_micro.training.data import build_tile_data, split_by_image
from vlm_micro.training.tiles import read_annotation_tiles

log = logging.getLogger(__name__)

DEMO_NAME = "vlm-micro-demo"
PIXEL_SIZE_UM = 0.5  # synthetic images are rendered at 0.5 um/px
TILE_SIZE_PX = 64  # one synthetic annotation block, 32 um across
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# A token embedding of 49408 x 64 in float32 is 12.6 MB, the largest part of the model.
# A text width of 128 would double it and push the folder towards the 30 MB limit.
DEMO_MODEL_CFG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 128, "layers": 4, "head_width": 32, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
DEMO_PREPROCESS = {"size": 64, "mean": list(OPENAI_MEAN), "std": list(OPENAI_STD),
                   "interpolation": "bilinear", "resize_mode": "shortest"}


@dataclass(frozen=True)
class DemoSettings:
    """Data and recipe of the demo model."""

    seed: int = 1000  # synthetic training data and training; held-out data uses eval_seed
    n_images: int = 240  # 512 x 512 px synthetic images, about 60 annotated tiles each
    epochs: int = 24
    batch_size: int = 128
    learning_rate: float = 1e-3
    warmup_fraction: float = 0.05
    patience: int = 5
    val_fraction: float = 0.15
    eval_seed: int = 7
    eval_images: int = 40
    work_dir: str = ".cache/train-demo"
    threads: int = 2  # torch CPU threads; the weights are bit-identical only for the same count

    @classmethod
    def from_dict(cls, values: dict | None) -> "DemoSettings":
        """Build settings from a mapping; unknown keys and invalid values raise ConfigError."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown train-demo setting {unknown[0]!r}; known settings: {', '.join(sorted(known))}")
        settings = cls(**values)
        for name, minimum in (("n_images", 2), ("epochs", 1), ("eval_images", 1), ("threads", 1)):
            if getattr(settings, name) < minimum:
                raise ConfigError(f"train-demo setting {name} is {getattr(settings, name)!r}; use at least {minimum}")
        if settings.eval_seed == settings.seed:
            raise ConfigError(f"train-demo eval_seed equals seed ({settings.seed}); held-out data needs another seed")
        return settings

    def train_settings(self) -> TrainSettings:
        """Return the contrastive training recipe."""
        return TrainSettings(
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
            warmup_fraction=self.warmup_fraction, patience=self.patience, selection_metric="macro_f1+auroc",
            seed=self.seed,
        )


def new_demo_model(seed: int, device: str = "cpu"):
    """Return a freshly initialised demo CLIP wrapped as a LoadedModel (spec ``scratch``)."""
    import open_clip
    import torch

    from vlm_micro.model import LoadedModel

    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**copy.deepcopy(DEMO_MODEL_CFG)).to(device)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=DEMO_MODEL_CFG["text_cfg"]["context_length"])
    return LoadedModel(model=model, tokenizer=tokenizer, spec="scratch", name=DEMO_NAME, checksum="",
                       image_size=DEMO_MODEL_CFG["vision_cfg"]["image_size"], mean=OPENAI_MEAN, std=OPENAI_STD,
                       device=device, meta={})


def synthetic_dataset(folder: Path, n_images: int, seed: int, vocabulary: Vocabulary, stain: str = "he") -> Path:
    """Render a mixed-modality synthetic dataset once and return its annotations.csv.

    Rendering is deterministic, so a folder rendered earlier with the same arguments,
    vocabulary and generator source code (recorded in ``render_stamp.json``) is reused.
    """
    from vlm_micro.atomic import write_text
    from vlm_micro.synth.dataset import generate_dataset

    annotations = folder / "annotations.csv"
    stamp_path = folder / "render_stamp.json"
    stamp = {"n_images": n_images, "seed": seed, "stain": stain, "vocabulary": vocabulary.checksum(),
             "generator": _synth_source_checksum()}
    if annotations.is_file() and stamp_path.is_file():
        if json.loads(stamp_path.read_text(encoding="utf-8")) == stamp:
            return annotations
    log.info("rendering %d synthetic images (seed %d, stain %s) into %s", n_images, seed, stain, folder)
    generate_dataset(folder, n_images, seed, modality="mixed", stain=stain, labels=vocabulary)
    write_text(stamp_path, json.dumps(stamp, indent=2) + "\n")
    return annotations


def _synth_source_checksum() -> str:
    """Return a SHA-256 over the source files of the synthetic data generator."""
    import hashlib

    import vlm_micro.synth

    digest = hashlib.sha256()
    for path in sorted(Path(vlm_micro.synth.__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def train_demo(out: str | Path, settings: DemoSettings, vocabulary: Vocabulary, progress: bool = False,
               on_step=None) -> dict:
    """Train, calibrate, save and evaluate the demo model; return its ``vlm_micro.json`` metadata.

    Parameters
    ----------
    out : path
        Model folder to write (``vlm_micro/models/demo`` for the bundled model).
    settings : DemoSettings
    vocabulary : Vocabulary
        Captions and evaluation prompts; its checksum is recorded in the metadata.
    progress : bool
        Show progress bars.
    on_step : callable, optional
        Passed to :func:`train_contrastive`.
    """
    import torch

    started = time.perf_counter()
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    work = Path(settings.work_dir)
    train_csv = synthetic_dataset(work / f"train-seed{settings.seed}-n{settings.n_images}", settings.n_images,
                                  settings.seed, vocabulary)
    eval_csv = synthetic_dataset(work / f"heldout-seed{settings.eval_seed}-n{settings.eval_images}",
                                 settings.eval_images, settings.eval_seed, vocabulary)

    loaded = new_demo_model(settings.seed)
    table = load_annotations(train_csv, vocabulary)
    tiles, modalities = read_annotation_tiles(table, loaded.image_size, progress=progress)
    data = build_tile_data(table, tiles, modalities, vocabulary)
    train_rows, val_rows = split_by_image(data.image_ids, data.class_index, settings.val_fraction, settings.seed)
    train, val = data.subset(train_rows), data.subset(val_rows)
    bank = build_caption_bank(vocabulary, loaded.tokenizer)
    result = train_contrastive(loaded, vocabulary, bank, train, val, settings.train_settings(),
                               checkpoint_dir=work / f"checkpoints-seed{settings.seed}-threads{settings.threads}",
                               progress=progress,
                               on_step=on_step)
    temperatures = fit_model_temperatures(loaded, vocabulary, val)

    meta = {
        "name": DEMO_NAME,
        "pixel_size_um": PIXEL_SIZE_UM,
        "tile_size_px": TILE_SIZE_PX,
        **temperatures,
        "vocabulary_checksum": vocabulary.checksum(),
        "training_seed": settings.seed,
        "training": {
            "recipe": dataclasses.asdict(settings.train_settings()),
            "data": _data_counts(table, train, val, vocabulary),
            "best_epoch": result.best_epoch + 1,
            "epochs_run": len(result.history),
            "validation": result.history[result.best_epoch] if result.history else {},
            "train_seconds": round(result.seconds, 1),
            "n_captions": len(bank.captions),
            "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
        },
    }
    _save_demo(loaded.model, out, meta)
    meta.update(evaluate_heldout(out, eval_csv, settings, vocabulary))
    meta["training"]["total_seconds"] = round(time.perf_counter() - started, 1)
    _save_demo(loaded.model, out, meta)
    return meta


def _data_counts(table, train, val, vocabulary: Vocabulary) -> dict:
    from vlm_micro.training.finetune import data_summary

    return data_summary(table, train, val, vocabulary)


def _save_demo(model, out, meta: dict) -> None:
    from vlm_micro.model import save_model_dir
    from vlm_micro.training.model_card import demo_card

    from vlm_micro.evaluation.evaluate import clean_for_json

    meta = clean_for_json(meta)
    save_model_dir(model, copy.deepcopy(DEMO_MODEL_CFG), out, dict(DEMO_PREPROCESS), meta,
                   {"MODEL_CARD.md": demo_card(meta, DEMO_MODEL_CFG)})


def evaluate_heldout(folder, annotations_csv: Path, settings: DemoSettings, vocabulary: Vocabulary) -> dict:
    """Evaluate the saved model folder on the held-out synthetic images, as ``vlm-micro evaluate`` does."""
    from vlm_micro.evaluation.evaluate import evaluate_model
    from vlm_micro.model import load_model

    loaded = load_model(f"local-dir:{Path(folder).resolve()}", device="cpu")
    table = load_annotations(annotations_csv, vocabulary)
    metrics, _ = evaluate_model(loaded, vocabulary, table)
    keys = ("macro_f1", "accuracy", "balanced_accuracy", "anomaly_auroc", "ece", "anomaly_kind_accuracy")
    out = {f"heldout_{key}": metrics.get(key) for key in keys}
    out.update(heldout_seed=settings.eval_seed, heldout_images=settings.eval_images, heldout_tiles=metrics["n_tiles"],
               heldout_per_modality=metrics.get("per_modality"), heldout_per_class=metrics.get("per_class"))
    return out
