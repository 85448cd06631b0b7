"""Hugging Face cache location and offline mode, read from the environment at each call."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_micro.model.hub import hf_home, hub_cache_dir, offline_variable


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_cache_dir_default(clean_env):
    assert hub_cache_dir() == Path.home() / ".cache" / "huggingface" / "hub"


def test_cache_dir_under_hf_home(clean_env, tmp_path):
    clean_env.setenv("HF_HOME", str(tmp_path))
    assert hf_home() == tmp_path
    assert hub_cache_dir() == tmp_path / "hub"


def test_cache_dir_hf_hub_cache_wins(clean_env, tmp_path):
    clean_env.setenv("HF_HOME", str(tmp_path / "home"))
    clean_env.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub_cache_dir() == tmp_path / "cache"


def test_offline_variable(clean_env):
    assert offline_variable() is None
    clean_env.setenv("HF_HUB_OFFLINE", "0")
    assert offline_variable() is None
    clean_env.setenv("TRANSFORMERS_OFFLINE", "1")
    assert offline_variable() == "TRANSFORMERS_OFFLINE"
    clean_env.setenv("HF_HUB_OFFLINE", "true")
    assert offline_variable() == "HF_HUB_OFFLINE"
