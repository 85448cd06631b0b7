"""Text search over stored tile embeddings, as a library call and as `vlm-micro search`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vlm_micro.cli import main
from vlm_micro.errors import ConfigError, OutputError
from vlm_micro.labeling import search_tiles
from vlm_micro.labeling.search import run_model
from vlm_micro.labeling.zero_shot import encode_texts


def _write_run(root, loaded, spec):
    """Two images of 6 random tile embeddings; in image b, tile 4 is the query's embedding and tile 1 near it."""
    rng = np.random.default_rng(0)
    target = encode_texts(loaded, ["mitotic figure"]).numpy()[0]
    noise = rng.normal(size=target.shape).astype(np.float32)
    near = target + 0.3 * noise / np.linalg.norm(noise)
    near /= np.linalg.norm(near)
    tables = root / "tables" / "tiles"
    tables.mkdir(parents=True)
    (root / "status").mkdir()
    for image_id in ("a", "b"):
        embeddings = rng.normal(size=(6, target.shape[0])).astype(np.float32)
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        if image_id == "b":
            embeddings[4] = target
            embeddings[1] = near
        frame = pd.DataFrame({
            "image_id": image_id, "tile_id": np.arange(6), "y": 0, "x": np.arange(6) * 64,
            "height": 64, "width": 64, "cell_type": "alpha", "embedding": list(embeddings),
        })
        frame.to_parquet(tables / f"{image_id}.parquet")
        status = {"image_id": image_id, "status": "ok", "model": {"spec": spec, "checksum": loaded.checksum}}
        (root / "status" / f"{image_id}.json").write_text(json.dumps(status))
    return root


def test_search_ranks_matching_tile_first(loaded, tmp_path):
    run = _write_run(tmp_path / "run", loaded, loaded.spec)
    result = search_tiles(run, "mitotic figure", loaded, top=3)
    assert len(result) == 3
    assert result.loc[0, ["image_id", "tile_id"]].tolist() == ["b", 4]
    assert result.loc[0, "score"] == pytest.approx(1.0, abs=1e-5)
    assert result.loc[1, ["image_id", "tile_id"]].tolist() == ["b", 1]
    assert result["rank"].tolist() == [1, 2, 3]
    assert result["score"].is_monotonic_decreasing
    assert {"y", "x", "height", "width", "cell_type"} <= set(result.columns)


def test_search_top_larger_than_run(loaded, tmp_path):
    run = _write_run(tmp_path / "run", loaded, loaded.spec)
    assert len(search_tiles(run, "mitotic figure", loaded, top=50)) == 12


def test_search_dimension_mismatch(loaded, tmp_path):
    run = _write_run(tmp_path / "run", loaded, loaded.spec)
    frame = pd.read_parquet(run / "tables" / "tiles" / "a.parquet")
    frame["embedding"] = [np.zeros(7, np.float32)] * len(frame)
    frame.to_parquet(run / "tables" / "tiles" / "a.parquet")
    with pytest.raises(ConfigError, match="7-dimensional"):
        search_tiles(run, "mitotic figure", loaded)


def test_search_not_a_results_folder(loaded, tmp_path):
    with pytest.raises(OutputError, match="not a finished"):
        search_tiles(tmp_path, "mitotic figure", loaded)


def test_search_empty_query(loaded, tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        search_tiles(tmp_path, "  ", loaded)


def test_run_model_read_from_status(loaded, tmp_path):
    run = _write_run(tmp_path / "run", loaded, "local-dir:/models/x")
    assert run_model(run) == ("local-dir:/models/x", loaded.checksum)
    (run / "status" / "c.json").write_text(json.dumps({"model": "builtin:other"}))
    with pytest.raises(ConfigError, match="different models"):
        run_model(run)


def test_cli_search_uses_recorded_model(loaded, tmp_path, capsys):
    spec = f"local-dir:{loaded.spec.split(':', 1)[1]}"
    run = _write_run(tmp_path / "run", loaded, spec)
    assert main(["search", str(run), "mitotic figure", "--top", "2", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header = lines[0].split("\t")
    first = dict(zip(header, lines[1].split("\t")))
    assert len(lines) == 3
    assert (first["image_id"], first["tile_id"], first["rank"]) == ("b", "4", "1")


def test_cli_search_json_and_model_option(loaded, tmp_path, capsys):
    run = _write_run(tmp_path / "run", loaded, "builtin:not-installed")
    assert main(["search", str(run), "mitotic figure", "--top", "1", "--json", "--model", loaded.spec, "--device", "cpu"]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    assert (record["image_id"], record["tile_id"]) == ("b", 4)


def test_cli_search_missing_model_one_line_error(loaded, tmp_path, capsys):
    run = _write_run(tmp_path / "run", loaded, "builtin:not-installed")
    assert main(["search", str(run), "mitotic figure", "--device", "cpu"]) == 1
    error = capsys.readouterr().err.strip()
    assert "builtin model 'not-installed' not found" in error
    assert "\n" not in error


def test_cli_search_missing_folder_only_error(tmp_path, capsys):
    """A folder that is not a results folder gives one error line and no warning about its model."""
    assert main(["search", str(tmp_path / "missing"), "mitotic figure", "--device", "cpu"]) == 1
    error = capsys.readouterr().err.strip()
    assert "is not a finished vlm-micro results folder" in error
    assert "\n" not in error
    assert "no model recorded" not in error
