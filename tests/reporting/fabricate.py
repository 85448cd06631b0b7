"""Fabricated pipeline results for the reporting tests.

Writes the files the pipeline stores per image (status JSON, tile table, cell table,
thumbnail, and a source image that can be reopened) following the results layout that
:mod:`vlm_micro.reporting.results` reads, with predictions made up from a fixed seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from vlm_micro.labeling.vocabulary import load_vocabulary

REPO = Path(__file__).resolve().parents[2]
VOCABULARY = load_vocabulary(REPO / "config" / "labels.yaml")
CLASSES = VOCABULARY.class_names
KINDS = VOCABULARY.anomaly_kind_names
TILE = 64
PIXEL_SIZE_UM = 0.5
PROMPTS = "a micrograph of blurry out-of-focus cells.;an image of cells with debris and dust particles.;an image of normal cells."


def source_image(rows: int, cols: int, seed: int) -> np.ndarray:
    """Return a dark fluorescence-like RGB image with bright blobs in every 64-px block."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 20, size=(rows, cols, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    for by in range(0, rows - TILE + 1, TILE):
        for bx in range(0, cols - TILE + 1, TILE):
            if rng.random() < 0.2:
                continue
            for _ in range(3):
                cy, cx, radius = rng.uniform(12, 52), rng.uniform(12, 52), rng.uniform(5, 9)
                blob = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
                image[by : by + TILE, bx : bx + TILE][blob] = (40, 90 + int(rng.integers(0, 100)), 230)
    return image


