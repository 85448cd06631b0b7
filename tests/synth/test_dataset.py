"""Tests of generate_dataset and the ``vlm-micro synth`` command: files, tables, round trips."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from vlm_micro.cli import main
from vlm_micro.errors import ConfigError
from vlm_micro.synth import ANNOTATION_COLUMNS, generate_dataset

N_IMAGES = 3
SIZE_PX = 128


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    annotations = generate_dataset(out, N_IMAGES, seed=5, size_px=SIZE_PX, anomaly_fraction=0.3)
    return out, annotations


def _digests(folder):
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_dataset_writes_documented_files(dataset):
    out, annotations = dataset
    assert (out / "annotations.csv").is_file()
    assert (out / "synth.json").is_file()
    for image_id in annotations.image_id.unique():
        assert (out / "images" / f"{image_id}.ome.tif").is_file()
        assert (out / "truth" / f"{image_id}_labels.tif").is_file()
        assert (out / "truth" / f"{image_id}_cells.csv").is_file()
    assert not list(out.rglob("*.tmp"))


def test_annotations_columns_and_values(dataset):
    out, annotations = dataset
    table = pd.read_csv(out / "annotations.csv", keep_default_na=False)
    assert list(table.columns) == ANNOTATION_COLUMNS
    assert len(table) == len(annotations)
    assert set(table.modality) == {"fluorescence", "brightfield"}
    assert set(table.stain) == {"dapi", "he"}
    assert set(table.anomaly) <= {0, 1}
    assert (table.seed == 5).all()
    assert (table.height == 64).all()
    assert (table.width == 64).all()
    assert (table.y % 64 == 0).all()
    assert (table.x % 64 == 0).all()
    assert ((table.anomaly == 1) == (table.anomaly_kind != "")).all()
    assert table.image_path.str.startswith("images/").all()
    assert table.image_id.nunique() == N_IMAGES


def test_image_ids_alternate_modalities(dataset):
    _, annotations = dataset
    ids = sorted(annotations.image_id.unique())
    assert ids == ["synth_s5_000_fluorescence_dapi", "synth_s5_001_brightfield_he", "synth_s5_002_fluorescence_dapi"]


def test_ome_tiff_pixel_size_round_trip(dataset):
    out, annotations = dataset
    for image_path in annotations.image_path.unique():
        with tifffile.TiffFile(out / image_path) as tif:
            assert tif.is_ome
            pixels = tif.ome_metadata.split("<Pixels ", 1)[1]
            assert 'PhysicalSizeX="0.5"' in pixels
            assert 'PhysicalSizeY="0.5"' in pixels
            assert 'PhysicalSizeXUnit="µm"' in pixels
            image = tif.asarray()
            assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        if "fluorescence" in image_path:
            assert image.dtype == np.uint16
            assert image.shape == (SIZE_PX, SIZE_PX)
        else:
            assert image.dtype == np.uint8
            assert image.shape == (SIZE_PX, SIZE_PX, 3)


def test_truth_files_match_annotations(dataset):
    out, annotations = dataset
    for image_id, rows in annotations.groupby("image_id"):
        labels = tifffile.imread(out / "truth" / f"{image_id}_labels.tif")
        cells = pd.read_csv(out / "truth" / f"{image_id}_cells.csv", keep_default_na=False)
        assert labels.dtype == np.uint16
        assert list(cells.columns) == ["cell_id", "centroid_y", "centroid_x", "cell_type", "anomaly_kind"]
        assert set(np.unique(labels)) - {0} == set(cells.cell_id)
        block_types = {(row.y, row.x): row.cell_type for row in rows.itertuples()}
        for cell in cells.itertuples():
            key = (int(cell.centroid_y) // 64 * 64, int(cell.centroid_x) // 64 * 64)
            assert block_types.get(key) == cell.cell_type


def test_dataset_same_seed_same_bytes(dataset, tmp_path):
    out, _ = dataset
    generate_dataset(tmp_path, N_IMAGES, seed=5, size_px=SIZE_PX, anomaly_fraction=0.3)
    assert _digests(tmp_path) == _digests(out)


def test_dataset_other_seed_differs(dataset, tmp_path):
    out, _ = dataset
    generate_dataset(tmp_path, 1, seed=6, size_px=SIZE_PX, anomaly_fraction=0.3)
    first = tifffile.imread(out / "images" / "synth_s5_000_fluorescence_dapi.ome.tif")
    other = tifffile.imread(tmp_path / "images" / "synth_s6_000_fluorescence_dapi.ome.tif")
    assert not np.array_equal(first, other)


def test_dataset_manifest_records_arguments(dataset):
    out, _ = dataset
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["seed"] == 5
    assert manifest["n_images"] == N_IMAGES
    assert manifest["modality"] == "mixed"
    assert manifest["stain"] == "he"
    assert manifest["size_px"] == SIZE_PX
    assert manifest["anomaly_fraction"] == 0.3
    assert manifest["pixel_size_um"] == 0.5
    assert len(manifest["image_ids"]) == N_IMAGES


def test_dataset_rejects_invalid_size(tmp_path):
    with pytest.raises(ConfigError, match="multiple of 64"):
        generate_dataset(tmp_path, 1, seed=0, size_px=96)


def test_cli_writes_ihc_dataset(tmp_path, capsys):
    status = main(
        [
            "synth",
            "--out",
            str(tmp_path),
            "--n-images",
            "1",
            "--seed",
            "2",
            "--modality",
            "brightfield",
            "--stain",
            "ihc",
            "--size",
            "128",
            "--anomaly-fraction",
            "0",
        ]
    )
    assert status == 0
    assert "annotations.csv" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "annotations.csv", keep_default_na=False)
    assert set(table.stain) == {"ihc"}
    assert set(table.modality) == {"brightfield"}
    assert table.anomaly.sum() == 0
    assert (tmp_path / "images" / "synth_s2_000_brightfield_ihc.ome.tif").is_file()


def test_cli_invalid_fraction_exits_with_error(tmp_path, capsys):
    status = main(["synth", "--out", str(tmp_path), "--n-images", "1", "--seed", "2", "--anomaly-fraction", "2"])
    assert status == 1
    assert "anomaly fraction" in capsys.readouterr().err


def test_dataset_workers_same_bytes(dataset, tmp_path):
    out, _ = dataset
    generate_dataset(tmp_path, N_IMAGES, seed=5, size_px=SIZE_PX, anomaly_fraction=0.3, n_workers=2)
    assert _digests(tmp_path) == _digests(out)


def test_dataset_vocabulary_subset_and_unknown_name(tmp_path):
    labels = tmp_path / "labels.yaml"
    labels.write_text(
        "cell_types:\n"
        "  - {name: tumor, synonyms: [tumor cells]}\n"
        "  - {name: lymphocyte, synonyms: [lymphocytes]}\n"
        "templates:\n  default: ['a micrograph of {}.']\n"
        "anomaly:\n  normal_states: ['normal {}']\n"
        "  kinds:\n    - {name: debris, states: ['{} with debris']}\n"
        "  templates: ['an image of {}.']\n"
    )
    annotations = generate_dataset(tmp_path / "out", 2, seed=1, size_px=128, anomaly_fraction=1.0, labels=labels)
    assert set(annotations.cell_type) <= {"tumor", "lymphocyte"}
    assert set(annotations.anomaly_kind) == {"debris"}

    labels.write_text(labels.read_text().replace("name: tumor", "name: platelet"))
    with pytest.raises(ConfigError, match="platelet"):
        generate_dataset(tmp_path / "bad", 1, seed=1, size_px=128, labels=labels)
