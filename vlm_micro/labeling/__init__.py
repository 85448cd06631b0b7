"""Labelling of tiles: cell types, anomaly scores, image summaries and text search.

Public API (imported on first use, so that ``import vlm_micro.labeling`` stays light):
:class:`LabelSettings`, :class:`Labeler`, :func:`summarize_image`,
:func:`search_tiles`, :class:`MemoryBank`, :func:`load_reference_tiles`,
:func:`load_vocabulary`, :class:`Vocabulary`.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "LabelSettings": "vlm_micro.labeling.settings",
    "Labeler": "vlm_micro.labeling.labeler",
    "summarize_image": "vlm_micro.labeling.summary",
    "search_tiles": "vlm_micro.labeling.search",
    "MemoryBank": "vlm_micro.labeling.anomaly",
    "load_reference_tiles": "vlm_micro.labeling.references",
    "TextEmbeddings": "vlm_micro.labeling.text",
    "load_vocabulary": "vlm_micro.labeling.vocabulary",
    "Vocabulary": "vlm_micro.labeling.vocabulary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vlm_micro.labeling' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
