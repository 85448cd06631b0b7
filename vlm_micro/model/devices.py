"""Device and precision choice for inference.

The model weights stay in float32; ``bf16`` and ``fp16`` run the forward pass under
:func:`torch.autocast`, so a model loaded once can be compared at both precisions.
"""

from __future__ import annotations

import contextlib
import logging

from vlm_micro.errors import ConfigError, ModelLoadError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(device: str = "auto") -> str:
    """Return the torch device string to run on.

    Parameters
    ----------
    device : str
        ``auto`` (CUDA, then Apple MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Raises
    ------
    ModelLoadError
        When an explicit ``cuda`` or ``mps`` device is requested but this torch build or
        machine does not provide it. There is no silent fallback to the CPU, because a
        job sized for a GPU would run many times slower.
    """
    import torch

    text = str(device or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        return "cpu"
    if text == "cpu":
        return "cpu"
    if text == "mps":
        if not _mps_available():
            raise ModelLoadError("model device 'mps' requested but torch.backends.mps.is_available() is False; use device 'auto' or 'cpu'")
        return "mps"
    if text == "cuda" or text.startswith("cuda:"):
        return _resolve_cuda(text)
    raise ConfigError(f"model device {device!r} is invalid; use auto, cpu, cuda, cuda:N or mps")


def _resolve_cuda(text: str) -> str:
    import torch

    index = text.split(":", 1)[1] if ":" in text else None
    if index is not None and not index.isdigit():
        raise ConfigError(f"model device {text!r} is invalid; use cuda or cuda:N with N a GPU index")
    if not torch.cuda.is_available():
        raise ModelLoadError(
            f"model device {text!r} requested but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}); use device 'auto' or 'cpu', or run on a GPU node"
        )
    count = torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise ModelLoadError(f"model device {text!r} requested but only {count} CUDA device(s) are visible; use cuda:0..cuda:{count - 1}")
    return text


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_precision(precision: str, device: str) -> str:
    """Return the precision that autocast will use on ``device``.

    ``bf16`` runs on CPUs (fast on CPUs with AVX-512 BF16 or AMX) and on GPUs that
    support it. ``fp16`` is not offered on the CPU: it falls back to ``fp32`` with a
    warning. Any other unsupported combination also falls back to ``fp32`` with a warning.

    Raises
    ------
    ConfigError
        When ``precision`` is not one of fp32, bf16, fp16.
    """
    import torch

    text = str(precision or "fp32").strip().lower()
    if text not in PRECISIONS:
        raise ConfigError(f"model precision {precision!r} is invalid; use fp32, bf16 or fp16")
    if text == "fp32":
        return text
    device_type = device.split(":", 1)[0]
    supported = True
    if device_type == "cpu":
        supported = text == "bf16"
    elif device_type == "cuda":
        supported = text == "fp16" or torch.cuda.is_bf16_supported()
    if not supported:
        log.warning("precision %s is not supported on device %s; using fp32 (bf16 is the fast choice on CPUs)", text, device)
        return "fp32"
    return text


def autocast_context(device: str, precision: str):
    """Return a context manager that runs the enclosed forward pass at ``precision``.

    ``fp32`` gives a no-op context; ``bf16`` and ``fp16`` give :func:`torch.autocast`
    for the device type of ``device``.
    """
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.split(":", 1)[0], dtype=dtype)
