"""Model specs, loading and saving of open_clip models.

Public API: :func:`load_model`, :func:`save_model_dir`, :class:`LoadedModel`,
:func:`resolve_spec`, :func:`resolve_device`, :func:`resolve_precision`,
:data:`DEFAULT_SPEC`. Importing this package does not import torch.
"""

from vlm_micro.model.devices import PRECISIONS, resolve_device, resolve_precision
from vlm_micro.model.loading import DEFAULT_SPEC, LoadedModel, file_sha256, load_model, resolve_spec, save_model_dir

__all__ = [
    "DEFAULT_SPEC",
    "PRECISIONS",
    "LoadedModel",
    "file_sha256",
    "load_model",
    "resolve_device",
    "resolve_precision",
    "resolve_spec",
    "save_model_dir",
]
