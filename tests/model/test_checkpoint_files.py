"""Checkpoint files that are not usable weights fail with a message naming the problem."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from vlm_micro.errors import ModelLoadError
from vlm_micro.model import load_model
from vlm_micro.model.loading import bundled_architectures, check_checkpoint_file, weights_format


@pytest.fixture
def tiny_arch(tmp_path, tiny_cfg) -> str:
    """A tiny config registered with open_clip under a name no bundled config uses."""
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "vlm-micro-checkpoint-tiny.json").write_text(json.dumps(tiny_cfg))
    open_clip.add_model_config(config_dir)
    return "vlm-micro-checkpoint-tiny"


def test_bundled_architectures_match_open_clip():
    bundled = bundled_architectures()
    assert bundled is not None
    assert {"ViT-B-32", "RN50"} <= bundled
    # Other tests register extra configs in this process, so only inclusion is exact.
    assert bundled <= set(open_clip.list_models())


@pytest.mark.parametrize(
    "name, save",
    [
        ("zip.pt", lambda state, path: torch.save(state, path)),
        ("legacy.pt", lambda state, path: torch.save(state, path, _use_new_zipfile_serialization=False)),
        ("weights.safetensors", lambda state, path: save_file(state, str(path))),
    ],
)
def test_real_weights_files_recognised(tmp_path, tiny_model, name, save):
    path = tmp_path / name
    state = {key: value.contiguous() for key, value in tiny_model.state_dict().items()}
    save(state, path)
    expected = "safetensors" if name.endswith(".safetensors") else "torch"
    assert weights_format(path) == expected
    check_checkpoint_file(path)


def test_text_file_rejected_before_torch_load(tiny_arch, tmp_path):
    path = tmp_path / "text.tif"
    path.write_text("not weights\n", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="is not a model weights file") as info:
        load_model(f"{tiny_arch}@{path}", device="cpu")
    assert "after '@'" in str(info.value)


def test_damaged_safetensors_is_model_load_error(tiny_arch, tmp_path):
    path = tmp_path / "damaged.safetensors"
    header = b'{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(3))
    with pytest.raises(ModelLoadError, match=r"cannot build model .* \(SafetensorError: ") as info:
        load_model(f"{tiny_arch}@{path}", device="cpu")
    assert "damaged or belong to another architecture" in str(info.value)
