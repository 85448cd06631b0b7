"""Readers: microscopy image files become lazy RGB uint8 views.

Public API: :class:`ReadSettings` (the ``read:`` configuration section),
:func:`inspect_image` (metadata without pixel data) and :func:`open_views` (one
:class:`ImageView` per selected series and time frame).
"""

from vlm_micro.io.inspection import inspect_image
from vlm_micro.io.reader import open_views
from vlm_micro.io.settings import ReadSettings
from vlm_micro.io.view import ArrayView, ImageView, Level, guess_modality

__all__ = [
    "ArrayView",
    "ImageView",
    "Level",
    "ReadSettings",
    "guess_modality",
    "inspect_image",
    "open_views",
]
