"""Config loading and validation against workflow/schemas/config.schema.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vlm_micro.config import (
    DEFAULT_CONFIG,
    config_checksum,
    labelling_settings,
    load_config,
    merge_overrides,
    resolve_paths,
    validate_config,
)
from vlm_micro.errors import ConfigError


def write_config(folder: Path, values: dict) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.fixture
def minimal(tmp_path, labels_file, tiny_model_dir) -> dict:
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"")
    return {
        "images": str(images),
        "labels": str(labels_file),
        "out": str(tmp_path / "out"),
        "model": {"spec": f"local-dir:{tiny_model_dir}"},
    }


def check(values: dict) -> dict:
    return validate_config(values, source="test.yaml", check_settings=False)


def test_defaults_fill_every_section(minimal):
    config = check(minimal)
    assert config["model"]["device"] == "auto"
    assert config["tiling"]["cells"]["max_diameter_um"] == 30
    assert config["workflow"]["shard_size"] == 50
    assert config["sample_sheet"] is None


def test_bundled_config_is_valid():
    config = load_config(DEFAULT_CONFIG, check_files=False, check_settings=False)
    assert config["labels"] == "config/labels.yaml"


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"imagez": "x"}, "unknown key 'imagez'"),
        ({"tiling": {"overlap": 2}}, "unknown key 'tiling.overlap'"),
        ({"tiling": {"cells": {"min_diameter": 2}}}, "unknown key 'tiling.cells.min_diameter'"),
    ],
)
def test_unknown_key_rejected(minimal, values, expected):
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")) as info:
        check(merge_overrides(minimal, values))
    assert "\n" not in str(info.value)
    assert "test.yaml" in str(info.value)


@pytest.mark.parametrize(
    "values, key",
    [
        ({"model": {"batch_size": "64"}}, "model.batch_size"),
        ({"model": {"batch_size": 0}}, "model.batch_size"),
        ({"model": {"device": "gpu"}}, "model.device"),
        ({"model": {"precision": "fp8"}}, "model.precision"),
        ({"tiling": {"min_foreground": 1.5}}, "tiling.min_foreground"),
        ({"tiling": {"placement": "random"}}, "tiling.placement"),
        ({"read": {"percentiles": [1.0]}}, "read.percentiles"),
        ({"report": {"pdf": "yes"}}, "report.pdf"),
        ({"workflow": {"shard_size": True}}, "workflow.shard_size"),
        ({"labeling": {"normal_references": "ref.png"}}, "labeling.normal_references"),
        ({"out": 3}, "out"),
    ],
)
def test_wrong_value_names_key(minimal, values, key):
    with pytest.raises(ConfigError) as info:
        check(merge_overrides(minimal, values))
    message = str(info.value)
    assert f"'{key}'" in message
    assert "\n" not in message


def test_enum_error_lists_allowed_values(minimal):
    with pytest.raises(ConfigError, match="allowed values are \"grid\", \"cells\""):
        check(merge_overrides(minimal, {"tiling": {"placement": "random"}}))


def test_top_level_must_be_mapping(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_invalid_yaml_is_one_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model: {spec: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_missing_labels_file(minimal, tmp_path):
    with pytest.raises(ConfigError, match="labels file not found"):
        check(merge_overrides(minimal, {"labels": str(tmp_path / "labels.yaml")}))


def test_empty_vocabulary_rejected(minimal, tmp_path, labels_file):
    labels = yaml.safe_load(labels_file.read_text(encoding="utf-8"))
    labels["cell_types"] = []
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump(labels), encoding="utf-8")
    with pytest.raises(ConfigError, match="cell_types"):
        check(merge_overrides(minimal, {"labels": str(path)}))


def test_missing_sample_sheet(minimal, tmp_path):
    with pytest.raises(ConfigError, match="sample_sheet file not found"):
        check(merge_overrides(minimal, {"sample_sheet": str(tmp_path / "images.tsv")}))


def test_missing_model_folder(minimal, tmp_path):
    spec = f"local-dir:{tmp_path / 'no-model'}"
    with pytest.raises(ConfigError, match="model folder not found"):
        check(merge_overrides(minimal, {"model": {"spec": spec}}))


def test_missing_builtin_model(minimal):
    with pytest.raises(ConfigError, match="'builtin:no_such_model' is not installed"):
        check(merge_overrides(minimal, {"model": {"spec": "builtin:no_such_model"}}))


def test_missing_checkpoint_file(minimal, tmp_path):
    spec = f"ViT-B-32@{tmp_path / 'weights.safetensors'}"
    with pytest.raises(ConfigError, match="checkpoint file not found"):
        check(merge_overrides(minimal, {"model": {"spec": spec}}))


def test_section_settings_checked(minimal):
    values = dict(minimal)
    values["tiling"] = {"cells": {"min_diameter_um": 40, "max_diameter_um": 30}}
    with pytest.raises(ConfigError, match="min_diameter_um"):
        validate_config(values, source="test.yaml")


def test_overrides_merge_nested():
    merged = merge_overrides({"model": {"spec": "a", "batch_size": 8}}, {"model": {"spec": "b"}, "out": "x"})
    assert merged == {"model": {"spec": "b", "batch_size": 8}, "out": "x"}


def test_resolve_paths_makes_absolute(tmp_path):
    values = {
        "images": "data/*.tif",
        "out": "results",
        "labels": "/abs/labels.yaml",
        "model": {"spec": "local-dir:models/mine"},
        "labeling": {"normal_references": ["refs"], "text_cache": None},
        "finetune": {"base": "builtin:demo", "annotations": "ann.csv"},
    }
    resolved = resolve_paths(values, tmp_path)
    assert resolved["images"] == str(tmp_path / "data/*.tif")
    assert resolved["out"] == str(tmp_path / "results")
    assert resolved["labels"] == "/abs/labels.yaml"
    assert resolved["model"]["spec"] == f"local-dir:{tmp_path / 'models/mine'}"
    assert resolved["labeling"]["normal_references"] == [str(tmp_path / "refs")]
    assert resolved["labeling"]["text_cache"] is None
    assert resolved["finetune"]["base"] == "builtin:demo"
    assert resolved["finetune"]["annotations"] == str(tmp_path / "ann.csv")


def test_load_config_resolves_file_and_overrides(tmp_path, minimal, monkeypatch):
    path = write_config(tmp_path, {**minimal, "out": "relative-out"})
    monkeypatch.chdir(tmp_path)
    config = load_config(path, {"images": "images"}, base_dir=tmp_path / "base", check_settings=False)
    assert config["out"] == str(tmp_path / "base" / "relative-out")
    assert config["images"] == str(tmp_path / "images")


def test_checksum_ignores_report_and_paths(minimal):
    config = check(minimal)
    other = check(merge_overrides(minimal, {"report": {"pdf": False}, "out": "/elsewhere"}))
    changed = check(merge_overrides(minimal, {"labeling": {"anomaly_threshold": 0.7}}))
    first = config_checksum(labelling_settings(config), "v1")
    assert first == config_checksum(labelling_settings(other), "v1")
    assert first != config_checksum(labelling_settings(changed), "v1")
    assert first != config_checksum(labelling_settings(config), "v2")


def test_partial_model_section_keeps_defaults(tmp_path, minimal):
    values = {key: value for key, value in minimal.items() if key != "model"}
    values["model"] = {"device": "cpu"}
    config = load_config(write_config(tmp_path, values), base_dir=tmp_path, check_files=False, check_settings=False)
    assert config["model"]["device"] == "cpu"
    assert config["model"]["spec"] == "builtin:demo"


def test_config_without_labels_uses_bundled(tmp_path, minimal, monkeypatch):
    values = {key: value for key, value in minimal.items() if key != "labels"}
    monkeypatch.chdir(tmp_path)
    config = load_config(write_config(tmp_path, values), base_dir=tmp_path, check_settings=False)
    assert Path(config["labels"]) == Path(__file__).resolve().parents[2] / "config" / "labels.yaml"


def test_output_defaults_inside_out(minimal):
    config = check(minimal)
    out = minimal["out"]
    assert config["labeling"]["text_cache"] == str(Path(out) / ".cache" / "text_embeddings")
    assert config["finetune"]["out"] == str(Path(out) / "finetuned")
    assert config["evaluate"]["out"] == str(Path(out) / "evaluation")


def test_output_paths_set_are_kept(minimal, tmp_path):
    values = merge_overrides(minimal, {
        "labeling": {"text_cache": None},
        "finetune": {"out": str(tmp_path / "model")},
        "evaluate": {"out": str(tmp_path / "metrics")},
    })
    config = check(values)
    assert config["labeling"]["text_cache"] is None
    assert config["finetune"]["out"] == str(tmp_path / "model")
    assert config["evaluate"]["out"] == str(tmp_path / "metrics")


def test_bundled_config_outputs_follow_out(tmp_path, monkeypatch):
    # Plain snakemake validates the bundled file as it is, with out: results.
    config = load_config(DEFAULT_CONFIG, check_files=False, check_settings=False)
    assert config["finetune"]["out"] == str(Path("results") / "finetuned")
    assert config["labeling"]["text_cache"] == str(Path("results") / ".cache" / "text_embeddings")
    # `vlm-micro run --out DIR` without --config.
    monkeypatch.chdir(tmp_path)
    config = load_config(None, {"out": "run1"}, base_dir=DEFAULT_CONFIG.parents[1], check_files=False, check_settings=False)
    assert config["finetune"]["out"] == str(tmp_path / "run1" / "finetuned")
    assert config["evaluate"]["out"] == str(tmp_path / "run1" / "evaluation")
    assert config["labeling"]["text_cache"] == str(tmp_path / "run1" / ".cache" / "text_embeddings")


def test_checksum_ignores_text_cache(minimal):
    config = check(minimal)
    moved = check(merge_overrides(minimal, {"labeling": {"text_cache": "/shared/cache"}}))
    assert config_checksum(labelling_settings(config), "v1") == config_checksum(labelling_settings(moved), "v1")
