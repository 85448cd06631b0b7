"""Per-shard labelling used by the workflow, and the workflow runner.

Public API: :func:`process_shard`, :func:`process_image`, :func:`write_shard_file`,
:func:`run_workflow`, :func:`write_demo_data`. Importing this package does not import
torch.
"""

from vlm_micro.pipeline.demo import write_demo_data
from vlm_micro.pipeline.image import process_image
from vlm_micro.pipeline.run import run_workflow
from vlm_micro.pipeline.shard import process_shard, write_shard_file

__all__ = ["process_image", "process_shard", "run_workflow", "write_demo_data", "write_shard_file"]
