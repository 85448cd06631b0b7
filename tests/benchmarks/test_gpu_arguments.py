"""Command-line checks of benchmarks/gpu.py: invalid values fail with an argparse error."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu_benchmark():
    """The benchmark script as a module; importing it adds benchmarks/ to sys.path."""
    spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("arguments", "message"), [
    (["--models", "nope"], "argument --models: unknown model 'nope'; use a comma-separated subset of demo,vit_b_32"),
    (["--models", "demo,nope"], "argument --models: unknown model 'nope'"),
    (["--models", ","], "argument --models: no model given"),
    (["--device", "foo"], "argument --device: invalid device 'foo'; use cpu, cuda, cuda:N (N a GPU index) or mps"),
    (["--device", "cuda:x"], "argument --device: invalid device 'cuda:x'"),
])
def test_gpu_benchmark_rejects_argument(gpu_benchmark, capsys, arguments, message):
    with pytest.raises(SystemExit) as info:
        gpu_benchmark.parse_args(arguments)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_gpu_benchmark_accepts_defaults(gpu_benchmark):
    args = gpu_benchmark.parse_args(["--device", "cpu", "--models", " vit_b_32 , demo"])
    assert args.device == "cpu"
    assert args.models == ["vit_b_32", "demo"]
    assert gpu_benchmark.parse_args([]).models == ["demo", "vit_b_32"]


def test_gpu_benchmark_rejects_absent_gpu_index(gpu_benchmark, capsys, monkeypatch):
    monkeypatch.setattr(gpu_benchmark.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_benchmark.torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SystemExit) as info:
        gpu_benchmark.parse_args(["--device", "cuda:1"])
    assert info.value.code == 2
    assert "argument --device: cuda:1 is not present, because only 1 CUDA device(s) are visible" in capsys.readouterr().err
    assert gpu_benchmark.parse_args(["--device", "cuda:0"]).device == "cuda:0"


def test_gpu_benchmark_rejects_missing_mps(gpu_benchmark, capsys, monkeypatch):
    monkeypatch.setattr(gpu_benchmark.torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(SystemExit) as info:
        gpu_benchmark.parse_args(["--device", "mps"])
    assert info.value.code == 2
    assert "argument --device: mps is not available on this machine" in capsys.readouterr().err
