"""Contrastive (CLIP) training of an open_clip model on labelled tiles.

The loop trains both towers with two CLIP losses: tiles against cell type captions and
tiles against anomaly state captions, the same two softmaxes that zero-shot labelling
computes. Every caption of a tile's cell type (or state) in the batch counts as a
positive (see :func:`multi_positive_clip_loss`). It samples tiles balanced by class, augments them, and uses AdamW with a linear warm-up and
a cosine decay. After each epoch it scores the validation tiles zero-shot, writes a
checkpoint atomically and stops early when the validation score stops improving.

For a fixed seed the result on CPU is the same on every run with the same torch version
and thread count: all random draws come from generators seeded per epoch, and torch
runs with deterministic algorithms. A run resumed from its checkpoint continues with
the same draws, so it ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F

from vlm_micro.errors import ConfigError
from vlm_micro.labeling.vocabulary import Vocabulary
from vlm_micro.labeling.zero_shot import tiles_to_tensor
from vlm_micro.training import checkpoint as checkpoints
from vlm_micro.training.augment import AugmentSettings, augment_tiles
from vlm_micro.training.captions import CaptionBank, positive_mask, sample_captions
from vlm_micro.training.data import TileData, sampling_weights

log = logging.getLogger(__name__)

MAX_LOGIT_SCALE = math.log(100.0)  # open_clip's clamp of the learned log logit scale
SELECTION_METRICS = ("macro_f1", "macro_f1+auroc")


@dataclass(frozen=True)
class TrainSettings:
    """Recipe of a contrastive training run."""

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-4
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05  # of all steps, linear warm-up before the cosine decay
    steps_per_epoch: int | None = None  # None: training tiles / batch size, rounded up
    lock_image: bool = False
    lock_text: bool = False
    patience: int = 3  # epochs without a better validation score before stopping
    selection_metric: str = "macro_f1"  # or "macro_f1+auroc": their mean
    state_loss_weight: float = 1.0  # weight of the anomaly state loss next to the cell type loss
    anomaly_share: float = 0.5  # share of samples balanced over anomaly states
    augment: bool = True
    grad_clip_norm: float = 1.0
    seed: int = 0

    @classmethod
    def from_dict(cls, section: dict | None) -> "TrainSettings":
        """Build settings from a config mapping; unknown keys and invalid values raise ConfigError."""
        section = dict(section or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"unknown training setting {unknown[0]!r}; known settings: {', '.join(sorted(known))}")
        settings = cls(**section)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid value."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate}
        for name, value in positive.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"training setting {name} is {value!r}; it must be a positive number")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"training setting steps_per_epoch is {self.steps_per_epoch!r}; use a positive integer or null")
        if self.state_loss_weight < 0:
            raise ConfigError(f"training setting state_loss_weight is {self.state_loss_weight!r}; it must be >= 0")
        for name in ("warmup_fraction", "anomaly_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"training setting {name} is {getattr(self, name)!r}; it must be between 0 and 1")
        if self.patience < 1:
            raise ConfigError(f"training setting patience is {self.patience!r}; it must be >= 1")
        if self.selection_metric not in SELECTION_METRICS:
            raise ConfigError(f"training setting selection_metric is {self.selection_metric!r}; use one of {SELECTION_METRICS}")
        if self.lock_image and self.lock_text:
            raise ConfigError("lock_image and lock_text are both set, so nothing would be trained; unlock one tower")


@dataclass
class TrainResult:
    """Outcome of :func:`train_contrastive`, after which the model has the best weights."""

    best_epoch: int  # 0-based epoch whose weights were kept
    best_score: float
    history: list[dict] = field(default_factory=list)  # one entry per epoch
    stopped_early: bool = False
    seconds: float = 0.0  # training time of this call, validation included


def multi_positive_clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, positives: torch.Tensor,
                             logit_scale: torch.Tensor) -> torch.Tensor:
    """Compute the symmetric CLIP loss with several positives per row and column.

    Parameters
    ----------
    image_features : (n_images, dim) tensor, L2-normalised
    text_features : (n_texts, dim) tensor, L2-normalised
    positives : (n_images, n_texts) bool tensor
        True where the caption describes the image. Every row and column needs one.
    logit_scale : scalar tensor
        Multiplier of the cosine similarities.

    Notes
    -----
    The targets are uniform over the positives of each row (image to text) and each
    column (text to image). With exactly one positive per row and column this is the
    ordinary CLIP loss. Several tiles of one class in a batch share a caption group, and
    one-hot targets would push them apart.
    """
    logits = logit_scale * image_features @ text_features.T
    targets = positives.float()
    image_to_text = -(targets / targets.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    text_to_image = -(targets.T / targets.T.sum(1, keepdim=True) * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


def set_trainable(model, lock_image: bool, lock_text: bool) -> None:
    """Freeze the image tower, the text tower, or neither; the logit scale stays trainable."""
    for name, parameter in model.named_parameters():
        if name == "logit_scale":
            parameter.requires_grad_(True)
        elif name.startswith("visual."):
            parameter.requires_grad_(not lock_image)
        else:
            parameter.requires_grad_(not lock_text)


def make_optimizer(model, settings: TrainSettings) -> torch.optim.AdamW:
    """AdamW over trainable parameters; gains, biases and the logit scale get no weight decay."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        exempt = parameter.ndim < 2 or "bias" in name or "ln" in name or "logit_scale" in name
        (no_decay if exempt else decay).append(parameter)
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": settings.weight_decay}]
    return torch.optim.AdamW(groups, lr=settings.learning_rate, betas=(0.9, 0.98), eps=1e-6)


