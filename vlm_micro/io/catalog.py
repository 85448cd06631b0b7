"""The series of a TIFF file: which are images, their layout and metadata.

Slide files hold more than the image: the SVS format adds ``Thumbnail``, ``Label`` and
``Macro`` images, and other scanners mark such pages with NewSubfileType flags
(reduced-resolution, macro, mask) or name them in the ImageDescription. Those series
get a role other than ``"image"`` and are never returned as views.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from vlm_micro.io.diagnose import read_error
from vlm_micro.io.layout import PlaneLayout, plane_layout
from vlm_micro.io.metadata import SeriesMetadata, parse_ome_images, series_metadata

log = logging.getLogger(__name__)

ROLE_IMAGE = "image"

# NewSubfileType bits of the TIFF specification.
_FILETYPE_REDUCED = 1
_FILETYPE_MASK = 4
_FILETYPE_MACRO = 8

_NAME_ROLES = (
    ("label", re.compile(r"\b(label|barcode)\b", re.IGNORECASE)),
    ("macro", re.compile(r"\b(macro|overview)\b", re.IGNORECASE)),
    ("thumbnail", re.compile(r"\bthumbnail\b", re.IGNORECASE)),
)
_DESCRIPTION_ROLE = re.compile(r"(?m)^\s*(label|macro|thumbnail)\b", re.IGNORECASE)


@dataclass
class SeriesEntry:
    """One series of a TIFF file as the reader sees it."""

    index: int
    name: str
    kind: str  # tifffile series kind: "ome", "imagej", "svs", "generic", ...
    role: str  # "image", "label", "macro", "thumbnail", "reduced" or "mask"
    axes: str
    shape: tuple
    dtype: str
    photometric: str
    compression: str
    tiled: bool
    native_levels: list = field(default_factory=list)  # (rows, columns) per native level
    layout: PlaneLayout | None = None
    meta: SeriesMetadata = field(default_factory=SeriesMetadata)
    problem: str | None = None  # why an image series cannot be read, None when it can

    def channel_names(self) -> list[str | None]:
        """Return one name (or None) per raw channel of the layout."""
        if self.layout is None:
            return []
        count = 3 if self.layout.palette else self.layout.n_channels
        if self.layout.rgb or self.layout.palette:
            return ["red", "green", "blue", "alpha"][:count]
        if self.layout.drop_alpha:
            names = list(self.meta.channel_names)[:count]
            return names if len(names) == count else [None] * count
        names = list(self.meta.channel_names)
        return names if len(names) == count else [None] * count

    def _per_channel(self, values: list) -> list:
        count = len(self.channel_names())
        return list(values) if len(values) == count else [None] * count

    @property
    def metadata_colors(self) -> list:
        return self._per_channel(self.meta.channel_colors)

    @property
    def emission_nm(self) -> list:
        return self._per_channel(self.meta.emission_nm)


def _series_role(tif, series, index: int) -> str:
    name = series.name or ""
    for role, pattern in _NAME_ROLES:
        if pattern.search(name):
            return role
    keyframe = series.keyframe
    match = _DESCRIPTION_ROLE.search(keyframe.description or "")
    if match:
        return match.group(1).lower()
    if tif.is_svs and index > 0:
        # tifffile puts the baseline and its pyramid first in SVS files; every later
        # series is the thumbnail, label or macro image.
        return "thumbnail"
    subfiletype = int(keyframe.subfiletype or 0)
    if subfiletype & _FILETYPE_MASK:
        return "mask"
    if subfiletype & _FILETYPE_MACRO:
        return "macro"
    if subfiletype & _FILETYPE_REDUCED:
        return "reduced"
    return ROLE_IMAGE


def _entry(tif, index: int, ome_images) -> SeriesEntry:
    series = tif.series[index]
    keyframe = series.keyframe
    axes, shape = series.axes, tuple(int(n) for n in series.shape)
    y_axis, x_axis = axes.find("Y"), axes.find("X")
    entry = SeriesEntry(
        index=index,
        name=series.name or f"series {index}",
        kind=series.kind,
        role=_series_role(tif, series, index),
        axes=axes,
        shape=shape,
        dtype=str(series.dtype),
        photometric=_enum_name(keyframe.photometric),
        compression=_enum_name(keyframe.compression),
        tiled=bool(keyframe.is_tiled),
        native_levels=[(int(lvl.shape[y_axis]), int(lvl.shape[x_axis])) for lvl in series.levels]
        if y_axis >= 0 and x_axis >= 0 else [],
    )
    entry.problem = _layout_problem(series, axes, shape)
    if entry.problem is None:
        alpha = any(int(extra) in (1, 2) for extra in (keyframe.extrasamples or ()))
        entry.layout = plane_layout(axes, shape, int(keyframe.photometric), alpha)
    try:
        entry.meta = series_metadata(tif, index, ome_images)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        log.warning("metadata of series %d cannot be parsed (%s); pixel size and channel names are ignored",
                    index, exc)
    return entry


def _enum_name(value) -> str:
    return getattr(value, "name", str(value))


def _layout_problem(series, axes: str, shape: tuple) -> str | None:
    if "Y" not in axes or "X" not in axes:
        return f"series axes {axes!r} have no rows and columns (Y and X)"
    if any(n == 0 for n in shape):
        return f"series has zero size (shape {shape})"
    if series.dtype is None or series.dtype.kind not in "biuf":
        return f"data type {series.dtype} is not supported (only integer, float and bool)"
    return None


def catalog_tiff(tif) -> list[SeriesEntry]:
    """Describe every series of an open TiffFile, label and macro images included."""
    ome_images = parse_ome_images(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else []
    entries = [_entry(tif, index, ome_images) for index in range(len(tif.series))]
    if entries and not any(e.role == ROLE_IMAGE for e in entries):
        # Some writers flag every page as reduced-resolution; then those are the image.
        for entry in entries:
            if entry.role == "reduced":
                entry.role = ROLE_IMAGE
    return entries


def select_series(entries: list[SeriesEntry], selector: str | int, path) -> list[SeriesEntry]:
    """Pick the image series that ``read.series`` selects.

    Raises
    ------
    ImageReadError
        When the file has no image series, or the selector names a missing series or
        one that is a label, macro or thumbnail image.
    """
    images = [e for e in entries if e.role == ROLE_IMAGE]
    if not images:
        roles = ", ".join(f"{e.name} ({e.role})" for e in entries) or "none"
        raise read_error(path, f"no image series in the file (series: {roles})", "check that the file contains image data")
    if selector == "first":
        return images[:1]
    if selector == "all":
        return images
    chosen = _find_series(entries, selector)
    if chosen is None:
        names = ", ".join(f"{e.index}: {e.name!r}" for e in images)
        raise read_error(path, f"no series {selector!r} (image series are {names})",
                         "set read.series to one of them, 'first' or 'all'")
    if chosen.role != ROLE_IMAGE:
        raise read_error(path, f"series {selector!r} is the slide {chosen.role} image, which is never analysed",
                         "set read.series to an image series, 'first' or 'all'")
    return [chosen]


def _find_series(entries: list[SeriesEntry], selector: str | int) -> SeriesEntry | None:
    if isinstance(selector, int):
        return entries[selector] if selector < len(entries) else None
    for match in (lambda e: e.name == selector, lambda e: e.name.lower() == selector.lower()):
        found = [e for e in entries if match(e)]
        if found:
            return found[0]
    if selector.isdigit():
        return _find_series(entries, int(selector))
    return None


def data_past_end(series) -> str | None:
    """Return why image data of ``series`` lies past the end of its file, or None when it does not.

    Reads only the strip and tile offsets already parsed from the IFDs, so a
    truncated file is found before any pixel is decoded.
    """
    for level in series.levels:
        for page in level.pages:
            if page is None:
                continue
            size = page.parent.filehandle.size
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n > 0]
            if ends and max(ends) > size:
                return f"file is truncated: image data ends at byte {max(ends)} but the file has {size} bytes"
    return None


def check_data_in_file(series, path) -> None:
    """Raise ImageReadError when image data of ``series`` lies past the end of its file."""
    problem = data_past_end(series)
    if problem is not None:
        raise read_error(path, problem, "copy or export the image again")
