"""Per-shard labelling used by the workflow, and the workflow runner.

Public API (imported on first use, so that ``vlm-micro --help`` stays fast):
:func:`process_shard`, :func:`process_image`, :func:`write_shard_file`,
:func:`run_workflow`, :func:`write_demo_data`.
"""

from __future__ import annotations

from vlm_micro.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "process_image": "vlm_micro.pipeline.image",
    "process_shard": "vlm_micro.pipeline.shard",
    "run_workflow": "vlm_micro.pipeline.run",
    "write_demo_data": "vlm_micro.pipeline.demo",
    "write_shard_file": "vlm_micro.pipeline.shard",
})
