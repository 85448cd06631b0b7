"""Per-shard labelling used by the workflow, and the workflow runner.

Public API (imported on first use, so that ``vlm-micro --help`` stays fast):
:func:`process_shard`, :func:`process_image`, :func:`write_shard_file`,
:func:`run_workflow`, :func:`write_demo_data`.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "process_image": "vlm_micro.pipeline.image",
    "process_shard": "vlm_micro.pipeline.shard",
    "run_workflow": "vlm_micro.pipeline.run",
    "write_demo_data": "vlm_micro.pipeline.demo",
    "write_shard_file": "vlm_micro.pipeline.shard",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vlm_micro.pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
