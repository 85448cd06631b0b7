"""The model spec is checked when the config is validated, before any job loads the model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vlm_micro.config import load_config
from vlm_micro.errors import ConfigError
from vlm_micro.model.spec_checks import check_model_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
OPTIONS = {"images": "--images", "sample_sheet": "--sample-sheet", "out": "--out", "model.spec": "--model"}


def safetensors_bytes(header: dict) -> bytes:
    text = json.dumps(header).encode("utf-8")
    return len(text).to_bytes(8, "little") + text


@pytest.fixture
def config_file(tmp_path, labels_file, tiny_model_dir) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"")
    values = {"images": str(images), "labels": str(labels_file), "out": str(tmp_path / "out"),
              "model": {"spec": f"local-dir:{tiny_model_dir}"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "spec, phrase",
    [
        ("garbage", "is not recognised"),
        ("builtin:", "has nothing after 'builtin:'"),
        ("hf-hub:just-a-name", "use hf-hub:ORG/NAME"),
        ("hf-hub:org/", "use hf-hub:ORG/NAME"),
        ("@weights.pt", "has no architecture before '@'"),
        ("ViT-B-32@", "has no checkpoint file after '@'"),
    ],
)
def test_spec_form_rejected(spec, phrase):
    with pytest.raises(ConfigError, match="^config.yaml: model.spec: ") as info:
        check_model_spec(spec, "config.yaml: model.spec")
    assert phrase in str(info.value)
    assert "\n" not in str(info.value)


def test_hub_spec_form_accepted():
    # Whether the hub model is cached is left to the labelling job.
    check_model_spec("hf-hub:some-org/some-model", "model.spec")


def test_builtin_missing_lists_installed():
    with pytest.raises(ConfigError, match="'builtin:no_such_model' is not installed") as info:
        check_model_spec("builtin:no_such_model", "model.spec")
    assert "installed: " in str(info.value)


def test_model_folder_without_weights(tmp_path, tiny_model_dir):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copyfile(tiny_model_dir / "open_clip_config.json", folder / "open_clip_config.json")
    with pytest.raises(ConfigError, match="has no weights file"):
        check_model_spec(f"local-dir:{folder}", "model.spec")


def test_unknown_architecture(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(safetensors_bytes({}))
    with pytest.raises(ConfigError, match="'No-Such-Arch' in .* is not an open_clip model config"):
        check_model_spec(f"No-Such-Arch@{weights}", "model.spec")


@pytest.mark.parametrize(
    "name, content, phrase",
    [
        ("text.tif", b"II*\x00" + bytes(100), "is not a model weights file"),
        ("notes.pt", b"hello, these are not weights\n", "is not a model weights file"),
        ("empty.pt", b"", "is empty (0 bytes)"),
        ("broken.safetensors", b"not a safetensors header", "is not a valid safetensors file"),
        ("misnamed.pt", safetensors_bytes({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}) + bytes(4),
         "rename it"),
        ("weights.npz", b"PK\x03\x04", "is a NumPy file"),
    ],
)
def test_checkpoint_file_rejected(tmp_path, name, content, phrase):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="^--model: ") as info:
        check_model_spec(f"ViT-B-32@{path}", "--model")
    assert phrase in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "name, content",
    [
        ("w.safetensors", safetensors_bytes({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}) + bytes(4)),
        ("w.pt", b"PK\x03\x04" + bytes(60)),
        ("w.bin", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."),
    ],
)
def test_checkpoint_file_accepted(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    check_model_spec(f"ViT-B-32@{path}", "model.spec")


def test_checkpoint_that_is_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="is a folder, not a weights file; use local-dir:"):
        check_model_spec(f"ViT-B-32@{tmp_path}", "model.spec")


def test_load_config_checks_spec(config_file):
    with pytest.raises(ConfigError, match="is not recognised") as info:
        load_config(config_file, {"model": {"spec": "garbage"}}, check_settings=False)
    assert str(info.value).startswith(f"{config_file}: model.spec: ")


def test_option_named_for_overridden_spec(config_file, tmp_path):
    text = tmp_path / "text.tif"
    text.write_bytes(b"II*\x00" + bytes(100))
    with pytest.raises(ConfigError) as info:
        load_config(config_file, {"model": {"spec": f"ViT-B-32@{text}"}}, check_settings=False, override_sources=OPTIONS)
    message = str(info.value)
    assert message.startswith("--model: checkpoint ")
    assert str(config_file) not in message


def test_file_named_for_spec_not_overridden(config_file, tmp_path):
    values = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    values["model"]["spec"] = "garbage"
    config_file.write_text(yaml.safe_dump(values), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(config_file, {"out": str(tmp_path / "other")}, check_settings=False, override_sources=OPTIONS)
    assert str(info.value).startswith(f"{config_file}: model.spec: ")


def test_option_named_for_sample_sheet_and_images(config_file, tmp_path):
    sheet = tmp_path / "missing.tsv"
    with pytest.raises(ConfigError, match=r"^--sample-sheet: sample sheet not found: .*; fix the path$"):
        load_config(config_file, {"sample_sheet": str(sheet)}, check_settings=False, override_sources=OPTIONS)
    with pytest.raises(ConfigError, match=r"^--images: invalid value \"\" for 'images'.*Fix the value given with --images"):
        load_config(config_file, {"images": ""}, check_settings=False, override_sources=OPTIONS)


def test_spec_check_imports_no_torch(config_file):
    code = (
        "import sys\n"
        "from vlm_micro.config import load_config\n"
        f"load_config({str(config_file)!r}, check_settings=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'open_clip' not in sys.modules, 'open_clip was imported'\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
