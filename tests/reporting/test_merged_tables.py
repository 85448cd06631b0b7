"""The merged tile and cell tables, streamed image by image, equal an in-memory merge of the per-image tables."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import fabricate
from vlm_micro.reporting import merged, write_run_summary
from vlm_micro.reporting.summary import with_cell_predictions


def with_image_id(frame, image_id):
    """Return ``frame`` with an ``image_id`` column first, as the merged tables have it."""
    if "image_id" in frame:
        frame = frame.drop(columns="image_id")
    frame.insert(0, "image_id", image_id)
    return frame


def merge_tables(out, kind, image_ids):
    """Concatenate the per-image tables in memory, as the run summary did before it streamed them."""
    frames = [with_image_id(pd.read_parquet(out / "tables" / kind / f"{image_id}.parquet"), image_id)
              for image_id in image_ids if (out / "tables" / kind / f"{image_id}.parquet").is_file()]
    return pd.concat(frames, ignore_index=True)


def _run(out):
    fabricate.write_image(out, "grid_a", seed=0)
    fabricate.write_image(out, "cells_b", seed=1, placement="cells")
    fabricate.write_image(out, "grid_c", seed=2)
    fabricate.write_failed(out, "broken", "broken.tif: not a TIFF file; check the file")
    return ["grid_a", "cells_b", "grid_c", "broken"]


def test_tiles_equal_in_memory_merge(tmp_path):
    out = tmp_path / "results"
    ids = _run(out)
    write_run_summary(out, {"report": {"csv": True}}, ids)
    expected = merge_tables(out, "tiles", ids)
    actual = pd.read_parquet(out / "tables" / "tiles.parquet")
    pd.testing.assert_frame_equal(actual, expected)
    csv = pd.read_csv(out / "tables" / "tiles.csv")
    assert list(csv.columns) == [name for name in expected.columns if name != "embedding"]
    assert len(csv) == len(expected)


def test_cells_get_tile_predictions(tmp_path):
    out = tmp_path / "results"
    ids = _run(out)
    write_run_summary(out, {}, ids)
    cells = pd.read_parquet(out / "tables" / "cells" / "cells_b.parquet")
    tiles = pd.read_parquet(out / "tables" / "tiles" / "cells_b.parquet")
    expected = with_image_id(with_cell_predictions(cells, tiles), "cells_b")
    actual = pd.read_parquet(out / "tables" / "cells.parquet")
    pd.testing.assert_frame_equal(actual, expected)


def test_small_row_groups_same_rows(tmp_path, monkeypatch):
    out = tmp_path / "results"
    ids = _run(out)
    write_run_summary(out, {}, ids)
    whole = pd.read_parquet(out / "tables" / "tiles.parquet")
    monkeypatch.setattr(merged, "ROW_GROUP_ROWS", 7)
    write_run_summary(out, {}, ids)
    parquet = pq.ParquetFile(out / "tables" / "tiles.parquet")
    assert parquet.metadata.num_row_groups > 1
    pd.testing.assert_frame_equal(pd.read_parquet(out / "tables" / "tiles.parquet"), whole)


def test_integer_and_float_column_merged_as_float(tmp_path):
    out = tmp_path / "results"
    fabricate.write_image(out, "a", seed=0)
    fabricate.write_image(out, "b", seed=1)
    path = out / "tables" / "tiles" / "b.parquet"
    tiles = pd.read_parquet(path)
    tiles["level"] = tiles["level"].astype(float) + 0.5
    tiles.to_parquet(path, index=False)
    write_run_summary(out, {}, ["a", "b"])
    merged_tiles = pd.read_parquet(out / "tables" / "tiles.parquet")
    assert merged_tiles["level"].dtype == np.float64
    assert (merged_tiles.loc[merged_tiles["image_id"] == "b", "level"] % 1 == 0.5).all()


def test_incompatible_types_stored_as_text(tmp_path, caplog):
    out = tmp_path / "results"
    fabricate.write_image(out, "a", seed=0)
    fabricate.write_image(out, "b", seed=1)
    path = out / "tables" / "tiles" / "b.parquet"
    tiles = pd.read_parquet(path)
    tiles["level"] = "level " + tiles["level"].astype(str)
    tiles.to_parquet(path, index=False)
    with caplog.at_level(logging.WARNING):
        write_run_summary(out, {}, ["a", "b"])
    assert "different types in column level (int64, large_string)" in caplog.text
    merged_tiles = pd.read_parquet(out / "tables" / "tiles.parquet")
    levels = merged_tiles.groupby("image_id")["level"].first()
    assert levels["a"] == "0"
    assert levels["b"] == "level 0"


def test_no_labelled_image_gives_empty_tile_table(tmp_path):
    out = tmp_path / "results"
    fabricate.write_failed(out, "broken", "broken.tif: not a TIFF file; check the file")
    paths = write_run_summary(out, {}, ["broken"])
    assert "cells" not in paths
    tiles = pd.read_parquet(paths["tiles"])
    assert list(tiles.columns) == ["image_id", "tile_id"]
    assert tiles.empty


def test_failed_write_keeps_old_table(tmp_path, monkeypatch):
    out = tmp_path / "results"
    ids = _run(out)
    write_run_summary(out, {}, ids)
    before = (out / "tables" / "tiles.parquet").read_bytes()

    def broken_flush(self):
        raise OSError("No space left on device")

    monkeypatch.setattr(merged.MergedTableWriter, "_flush", broken_flush)
    with pytest.raises(OSError, match="No space left"):
        write_run_summary(out, {}, ids)
    assert (out / "tables" / "tiles.parquet").read_bytes() == before
    assert not list((out / "tables").glob(".*.tmp"))
