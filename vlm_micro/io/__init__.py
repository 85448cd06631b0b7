"""Readers: microscopy image files become lazy RGB uint8 views.

Public API, imported on first use: :class:`ReadSettings` (the ``read:`` configuration
section), :func:`inspect_image` (metadata without pixel data) and :func:`open_views`
(one :class:`ImageView` per selected series and time frame).
"""

from vlm_micro.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "ArrayView": "vlm_micro.io.view",
    "ImageView": "vlm_micro.io.view",
    "Level": "vlm_micro.io.view",
    "ReadSettings": "vlm_micro.io.settings",
    "guess_modality": "vlm_micro.io.view",
    "inspect_image": "vlm_micro.io.inspection",
    "open_views": "vlm_micro.io.reader",
})