def make_scheduler(optimizer, total_steps: int, warmup_fraction: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first steps, then cosine decay to zero at ``total_steps``."""
    warmup = max(1, int(round(warmup_fraction * total_steps)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_contrastive(loaded, vocabulary: Vocabulary, bank: CaptionBank, train: TileData, val: TileData,
                      settings: TrainSettings, checkpoint_dir=None, progress: bool = False, on_step=None) -> TrainResult:
    """Train ``loaded.model`` contrastively and keep the weights of the best validation epoch.

    Parameters
    ----------
    loaded : LoadedModel
        Model, tokenizer and preprocessing; the model is changed in place.
    vocabulary : Vocabulary
        Prompts for the zero-shot validation score.
    bank : CaptionBank
        Captions built from ``vocabulary`` with ``loaded.tokenizer``.
    train, val : TileData
        Tiles of disjoint images.
    settings : TrainSettings
    checkpoint_dir : path, optional
        Where ``last.pt`` is written after each epoch and resumed from when present.
    progress : bool
        Show a tqdm progress bar over the steps of each epoch.
    on_step : callable, optional
        Called as ``on_step(epoch, step)`` after each optimizer step (tests use it to
        interrupt a run).

    Returns
    -------
    TrainResult
    """
    started = time.perf_counter()
    model = loaded.model.to(loaded.device)
    set_trainable(model, settings.lock_image, settings.lock_text)
    steps = settings.steps_per_epoch or max(1, math.ceil(len(train) / settings.batch_size))
    optimizer = make_optimizer(model, settings)
    scheduler = make_scheduler(optimizer, steps * settings.epochs, settings.warmup_fraction)
    fingerprint = training_fingerprint(model, settings, train, val, bank)
    state = None
    if checkpoint_dir is not None:
        state = checkpoints.load_checkpoint(checkpoint_dir, fingerprint, model, optimizer, scheduler)
    state = state or checkpoints.TrainState()
    weights = torch.from_numpy(sampling_weights(train, settings.anomaly_share))

    with deterministic_algorithms():
        for epoch in range(state.next_epoch, settings.epochs):
            if state.finished:
                break
            epoch_started = time.perf_counter()
            loss = _train_epoch(loaded, bank, train, weights, settings, epoch, steps, optimizer, scheduler,
                                progress, on_step)
            scores = validation_scores(loaded, vocabulary, val)
            _record_epoch(state, model, settings, epoch, loss, scores, scheduler.get_last_lr()[0],
                          time.perf_counter() - epoch_started)
            if checkpoint_dir is not None:
                checkpoints.save_checkpoint(checkpoint_dir, fingerprint, state, model, optimizer, scheduler)

    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    model.eval()
    stopped_early = state.finished and state.next_epoch < settings.epochs
    return TrainResult(state.best_epoch, state.best_score, state.history, stopped_early, time.perf_counter() - started)


def _record_epoch(state, model, settings, epoch, loss, scores, learning_rate, seconds) -> None:
    """Update the best weights, the early-stopping counter and the history; log one line."""
    score = selection_score(scores, settings.selection_metric)
    improved = math.isnan(score) or score > state.best_score
    if improved:
        state.best_score = score if not math.isnan(score) else state.best_score
        state.best_epoch = epoch
        state.best_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        state.epochs_without_improvement = 0
    else:
        state.epochs_without_improvement += 1
    entry = {"epoch": epoch + 1, "loss": loss, "learning_rate": learning_rate, "seconds": round(seconds, 2),
             "score": None if math.isnan(score) else score, **scores}
    state.history.append(entry)
    state.next_epoch = epoch + 1
    state.finished = state.next_epoch >= settings.epochs or state.epochs_without_improvement >= settings.patience
    log.info(
        "epoch %d/%d: loss %.4f, validation macro-F1 %s, anomaly AUROC %s, lr %.2e, %.1f s%s",
        epoch + 1, settings.epochs, loss, _format(scores.get("macro_f1")), _format(scores.get("anomaly_auroc")),
        learning_rate, seconds, " (best)" if improved else "",
    )
    if state.finished and state.next_epoch < settings.epochs:
        log.info("early stop after epoch %d: no better validation score for %d epochs", epoch + 1, settings.patience)


def _format(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def selection_score(scores: dict, metric: str) -> float:
    """Return the early-stopping score: macro-F1, or its mean with anomaly AUROC; NaN if neither exists."""
    f1 = scores.get("macro_f1")
    auroc = scores.get("anomaly_auroc")
    values = [f1] if metric == "macro_f1" else [f1, auroc]
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values and auroc is not None:
        values = [auroc]
    return float(np.mean(values)) if values else float("nan")


def _train_epoch(loaded, bank, train, weights, settings, epoch, steps, optimizer, scheduler, progress, on_step) -> float:
    """Run one epoch of ``steps`` optimizer steps and return the mean loss."""
    from tqdm.auto import tqdm

    seed = settings.seed * 100_003 + epoch
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    indices = torch.multinomial(weights, steps * settings.batch_size, replacement=True, generator=generator)
    indices = indices.view(steps, settings.batch_size).numpy()
    tiles = torch.from_numpy(train.tiles)
    model = loaded.model
    model.train()
    if settings.lock_image:
        model.visual.eval()
    losses = []
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{settings.epochs}", unit="step", disable=not progress, leave=False)
    for step in bar:
        rows = indices[step]
        batch = tiles[rows]
        if settings.augment:
            batch = augment_tiles(batch, generator, AugmentSettings())
        images = tiles_to_tensor(batch.numpy(), loaded.image_size, loaded.mean, loaded.std).to(loaded.device)
        captions = sample_captions(bank, train.class_index[rows], train.state_index[rows],
                                   [train.modalities[k] for k in rows], rng)
        losses.append(_optimizer_step(loaded, bank, train, rows, images, captions, settings, optimizer, scheduler))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if on_step is not None:
            on_step(epoch, step)
    return float(np.mean(losses))


def _optimizer_step(loaded, bank, train, rows, images, captions, settings, optimizer, scheduler) -> float:
    """Take one AdamW step on the cell type loss plus the weighted anomaly state loss."""
    model = loaded.model
    class_captions, state_captions = captions
    unique = np.unique(np.concatenate([class_captions, state_captions]))
    unique = unique[unique >= 0]
    with torch.set_grad_enabled(not settings.lock_image):
        image_features = model.encode_image(images, normalize=True)
    with torch.set_grad_enabled(not settings.lock_text):
        text_features = model.encode_text(bank.tokens[torch.from_numpy(unique)].to(loaded.device), normalize=True)
    scale = model.logit_scale.exp()
    class_index = torch.from_numpy(train.class_index[rows])
    state_index = torch.from_numpy(train.state_index[rows])
    caption_groups = bank.groups[torch.from_numpy(unique)]
    positives = positive_mask(caption_groups, class_index, state_index, bank.n_classes).to(loaded.device)
    is_class_caption = (caption_groups < bank.n_classes).to(loaded.device)
    class_index, state_index = class_index.to(loaded.device), state_index.to(loaded.device)

    loss = image_features.new_zeros(())
    parts = ((class_index >= 0, is_class_caption, 1.0), (state_index >= 0, ~is_class_caption, settings.state_loss_weight))
    for image_rows, caption_columns, weight in parts:
        if weight > 0 and image_rows.any() and caption_columns.any():
            loss = loss + weight * multi_positive_clip_loss(
                image_features[image_rows], text_features[caption_columns],
                positives[image_rows][:, caption_columns], scale)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(trainable, settings.grad_clip_norm)
    optimizer.step()
    scheduler.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
    return float(loss.detach())


def validation_scores(loaded, vocabulary: Vocabulary, data: TileData, batch_size: int = 256) -> dict:
    """Score tiles zero-shot: macro-F1 and accuracy of cell types, AUROC of the anomaly score.

    Metrics whose labels are missing in ``data`` are None.
    """
    from vlm_micro.evaluation.metrics import classification_metrics, roc_auc
    from vlm_micro.evaluation.predict import zero_shot_scores

    scores = zero_shot_scores(loaded, vocabulary, data.tiles, data.modalities, batch_size)
    out = {"macro_f1": None, "accuracy": None, "anomaly_auroc": None}
    labelled = data.class_index >= 0
    if labelled.any():
        names = np.asarray(vocabulary.class_names, dtype=object)
        predicted = names[np.argmax(scores.class_similarity[labelled], axis=1)]
        metrics = classification_metrics(names[data.class_index[labelled]], predicted, list(vocabulary.class_names))
        out["macro_f1"], out["accuracy"] = metrics["macro_f1"], metrics["accuracy"]
    known = data.anomaly >= 0
    if known.any():
        out["anomaly_auroc"] = roc_auc(data.anomaly[known] == 1, scores.anomaly_score[known])
    return out


def training_fingerprint(model, settings: TrainSettings, train: TileData, val: TileData, bank: CaptionBank) -> str:
    """Return a SHA-256 of the initial weights, settings, labels, image ids and captions.

    A checkpoint is resumed only when this fingerprint matches, so a changed base model,
    recipe or annotation set starts a new run instead of continuing an unrelated one.
    """
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for data in (train, val):
        digest.update(data.class_index.tobytes())
        digest.update(data.state_index.tobytes())
        digest.update("\n".join(map(str, data.image_ids)).encode())
        digest.update(str(data.tiles.shape).encode())
    digest.update("\n".join(bank.captions).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def deterministic_algorithms():
    """Switch torch to deterministic algorithms (warning where none exists), then restore."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
