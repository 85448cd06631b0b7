"""Every annotation source read into the standard table, and its errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vlm_micro.errors import AnnotationError
from vlm_micro.training.annotations import COLUMNS, load_annotations
from vlm_micro.training.tiles import read_annotation_tiles


def test_csv_with_regions(tile_dataset, vocabulary):
    table = load_annotations(tile_dataset / "annotations.csv", vocabulary)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 48
    assert table["image_path"].map(lambda p: p.startswith(str(tile_dataset))).all()
    assert set(table["cell_type"]) == {"alpha", "beta", "gamma"}
    assert table["anomaly"].dtype == "Int64"
    assert set(table.loc[table["anomaly"] == 1, "anomaly_kind"]) == {"debris", "blur"}
    assert (table.loc[table["anomaly"] == 0, "anomaly_kind"] == "").all()


def test_folder_with_annotations_csv(tile_dataset, vocabulary):
    from_folder = load_annotations(tile_dataset, vocabulary)
    from_file = load_annotations(tile_dataset / "annotations.csv", vocabulary)
    pd.testing.assert_frame_equal(from_folder, from_file)


def test_tiles_match_image_regions(tile_dataset, vocabulary):
    table = load_annotations(tile_dataset / "annotations.csv", vocabulary)
    tiles, modalities = read_annotation_tiles(table.iloc[:4], 64)
    image = np.asarray(Image.open(tile_dataset / "images" / "img000.png"))
    assert tiles.dtype == np.uint8
    assert np.array_equal(tiles[1], image[0:64, 64:2 * 64])
    assert np.array_equal(tiles[2], image[64:2 * 64, 0:64])
    assert modalities == ["fluorescence"] * 4


def test_tiles_resized_to_model_input(tile_dataset, vocabulary):
    table = load_annotations(tile_dataset / "annotations.csv", vocabulary)
    tiles, _ = read_annotation_tiles(table.iloc[:2], 32)
    assert tiles.shape == (2, 32, 32, 3)


def test_csv_without_region_reads_whole_image(tmp_path, vocabulary, draw):
    rng = np.random.default_rng(0)
    Image.fromarray(draw(rng, "beta")).save(tmp_path / "cell.png")
    pd.DataFrame({"path": ["cell.png"], "label": ["beta"]}).to_csv(tmp_path / "labels.csv", index=False)
    table = load_annotations(tmp_path / "labels.csv", vocabulary)
    assert table.loc[0, "cell_type"] == "beta"
    assert table.loc[0, "image_id"] == "cell"
    assert pd.isna(table.loc[0, "y"])
    tiles, _ = read_annotation_tiles(table, 32)
    assert tiles.shape == (1, 32, 32, 3)


def test_generic_label_column_sorts_names(tmp_path, vocabulary, draw):
    rng = np.random.default_rng(1)
    for name in ("a", "b", "c"):
        Image.fromarray(draw(rng, "alpha")).save(tmp_path / f"{name}.png")
    frame = pd.DataFrame({"image_path": ["a.png", "b.png", "c.png"], "label": ["Alpha", "debris", "normal"]})
    frame.to_csv(tmp_path / "labels.csv", index=False)
    table = load_annotations(tmp_path / "labels.csv", vocabulary)
    assert table["cell_type"].tolist() == ["alpha", "", ""]
    assert table["anomaly"].tolist() == [pd.NA, 1, 0]
    assert table["anomaly_kind"].tolist() == ["", "debris", ""]


def test_folder_per_class(tmp_path, vocabulary, draw):
    rng = np.random.default_rng(2)
    for label, count in (("alpha", 2), ("gamma", 1), ("blur", 1), ("normal", 1)):
        (tmp_path / label).mkdir()
        for index in range(count):
            Image.fromarray(draw(rng, "alpha")).save(tmp_path / label / f"t{index}.png")
    (tmp_path / "alpha" / "notes.txt").write_text("not an image")
    table = load_annotations(tmp_path, vocabulary)
    assert len(table) == 5
    # Label folders are read in sorted order: alpha, blur, gamma, normal.
    assert table["cell_type"].tolist() == ["alpha", "alpha", "", "gamma", ""]
    assert table["anomaly"].tolist() == [pd.NA, pd.NA, 1, pd.NA, 0]
    assert table.loc[2, "anomaly_kind"] == "blur"
    assert table["image_id"].is_unique


def test_folder_per_class_rejects_unknown_label(tmp_path, vocabulary):
    (tmp_path / "delta").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "delta" / "x.png")
    with pytest.raises(AnnotationError, match="delta"):
        load_annotations(tmp_path, vocabulary)


def _run_table(tile_dataset, tmp_path):
    """Write the per-tile table of a fake earlier run (predictions, no image paths) and its images.tsv."""
    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    annotations = pd.read_csv(tile_dataset / "annotations.csv")
    images = annotations[["image_id", "image_path"]].drop_duplicates()
    images = images.assign(path=[str(tile_dataset / p) for p in images["image_path"]], status="ok", error="")
    images[["image_id", "path", "status", "error"]].to_csv(run / "images.tsv", sep="\t", index=False)
    tiles = annotations[["image_id", "y", "x", "height", "width"]].copy()
    tiles["tile_id"] = range(len(tiles))
    tiles["cell_type"] = "alpha"  # the model's (wrong) prediction everywhere
    tiles["cell_type_prob"] = 0.4
    tiles["anomaly_kind"] = ""
    tiles["is_anomalous"] = False
    tiles["cell_type_corrected"] = ""
    tiles.loc[:5, "cell_type_corrected"] = annotations.loc[:5, "cell_type"]
    tiles.loc[6, "cell_type_corrected"] = "skip"
    tiles["anomaly_kind_corrected"] = ""
    tiles.loc[7, "anomaly_kind_corrected"] = "Blur"
    return run, tiles


def test_run_table_uses_corrections_only(tile_dataset, tmp_path, vocabulary):
    run, tiles = _run_table(tile_dataset, tmp_path)
    tiles.to_parquet(run / "tables" / "tiles.parquet")
    table = load_annotations(run / "tables" / "tiles.parquet", vocabulary)
    expected = pd.read_csv(tile_dataset / "annotations.csv").loc[:5, "cell_type"].tolist()
    assert table["cell_type"].tolist() == expected + [""]
    assert table["anomaly"].tolist() == [pd.NA] * 6 + [1]
    assert table.loc[6, "anomaly_kind"] == "blur"
    assert table["image_path"].map(lambda p: p.startswith(str(tile_dataset))).all()


def test_run_table_include_uncorrected(tile_dataset, tmp_path, vocabulary):
    run, tiles = _run_table(tile_dataset, tmp_path)
    tiles.to_csv(run / "tables" / "tiles.csv", index=False)
    table = load_annotations(run / "tables" / "tiles.csv", vocabulary, include_uncorrected=True)
    assert len(table) == 47  # every tile but the skipped one
    assert (table.loc[8:, "cell_type"] == "alpha").all()
    assert (table.loc[8:, "anomaly"] == 0).all()


def test_run_table_without_corrections_fails(tile_dataset, tmp_path, vocabulary):
    run, tiles = _run_table(tile_dataset, tmp_path)
    tiles["cell_type_corrected"] = ""
    tiles["anomaly_kind_corrected"] = ""
    tiles.to_parquet(run / "tables" / "tiles.parquet")
    with pytest.raises(AnnotationError, match="cell_type_corrected"):
        load_annotations(run / "tables" / "tiles.parquet", vocabulary)


def test_corrected_column_overrides_plain_csv(tile_dataset, vocabulary):
    frame = pd.read_csv(tile_dataset / "annotations.csv")
    frame["cell_type_corrected"] = ""
    frame.loc[0, "cell_type_corrected"] = "gamma"
    frame.to_csv(tile_dataset / "corrected.csv", index=False)
    table = load_annotations(tile_dataset / "corrected.csv", vocabulary)
    assert table.loc[0, "cell_type"] == "gamma"
    assert table.loc[1, "cell_type"] == frame.loc[1, "cell_type"]


def test_unknown_corrected_cell_type_names_row(tile_dataset, vocabulary):
    frame = pd.read_csv(tile_dataset / "annotations.csv")
    frame["cell_type_corrected"] = ""
    frame.loc[3, "cell_type_corrected"] = "unicorn"
    frame.to_csv(tile_dataset / "corrected.csv", index=False)
    with pytest.raises(AnnotationError) as info:
        load_annotations(tile_dataset / "corrected.csv", vocabulary)
    assert str(info.value).startswith(
        f"{tile_dataset / 'corrected.csv'}: unknown cell type 'unicorn' in column 'cell_type_corrected', data row 4; "
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cell_type": "delta"}, "unknown cell type 'delta' in column 'cell_type', data row 2; use one of alpha, beta"),
        ({"anomaly_kind": "smudge"}, "unknown label 'smudge'"),
        ({"anomaly": "maybe"}, "use 0 or 1"),
        ({"y": "top"}, "column 'y'"),
        ({"width": "-4"}, "must be positive"),
        ({"image_path": "images/missing.png"}, "image file not found in data row 2: "),
    ],
)
def test_csv_errors_name_the_value(tile_dataset, vocabulary, change, message):
    frame = pd.read_csv(tile_dataset / "annotations.csv", dtype=str, keep_default_na=False)
    for column, value in change.items():
        frame.loc[1, column] = value
        if column == "anomaly_kind":
            frame.loc[1, "anomaly"] = "1"
    frame.to_csv(tile_dataset / "broken.csv", index=False)
    with pytest.raises(AnnotationError, match=message):
        load_annotations(tile_dataset / "broken.csv", vocabulary)


def test_missing_source_fails(tmp_path, vocabulary):
    with pytest.raises(AnnotationError, match="not found"):
        load_annotations(tmp_path / "nothing.csv", vocabulary)


def test_table_without_labels_fails(tile_dataset, vocabulary):
    frame = pd.read_csv(tile_dataset / "annotations.csv")[["image_path", "y", "x", "height", "width"]]
    frame.to_csv(tile_dataset / "unlabelled.csv", index=False)
    with pytest.raises(AnnotationError, match="no labels"):
        load_annotations(tile_dataset / "unlabelled.csv", vocabulary)


def test_series_column_picks_plane(tile_dataset, vocabulary):
    frame = pd.read_csv(tile_dataset / "annotations.csv").iloc[:2]
    frame["series"] = 0
    frame.to_csv(tile_dataset / "planes.csv", index=False)
    table = load_annotations(tile_dataset / "planes.csv", vocabulary)
    assert table["series"].tolist() == [0, 0]
    tiles, _ = read_annotation_tiles(table, 64)
    assert tiles.shape == (2, 64, 64, 3)


def test_missing_plane_fails(tile_dataset, vocabulary):
    frame = pd.read_csv(tile_dataset / "annotations.csv").iloc[:1]
    frame["series"] = 3
    frame.to_csv(tile_dataset / "planes.csv", index=False)
    table = load_annotations(tile_dataset / "planes.csv", vocabulary)
    with pytest.raises(AnnotationError, match="no plane with series 3"):
        read_annotation_tiles(table, 64)


def test_split_keys_on_file_not_image_id(tile_dataset, vocabulary):
    from vlm_micro.training.data import build_tile_data, split_by_image

    table = load_annotations(tile_dataset / "annotations.csv", vocabulary)
    table.loc[table.index % 2 == 0, "image_id"] = "renamed"  # one file now appears under two ids
    tiles = np.zeros((len(table), 2, 2, 3), np.uint8)
    data = build_tile_data(table, tiles, ["fluorescence"] * len(table), vocabulary)
    train, val = split_by_image(data.image_ids, data.class_index, 0.25, seed=0)
    train_files = set(table.loc[train, "image_path"])
    val_files = set(table.loc[val, "image_path"])
    assert train_files.isdisjoint(val_files)
    assert val_files
