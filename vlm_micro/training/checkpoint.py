"""Training state and its checkpoint file, written atomically after every epoch.

The checkpoint contains the model, optimizer and scheduler states, the epoch to run next,
the per-epoch history and the best weights so far. It is loaded with
``torch.load(weights_only=True)``, which reads tensors and plain Python values only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vlm_micro.atomic import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "last.pt"


@dataclass
class TrainState:
    """Progress of a training run, saved next to the model, optimizer and scheduler states."""

    next_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_score: float = float("-inf")
    best_epoch: int = -1
    best_state: dict | None = None  # parameter name -> tensor (CPU copy)
    epochs_without_improvement: int = 0
    finished: bool = False


def save_checkpoint(folder: str | Path, fingerprint: str, state: TrainState, model, optimizer, scheduler) -> Path:
    """Write ``folder/last.pt`` atomically and return its path."""
    path = Path(folder) / CHECKPOINT_FILE
    payload = {
        "fingerprint": fingerprint,
        "next_epoch": state.next_epoch,
        "history": state.history,
        "best_score": state.best_score,
        "best_epoch": state.best_epoch,
        "best_state": state.best_state,
        "epochs_without_improvement": state.epochs_without_improvement,
        "finished": state.finished,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(folder: str | Path, fingerprint: str, model, optimizer, scheduler) -> TrainState | None:
    """Restore the states from ``folder/last.pt`` into the given objects.

    Returns
    -------
    TrainState or None
        None when there is no checkpoint, or when it belongs to another run because its
        fingerprint of weights, settings and data differs. The caller then starts afresh,
        and the next checkpoint replaces the old file.
    """
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        log.warning("checkpoint %s cannot be read (%s); training starts from the beginning", path, exc)
        return None
    if payload.get("fingerprint") != fingerprint:
        log.warning("checkpoint %s was written for another base model, settings or data; training starts from the beginning", path)
        return None
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    log.info("resuming from %s at epoch %d", path, payload["next_epoch"] + 1)
    return TrainState(
        next_epoch=int(payload["next_epoch"]),
        history=list(payload["history"]),
        best_score=float(payload["best_score"]),
        best_epoch=int(payload["best_epoch"]),
        best_state=payload["best_state"],
        epochs_without_improvement=int(payload["epochs_without_improvement"]),
        finished=bool(payload["finished"]),
    )
