"""Evaluate a model on annotated tiles: predictions, metrics, a confusion matrix and a report.

Tiles are read through the pipeline's reader (:mod:`vlm_micro.training.tiles`) and
labelled as the pipeline labels them (:func:`vlm_micro.evaluation.predict.predict_tiles`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vlm_micro.evaluation.metrics import classification_metrics, expected_calibration_error, roc_auc
from vlm_micro.evaluation.predict import predict_tiles
from vlm_micro.labeling.vocabulary import Vocabulary

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.parquet"
CONFUSION_FILE = "confusion_matrix.png"
REPORT_FILE = "index.html"


def evaluate_model(loaded, vocabulary: Vocabulary, table: pd.DataFrame, read_settings=None,
                   batch_size: int = 256, progress: bool = False, label_settings: dict | None = None,
                   ) -> tuple[dict, pd.DataFrame]:
    """Label every annotated tile with ``loaded`` and compute metrics against the annotations.

    Parameters
    ----------
    loaded : LoadedModel
    vocabulary : Vocabulary
    table : pandas.DataFrame
        Standard annotation table (:func:`vlm_micro.training.annotations.load_annotations`).
    read_settings : ReadSettings, optional
    batch_size : int
        Tiles per forward pass.
    progress : bool
        Show a progress bar while reading tiles.
    label_settings : dict, optional
        The config's ``labeling`` section, passed to the labeller.

    Returns
    -------
    metrics : dict
        See :func:`compute_metrics`, plus ``model`` (spec, name, checksum) and ``seconds``.
    predictions : pandas.DataFrame
        The annotation table with the predicted columns added (``cell_type_pred``,
        ``cell_type_prob``, ``prob_<class>``, ``anomaly_score``, ``anomaly_kind_pred``).
    """
    from vlm_micro.training.tiles import read_annotation_tiles

    started = time.perf_counter()
    tiles, modalities = read_annotation_tiles(table, loaded.image_size, read_settings, progress)
    predicted = predict_tiles(loaded, vocabulary, tiles, modalities, batch_size, label_settings=label_settings)
    predictions = table.reset_index(drop=True).copy()
    predictions["modality"] = modalities
    predicted = predicted.rename(columns={"cell_type": "cell_type_pred", "anomaly_kind": "anomaly_kind_pred"})
    predictions = pd.concat([predictions, predicted.reset_index(drop=True)], axis=1)
    metrics = compute_metrics(predictions, vocabulary)
    metrics["model"] = {"spec": loaded.spec, "name": loaded.name, "checksum": loaded.checksum,
                        "temperature": loaded.temperature}
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    log.info("evaluated %d tiles: macro-F1 %s, anomaly AUROC %s", len(predictions),
             metrics["macro_f1"], metrics["anomaly_auroc"])
    return metrics, predictions


def compute_metrics(predictions: pd.DataFrame, vocabulary: Vocabulary) -> dict:
    """Compute cell type, calibration and anomaly metrics from a predictions table.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Columns ``cell_type`` (truth, '' when unlabelled), ``cell_type_pred``,
        ``cell_type_prob``, ``anomaly`` (1, 0 or <NA>), ``anomaly_score``, and
        optionally ``anomaly_kind`` (truth), ``anomaly_kind_pred`` and ``modality``.

    Returns
    -------
    dict
        Tile counts: ``n_tiles``, ``n_cell_type_tiles``, ``n_anomaly_tiles``. Cell
        types: ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``per_class``
        (precision, recall, f1, support), ``labels``, ``confusion_matrix`` (rows true)
        and ``ece`` (15 bins). Anomalies: ``anomaly_auroc`` and
        ``anomaly_kind_accuracy``, the share of anomalous tiles of a named kind that
        are predicted with that kind. ``per_modality`` has macro-F1 and AUROC per
        modality. Metrics without labels are None.
    """
    out = {"n_tiles": int(len(predictions))}
    truth = predictions["cell_type"].fillna("").astype(str)
    labelled = (truth != "").to_numpy()
    out["n_cell_type_tiles"] = int(labelled.sum())
    out.update(_cell_type_metrics(predictions[labelled], vocabulary))

    anomaly = predictions["anomaly"].astype("Int64")
    known = anomaly.notna().to_numpy()
    out["n_anomaly_tiles"] = int(known.sum())
    out["anomaly_auroc"] = _auroc(predictions[known])
    out["anomaly_kind_accuracy"] = _kind_accuracy(predictions)
    out["per_modality"] = {}
    if "modality" in predictions.columns:
        for modality, part in predictions.groupby("modality"):
            part_labelled = (part["cell_type"].fillna("") != "").to_numpy()
            part_f1 = _cell_type_metrics(part[part_labelled], vocabulary)["macro_f1"]
            out["per_modality"][str(modality)] = {
                "n_tiles": int(len(part)),
                "macro_f1": part_f1,
                "anomaly_auroc": _auroc(part[part["anomaly"].astype("Int64").notna().to_numpy()]),
            }
    return out


def _cell_type_metrics(labelled: pd.DataFrame, vocabulary: Vocabulary) -> dict:
    empty = {"accuracy": None, "balanced_accuracy": None, "macro_f1": None, "per_class": {},
             "labels": list(vocabulary.class_names), "confusion_matrix": None, "ece": None}
    if labelled.empty:
        return empty
    metrics = classification_metrics(labelled["cell_type"].astype(str), labelled["cell_type_pred"].astype(str),
                                      list(vocabulary.class_names))
    correct = (labelled["cell_type"].astype(str) == labelled["cell_type_pred"].astype(str)).to_numpy()
    metrics["ece"] = expected_calibration_error(labelled["cell_type_prob"].to_numpy(dtype=float), correct)
    metrics.pop("n")
    return metrics


def _auroc(part: pd.DataFrame) -> float | None:
    if part.empty:
        return None
    return roc_auc(part["anomaly"].astype(int).to_numpy() == 1, part["anomaly_score"].to_numpy(dtype=float))


def _kind_accuracy(predictions: pd.DataFrame) -> float | None:
    if "anomaly_kind" not in predictions.columns or "anomaly_kind_pred" not in predictions.columns:
        return None
    named = (predictions["anomaly"].astype("Int64") == 1).fillna(False).to_numpy()
    named &= (predictions["anomaly_kind"].fillna("") != "").to_numpy()
    if not named.any():
        return None
    part = predictions[named]
    return float((part["anomaly_kind"] == part["anomaly_kind_pred"]).mean())


def clean_for_json(value):
    """Replace NaN and infinities by None and numpy scalars by Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): clean_for_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_for_json(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


def write_evaluation(out_dir: str | Path, metrics: dict, predictions: pd.DataFrame) -> Path:
    """Write metrics.json, predictions.parquet, confusion_matrix.png and index.html atomically.

    Returns
    -------
    Path
        The path of ``metrics.json``.
    """
    from vlm_micro.atomic import atomic_path, write_text
    from vlm_micro.evaluation.report import confusion_figure, render_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = clean_for_json(metrics)
    with atomic_path(out_dir / PREDICTIONS_FILE) as tmp:
        predictions.to_parquet(tmp, index=False)
    has_confusion = metrics.get("confusion_matrix") is not None
    if has_confusion:
        with atomic_path(out_dir / CONFUSION_FILE) as tmp:
            confusion_figure(metrics["confusion_matrix"], metrics["labels"], tmp)
    write_text(out_dir / REPORT_FILE, render_report(metrics, CONFUSION_FILE if has_confusion else None))
    write_text(out_dir / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    return out_dir / METRICS_FILE
