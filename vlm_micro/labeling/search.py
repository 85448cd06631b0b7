"""Text search over the tile embeddings stored by a finished run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from vlm_micro.errors import ConfigError, OutputError
from vlm_micro.labeling.zero_shot import encode_texts

log = logging.getLogger(__name__)

TILE_TABLES = Path("tables") / "tiles"
STATUS_DIR = "status"
# Columns copied to the search result when the tile tables have them.
RESULT_COLUMNS = ("image_id", "tile_id", "y", "x", "height", "width", "level", "series", "frame", "cell_id",
                  "cell_type", "cell_type_prob", "anomaly_score", "anomaly_kind")


def tile_tables(results_dir: str | Path) -> list[Path]:
    """Return the per-image tile tables of a results folder, sorted by name."""
    folder = Path(results_dir) / TILE_TABLES
    if not folder.is_dir():
        raise OutputError(f"{folder} not found; {results_dir} is not a finished vlm-micro results folder")
    tables = sorted(folder.glob("*.parquet"))
    if not tables:
        raise OutputError(f"{folder} contains no .parquet tile tables; run the pipeline first")
    return tables


def run_model(results_dir: str | Path) -> tuple[str | None, str | None]:
    """Return the model spec and weights checksum recorded in the run's status files.

    The status key ``model`` is either a spec string or a mapping with ``spec`` and
    ``checksum``. Either value is None when no status file records it.

    Raises
    ------
    ConfigError
        When the images of the run were labelled with different models.
    """
    specs, checksums = set(), set()
    for path in sorted((Path(results_dir) / STATUS_DIR).glob("*.json")):
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("skipping unreadable status file %s (%s)", path, exc)
            continue
        if not isinstance(status, dict):
            continue
        model = status.get("model")
        spec = model.get("spec") if isinstance(model, dict) else model
        checksum = model.get("checksum") if isinstance(model, dict) else status.get("model_checksum")
        if isinstance(spec, str) and spec:
            specs.add(spec)
        if isinstance(checksum, str) and checksum:
            checksums.add(checksum)
    if len(specs) > 1 or len(checksums) > 1:
        found = ", ".join(sorted(specs)) or f"{len(checksums)} different weights"
        raise ConfigError(f"images in {results_dir} were labelled with different models ({found}); pass --model SPEC")
    return (specs.pop() if specs else None), (checksums.pop() if checksums else None)


def search_tiles(results_dir: str | Path, query: str, loaded_model, top: int = 10,
                 templates: list[str] | None = None) -> pd.DataFrame:
    """Find the tiles whose stored embeddings best match a text query.

    Parameters
    ----------
    results_dir : str or Path
        Results folder of a finished run, with ``tables/tiles/*.parquet`` holding an
        ``embedding`` column.
    query : str
        Free text, for example ``"mitotic figure"``.
    loaded_model : LoadedModel
        Must be the model that produced the stored embeddings.
    top : int
        Number of tiles to return.
    templates : list of str, optional
        Templates with one ``{}``. When given, the query embedding is the normalised
        mean over the query inserted into each template.

    Returns
    -------
    DataFrame with up to ``top`` rows, best first: ``rank``, ``score`` (cosine
    similarity) and the tile columns of :data:`RESULT_COLUMNS` that the tables have.
    """
    if not query or not query.strip():
        raise ConfigError("search query is empty; give a phrase such as 'mitotic figure'")
    if top < 1:
        raise ConfigError(f"--top is {top}; it must be at least 1")
    text = _query_embedding(loaded_model, query.strip(), templates)
    best = []
    for path in tile_tables(results_dir):
        part = _score_table(path, text, top)
        if part is not None:
            best.append(part)
            best = [pd.concat(best).nlargest(top, "score")]
    if not best:
        raise OutputError(f"no tile embeddings found in {Path(results_dir) / TILE_TABLES}; the tables have no 'embedding' column or no rows")
    result = best[0].sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    result.insert(0, "rank", np.arange(1, len(result) + 1))
    return result


def _query_embedding(loaded_model, query: str, templates) -> np.ndarray:
    prompts = [template.format(query) for template in templates] if templates else [query]
    embeddings = encode_texts(loaded_model, prompts).numpy().mean(axis=0)
    return (embeddings / np.linalg.norm(embeddings)).astype(np.float32)


def _score_table(path: Path, text: np.ndarray, top: int) -> pd.DataFrame | None:
    names = set(pq.read_schema(path).names)
    if "embedding" not in names:
        log.warning("tile table %s has no embedding column; skipped", path)
        return None
    columns = [name for name in RESULT_COLUMNS if name in names]
    table = pd.read_parquet(path, columns=columns + ["embedding"])
    if len(table) == 0:
        return None
    embeddings = np.stack(table["embedding"].to_numpy()).astype(np.float32)
    if embeddings.shape[1] != text.shape[0]:
        raise ConfigError(
            f"{path} stores {embeddings.shape[1]}-dimensional embeddings but the model produces {text.shape[0]}; "
            f"search with the model the run used (--model SPEC)"
        )
    norms = np.linalg.norm(embeddings, axis=1)
    table = table.drop(columns="embedding")
    table["score"] = embeddings @ text / np.where(norms > 0, norms, 1.0)
    if "image_id" not in table:
        table.insert(0, "image_id", path.stem)
    return table.nlargest(top, "score")