def predictions(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Return made-up prediction columns for ``n`` tiles in the labeller's format."""
    logits = rng.normal(size=(n, len(CLASSES))) * 2.0
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    order = np.argsort(-probabilities, axis=1)
    best = probabilities[np.arange(n), order[:, 0]]
    margin = best - probabilities[np.arange(n), order[:, 1]]
    scores = rng.beta(1.2, 4.0, size=n)
    scores[: max(1, n // 8)] = rng.uniform(0.6, 0.95, size=max(1, n // 8))
    anomalous = scores >= 0.5
    kinds = np.where(anomalous, rng.choice(KINDS, size=n), "")
    frame = pd.DataFrame({
        "cell_type": [CLASSES[i] for i in order[:, 0]],
        "cell_type_prob": best,
        "cell_type_top3": [";".join(f"{CLASSES[i]}:{probabilities[r, i]:.2f}" for i in order[r, :3]) for r in range(n)],
        "cell_type_margin": margin,
        "uncertain": (best < 0.5) | (margin < 0.1),
    })
    for index, name in enumerate(CLASSES):
        frame[f"prob_{name}"] = probabilities[:, index]
    frame["anomaly_score"] = scores
    frame["anomaly_zero_shot"] = scores
    frame["anomaly_few_shot"] = np.nan
    frame["anomaly_kind"] = kinds
    frame["anomaly_kind_prob"] = np.where(anomalous, rng.uniform(0.3, 0.9, size=n), np.nan)
    frame["is_anomalous"] = anomalous
    frame["top_anomaly_prompts"] = PROMPTS
    frame["embedding"] = [rng.normal(size=8).astype(np.float32) for _ in range(n)]
    return frame


def grid_tiles(rows: int, cols: int, rng: np.random.Generator) -> pd.DataFrame:
    """Return a grid tile plan with every fifth tile skipped as background."""
    boxes = [(y, x) for y in range(0, rows, TILE) for x in range(0, cols, TILE)]
    keep = [box for index, box in enumerate(boxes) if index % 5 != 3]
    n = len(keep)
    return pd.DataFrame({
        "tile_id": np.arange(n, dtype=np.int64),
        "y": [box[0] for box in keep],
        "x": [box[1] for box in keep],
        "height": TILE,
        "width": TILE,
        "level": 0,
        "is_edge": [box[0] + TILE > rows or box[1] + TILE > cols for box in keep],
        "placement": "grid",
        "cell_id": pd.array([pd.NA] * n, dtype="Int64"),
        "foreground_fraction": rng.uniform(0.2, 1.0, size=n),
        "focus": rng.uniform(10, 300, size=n),
        "saturated_fraction": rng.uniform(0, 0.01, size=n),
        "qc_flags": ["out_of_focus" if i % 7 == 0 else "" for i in range(n)],
    })


def cell_tiles(rows: int, cols: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return a cells placement: cell-centred tiles and the matching cell table."""
    n = 24
    centroid_y = rng.uniform(10, rows - 10, size=n)
    centroid_x = rng.uniform(10, cols - 10, size=n)
    area = rng.uniform(40, 300, size=n)
    cells = pd.DataFrame({
        "cell_id": np.arange(n, dtype=np.int64),
        "centroid_y": centroid_y,
        "centroid_x": centroid_x,
        "area_px": area,
        "area_um2": area * PIXEL_SIZE_UM**2,
        "mean_intensity": rng.uniform(0.3, 0.9, size=n),
        "eccentricity": rng.uniform(0.0, 0.8, size=n),
        "tile_id": pd.array(np.arange(n), dtype="Int64"),
    })
    tiles = pd.DataFrame({
        "tile_id": np.arange(n, dtype=np.int64),
        "y": np.floor(centroid_y + 0.5 - TILE / 2).astype(np.int64),
        "x": np.floor(centroid_x + 0.5 - TILE / 2).astype(np.int64),
        "height": TILE,
        "width": TILE,
        "level": 0,
        "is_edge": False,
        "placement": "cells",
        "cell_id": pd.array(np.arange(n), dtype="Int64"),
        "foreground_fraction": rng.uniform(0.2, 1.0, size=n),
        "focus": rng.uniform(10, 300, size=n),
        "saturated_fraction": 0.0,
        "qc_flags": "",
    })
    return tiles, cells


def status_record(image_id: str, path: str, rows: int, cols: int, pixel_size_um, metadata: dict) -> dict:
    """Return an ok status record in the pipeline's format."""
    return {
        "image_id": image_id,
        "path": path,
        "status": "ok",
        "error": "",
        "info": {"format": "PNG", "axes": "YXS", "shape": [rows, cols, 3], "dtype": "uint8", "series": 1,
                 "pixel_size_um": pixel_size_um,
                 "channels": [{"index": 0, "name": "red"}, {"index": 1, "name": "green"},
                              {"index": 2, "name": "blue"}],
                 "levels": [{"shape": [rows, cols], "downsample": 1.0, "native": True}]},
        "plane": {"series": 0, "frame": None, "projection": None},
        "qc": {"n_tiles": 0, "n_skipped_background": 4, "foreground_fraction": 0.42, "mean_focus": 120.5,
               "saturated_fraction": 0.001, "warnings": [], "uncalibrated": pixel_size_um is None},
        "summary": {},
        "pixel_size_um": pixel_size_um,
        "uncalibrated": pixel_size_um is None,
        "tile_size_um": TILE * PIXEL_SIZE_UM if pixel_size_um else None,
        "model": {"spec": "builtin:demo", "name": "vlm-micro-demo", "checksum": "ab" * 32},
        "config_checksum": "cd" * 32,
        "vocabulary": {"checksum": VOCABULARY.checksum(), "classes": CLASSES, "anomaly_kinds": KINDS,
                       "colors": VOCABULARY.colors()},
        "vlm_micro_version": "0.1.0",
        "started": "2025-01-01T10:00:00+00:00",
        "finished": "2025-01-01T10:00:05+00:00",
        "elapsed_s": 5.2,
        "metadata": metadata,
        "n_views": 1,
    }


def write_image(out: Path, image_id: str, *, placement: str = "grid", seed: int = 0, rows: int = 256,
                cols: int = 320, pixel_size_um: float | None = PIXEL_SIZE_UM, metadata: dict | None = None,
                file_name: str | None = None, write_source: bool = True) -> dict:
    """Write the stored results of one processed image below ``out``; return its status record."""
    rng = np.random.default_rng(seed)
    rgb = source_image(rows, cols, seed)
    source = out.parent / "images" / (file_name or f"{image_id}.png")
    if write_source:
        source.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(source, format="PNG")
    if placement == "cells":
        tiles, cells = cell_tiles(rows, cols, rng)
    else:
        tiles, cells = grid_tiles(rows, cols, rng), None
    tiles = pd.concat([tiles, predictions(len(tiles), rng)], axis=1)
    tiles.insert(0, "image_id", image_id)
    tiles.insert(1, "series", pd.array([0] * len(tiles), dtype="Int64"))
    tiles.insert(2, "frame", pd.array([pd.NA] * len(tiles), dtype="Int64"))
    tiles.insert(3, "projection", pd.array([pd.NA] * len(tiles), dtype="string"))

    status = status_record(image_id, str(source), rows, cols, pixel_size_um, metadata or {})
    status["qc"]["n_tiles"] = len(tiles)
    _write_files(out, image_id, status, tiles, cells, rgb)
    return status


def _write_files(out: Path, image_id: str, status: dict, tiles: pd.DataFrame, cells, rgb: np.ndarray) -> None:
    (out / "status").mkdir(parents=True, exist_ok=True)
    (out / "tables" / "tiles").mkdir(parents=True, exist_ok=True)
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    (out / "status" / f"{image_id}.json").write_text(json.dumps(status, indent=2), encoding="utf-8")
    tiles.to_parquet(out / "tables" / "tiles" / f"{image_id}.parquet", index=False)
    if cells is not None:
        (out / "tables" / "cells").mkdir(parents=True, exist_ok=True)
        cells.insert(0, "image_id", image_id)
        cells.insert(1, "series", pd.array([0] * len(cells), dtype="Int64"))
        cells.insert(2, "frame", pd.array([pd.NA] * len(cells), dtype="Int64"))
        cells.insert(3, "projection", pd.array([pd.NA] * len(cells), dtype="string"))
        cells.to_parquet(out / "tables" / "cells" / f"{image_id}.parquet", index=False)
    # The thumbnail is half the size of the image, like the pipeline's for larger images.
    Image.fromarray(rgb[::2, ::2]).save(out / "thumbs" / f"{image_id}.png", format="PNG")


def write_failed(out: Path, image_id: str, error: str, metadata: dict | None = None, path: str = "") -> dict:
    """Write the status of an image that failed before labelling."""
    status = status_record(image_id, path or f"/data/{image_id}.tif", 0, 0, None, metadata or {})
    status.update(status="failed", error=error, info={}, plane=None, qc={}, summary={}, pixel_size_um=None,
                  uncalibrated=None, tile_size_um=None, finished="2025-01-01T10:00:01+00:00", elapsed_s=0.1)
    (out / "status").mkdir(parents=True, exist_ok=True)
    (out / "status" / f"{image_id}.json").write_text(json.dumps(status, indent=2), encoding="utf-8")
    return status


# A file name and sample-sheet value that would run script if a page did not escape them.
MARKUP_ID = "<img src=x onerror=alert(1)>"
MARKUP_FILE = MARKUP_ID + ".png"
MARKUP_REPLICATE = "<script>alert(2)</script>"
FAILED_ERROR = "broken.tif: not a TIFF file <b>bad magic</b>; check the file"


def fabricate_run(out: Path) -> dict[str, dict]:
    """Write four processed images and one failed image below ``out`` and return their status records."""
    return {
        "tissue_a": write_image(out, "tissue_a", seed=0, metadata={"condition": "control", "replicate": "1"}),
        "tissue_b": write_image(out, "tissue_b", seed=1, pixel_size_um=None,
                                metadata={"condition": "treated", "replicate": "1"}),
        "cells_c": write_image(out, "cells_c", seed=2, placement="cells",
                               metadata={"condition": "treated", "replicate": "2"}),
        MARKUP_ID: write_image(out, MARKUP_ID, seed=3, file_name=MARKUP_FILE,
                               metadata={"condition": "control", "replicate": MARKUP_REPLICATE}),
        "broken": write_failed(out, "broken", FAILED_ERROR, metadata={"condition": "control", "replicate": "3"}),
    }
