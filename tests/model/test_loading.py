"""Every model spec kind, loaded from folders, caches and checkpoints written here."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import save_file

from vlm_micro.errors import ModelLoadError
from vlm_micro.labeling.zero_shot import encode_tiles
from vlm_micro.model import file_sha256, load_model, loading, resolve_spec

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _tiles(n=3, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _reference_embeddings(model, loaded, tiles):
    from vlm_micro.labeling.zero_shot import tiles_to_tensor

    with torch.no_grad():
        features = model.encode_image(tiles_to_tensor(tiles, loaded.image_size, loaded.mean, loaded.std))
    return torch.nn.functional.normalize(features, dim=-1)


def _state(model):
    return {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}


def _fake_hub_cache(root, repo_id, files):
    """Lay out files as `hf download` does: models--ORG--NAME/snapshots/<rev>/ plus refs/main."""
    repo_folder = root / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_folder / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo_folder / "refs").mkdir()
    (repo_folder / "refs" / "main").write_text(REVISION)
    for name, source in files.items():
        shutil.copyfile(source, snapshot / name)
    return snapshot


@pytest.fixture
def offline_hf_home(tmp_path, monkeypatch):
    home = tmp_path / "hf_home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def test_resolve_spec_kinds():
    assert resolve_spec("builtin:demo") == ("builtin", "demo")
    assert resolve_spec("local-dir:/m") == ("local-dir", "/m")
    assert resolve_spec("hf-hub:org/name") == ("hf-hub", "org/name")
    assert resolve_spec("ViT-B-32@/w.pt") == ("checkpoint", "ViT-B-32@/w.pt")


@pytest.mark.parametrize("spec", ["", "local-dir:", "no-kind-here"])
def test_resolve_spec_invalid(spec):
    with pytest.raises(ModelLoadError):
        resolve_spec(spec)


def test_local_dir_round_trip(tiny_dir, tiny_model):
    loaded = load_model(f"local-dir:{tiny_dir}", device="cpu")
    tiles = _tiles()
    expected = _reference_embeddings(tiny_model, loaded, tiles)
    assert torch.allclose(encode_tiles(loaded, tiles), expected, atol=1e-5)
    assert loaded.name == "tiny"
    assert loaded.image_size == 32
    assert loaded.checksum == file_sha256(tiny_dir / "open_clip_model.safetensors")
    assert loaded.temperature == 0.05
    assert loaded.pixel_size_um == 0.5
    assert loaded.tile_size_px == 32
    assert loaded.tokenizer(["a cell"]).shape == (1, 16)


def test_saved_model_file_modes(tiny_dir):
    """Every file of a saved model folder is readable by the group and others the umask allows, like open() makes it."""
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in tiny_dir.iterdir()}
    assert modes == dict.fromkeys(modes, expected)
    assert "open_clip_model.safetensors" in modes


def test_local_dir_missing_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="model folder not found") as info:
        load_model(f"local-dir:{tmp_path / 'nowhere'}", device="cpu")
    assert "\n" not in str(info.value)


def test_local_dir_without_weights(tiny_dir):
    (tiny_dir / "open_clip_model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no weights file"):
        load_model(f"local-dir:{tiny_dir}", device="cpu")


def test_local_dir_without_config(tiny_dir):
    (tiny_dir / "open_clip_config.json").unlink()
    with pytest.raises(ModelLoadError, match="open_clip_config.json"):
        load_model(f"local-dir:{tiny_dir}", device="cpu")


def test_local_dir_invalid_meta(tiny_dir):
    (tiny_dir / "vlm_micro.json").write_text(json.dumps({"temperature": -1}))
    with pytest.raises(ModelLoadError, match="temperature"):
        load_model(f"local-dir:{tiny_dir}", device="cpu")


def test_builtin_loads_from_package_folder(tiny_dir, tmp_path, monkeypatch):
    builtin = tmp_path / "models"
    shutil.copytree(tiny_dir, builtin / "mini")
    monkeypatch.setattr(loading, "BUILTIN_DIR", builtin)
    loaded = load_model("builtin:mini", device="cpu")
    assert loaded.spec == "builtin:mini"
    assert loaded.checksum == file_sha256(tiny_dir / "open_clip_model.safetensors")


def test_builtin_missing_lists_available(tiny_dir, tmp_path, monkeypatch):
    builtin = tmp_path / "models"
    shutil.copytree(tiny_dir, builtin / "mini")
    monkeypatch.setattr(loading, "BUILTIN_DIR", builtin)
    with pytest.raises(ModelLoadError, match="available: mini") as info:
        load_model("builtin:nope", device="cpu")
    assert "\n" not in str(info.value)


def test_hf_hub_loads_from_offline_cache(tiny_dir, tiny_model, offline_hf_home):
    _fake_hub_cache(offline_hf_home, "lab/tiny-clip", {
        "open_clip_config.json": tiny_dir / "open_clip_config.json",
        "open_clip_model.safetensors": tiny_dir / "open_clip_model.safetensors",
    })
    loaded = load_model("hf-hub:lab/tiny-clip", device="cpu")
    tiles = _tiles()
    assert torch.allclose(encode_tiles(loaded, tiles), _reference_embeddings(tiny_model, loaded, tiles), atol=1e-5)
    assert loaded.name == "lab/tiny-clip"
    assert loaded.meta == {}


def test_hf_hub_pickle_weights_load_weights_only(tiny_dir, tiny_model, offline_hf_home, tmp_path):
    weights = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(_state(tiny_model), weights)
    _fake_hub_cache(offline_hf_home, "lab/tiny-bin", {
        "open_clip_config.json": tiny_dir / "open_clip_config.json",
        "open_clip_pytorch_model.bin": weights,
    })
    loaded = load_model("hf-hub:lab/tiny-bin", device="cpu")
    assert loaded.checksum == file_sha256(weights)


def test_hf_hub_missing_offline_fails_without_download(offline_hf_home, monkeypatch):
    import huggingface_hub

    def no_download(*args, **kwargs):
        raise AssertionError("offline loading must not try to download")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    with pytest.raises(ModelLoadError) as info:
        load_model("hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", device="cpu")
    message = str(info.value)
    assert "\n" not in message
    assert "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224" in message
    assert "HF_HUB_OFFLINE=1" in message
    assert "hf download" in message
    assert str(offline_hf_home) in message


def test_hf_hub_config_without_weights_is_missing(tiny_dir, offline_hf_home):
    _fake_hub_cache(offline_hf_home, "lab/no-weights", {"open_clip_config.json": tiny_dir / "open_clip_config.json"})
    with pytest.raises(ModelLoadError, match="missing: weights"):
        load_model("hf-hub:lab/no-weights", device="cpu")


def test_hf_hub_invalid_repo_id(offline_hf_home):
    with pytest.raises(ModelLoadError, match="ORG/NAME"):
        load_model("hf-hub:just-a-name", device="cpu")


@pytest.fixture
def registered_arch(tmp_path, tiny_cfg):
    """A tiny config registered with open_clip under a name no built-in uses."""
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "vlm-micro-test-tiny.json").write_text(json.dumps(tiny_cfg))
    open_clip.add_model_config(config_dir)
    return "vlm-micro-test-tiny"


def test_checkpoint_safetensors(registered_arch, tiny_model, tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file(_state(tiny_model), str(path))
    loaded = load_model(f"{registered_arch}@{path}", device="cpu")
    tiles = _tiles()
    assert torch.allclose(encode_tiles(loaded, tiles), _reference_embeddings(tiny_model, loaded, tiles), atol=1e-5)
    assert loaded.name == f"{registered_arch}@weights.safetensors"
    assert loaded.checksum == file_sha256(path)


def test_checkpoint_torch_state_dict(registered_arch, tiny_model, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": _state(tiny_model)}, path)
    loaded = load_model(f"{registered_arch}@{path}", device="cpu")
    tiles = _tiles()
    assert torch.allclose(encode_tiles(loaded, tiles), _reference_embeddings(tiny_model, loaded, tiles), atol=1e-5)


def test_checkpoint_rejects_pickled_objects(registered_arch, tiny_model, tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"state_dict": _state(tiny_model), "args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(ModelLoadError, match="weights_only"):
        load_model(f"{registered_arch}@{path}", device="cpu")


def test_checkpoint_wrong_architecture(registered_arch, tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"visual.proj": torch.zeros(3, 3)}, str(path))
    with pytest.raises(ModelLoadError, match="cannot build model"):
        load_model(f"{registered_arch}@{path}", device="cpu")


def test_checkpoint_unknown_architecture(tmp_path):
    with pytest.raises(ModelLoadError, match="not an open_clip model config"):
        load_model(f"No-Such-Arch@{tmp_path / 'w.pt'}", device="cpu")


def test_checkpoint_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="checkpoint file not found"):
        load_model(f"ViT-B-32@{tmp_path / 'missing.pt'}", device="cpu")


def test_checkpoint_numpy_rejected(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, a=np.zeros(1))
    with pytest.raises(ModelLoadError, match="NumPy"):
        load_model(f"ViT-B-32@{path}", device="cpu")


def test_bf16_embeddings_close_to_fp32(tiny_dir):
    tiles = _tiles(4)
    fp32 = encode_tiles(load_model(f"local-dir:{tiny_dir}", device="cpu", precision="fp32"), tiles)
    loaded = load_model(f"local-dir:{tiny_dir}", device="cpu", precision="bf16")
    assert loaded.precision == "bf16"
    bf16 = encode_tiles(loaded, tiles)
    assert bf16.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(fp32, bf16).min() > 0.98
