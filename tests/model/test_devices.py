"""Device and precision choice, with CUDA and MPS availability faked."""

from __future__ import annotations

import logging

import pytest
import torch

from vlm_micro.errors import ConfigError, ModelLoadError
from vlm_micro.model import resolve_device, resolve_precision
from vlm_micro.model.devices import autocast_context


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_device_without_accelerator(no_accelerator):
    assert resolve_device("auto") == "cpu"


def test_auto_device_prefers_cuda(no_accelerator, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


def test_auto_device_then_mps(no_accelerator, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"


def test_cuda_requested_but_absent(no_accelerator):
    with pytest.raises(ModelLoadError, match="torch.cuda.is_available") as info:
        resolve_device("cuda")
    assert "'cpu'" in str(info.value)


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(ModelLoadError, match="only 1 CUDA device"):
        resolve_device("cuda:1")


def test_mps_requested_but_absent(no_accelerator):
    with pytest.raises(ModelLoadError, match="mps"):
        resolve_device("mps")


@pytest.mark.parametrize("device", ["gpu", "cuda:x"])
def test_invalid_device(device, no_accelerator):
    with pytest.raises(ConfigError):
        resolve_device(device)


def test_empty_device_means_auto(no_accelerator):
    assert resolve_device("") == "cpu"


def test_precision_bf16_on_cpu():
    assert resolve_precision("bf16", "cpu") == "bf16"


def test_precision_fp16_on_cpu_falls_back(caplog):
    with caplog.at_level(logging.WARNING, logger="vlm_micro.model.devices"):
        assert resolve_precision("fp16", "cpu") == "fp32"
    assert "fp16" in caplog.text


def test_precision_invalid():
    with pytest.raises(ConfigError, match="fp32, bf16 or fp16"):
        resolve_precision("fp64", "cpu")


def test_autocast_context_bf16_on_cpu():
    with autocast_context("cpu", "bf16"):
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == torch.bfloat16
    with autocast_context("cpu", "fp32"):
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == torch.float32
