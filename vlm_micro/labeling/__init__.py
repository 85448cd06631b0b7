"""Labelling of tiles: cell types, anomaly scores, image summaries and text search.

Public API (imported on first use, so that ``import vlm_micro.labeling`` stays light):
:class:`LabelSettings`, :class:`Labeler`, :func:`summarize_image`,
:func:`search_tiles`, :class:`MemoryBank`, :func:`load_reference_tiles`,
:func:`load_vocabulary`, :class:`Vocabulary`.
"""

from __future__ import annotations

from vlm_micro.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "LabelSettings": "vlm_micro.labeling.settings",
    "Labeler": "vlm_micro.labeling.labeler",
    "summarize_image": "vlm_micro.labeling.summary",
    "search_tiles": "vlm_micro.labeling.search",
    "MemoryBank": "vlm_micro.labeling.anomaly",
    "load_reference_tiles": "vlm_micro.labeling.references",
    "TextEmbeddings": "vlm_micro.labeling.text",
    "load_vocabulary": "vlm_micro.labeling.vocabulary",
    "Vocabulary": "vlm_micro.labeling.vocabulary",
})
