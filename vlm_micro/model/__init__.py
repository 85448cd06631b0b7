"""Model specs, loading and saving of open_clip models.

Public API: :func:`load_model`, :func:`save_model_dir`, :class:`LoadedModel`,
:func:`resolve_spec`.
"""

from vlm_micro.model.loading import LoadedModel, load_model, resolve_spec, save_model_dir

__all__ = ["LoadedModel", "load_model", "resolve_spec", "save_model_dir"]
