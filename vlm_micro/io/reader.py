"""Entry point of the readers: a file path becomes image views."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from vlm_micro.errors import ImageReadError
from vlm_micro.io.diagnose import file_kind, read_error, reading_file
from vlm_micro.io.raster import open_raster_views
from vlm_micro.io.settings import ReadSettings
from vlm_micro.io.tiffread import open_tiff_views
from vlm_micro.io.view import ImageView

log = logging.getLogger(__name__)


def _check_override(path: Path, pixel_size_um: float | None) -> float | None:
    if pixel_size_um is None:
        return None
    try:
        value = float(pixel_size_um)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ImageReadError(
            f"invalid pixel size override {pixel_size_um!r} for {str(path)!r}; give a positive number in um/px or leave it empty"
        )
    return value


def open_views(
    path: str | os.PathLike,
    settings: ReadSettings | None = None,
    pixel_size_um: float | None = None,
) -> list[ImageView]:
    """Open the planes of an image file as lazy RGB uint8 views.

    Parameters
    ----------
    path : str or path-like
        TIFF, BigTIFF, OME-TIFF, ImageJ TIFF, SVS or other pyramidal TIFF, PNG or JPEG
        file. The header bytes decide the format, not the extension.
    settings : ReadSettings, optional
        Series, frame, z projection, channel colour and percentile choices; defaults
        to ``ReadSettings()``.
    pixel_size_um : float, optional
        Level-0 pixel size in micrometres per pixel that replaces the one stored in the
        file (for example from the sample sheet).

    Returns
    -------
    views : list of ImageView
        One view per selected series and time frame, in file order. Each view's
        ``plane`` dict records ``series``, ``series_name``, ``frame``,
        ``projection``, ``channels`` and how the channels were rendered. Views of
        one TIFF file share its file handle; call ``close()`` on each view (or drop
        them) to release it.

    Raises
    ------
    ImageReadError
        With a one-line message naming the file, the cause and what to do, for a
        missing, empty, truncated, damaged or unsupported file, a missing codec, or a
        series or frame selection the file does not have.

    Notes
    -----
    Pixel data of TIFF files are read on demand, region by region, from tifffile's
    zarr store, with a cache of decoded blocks bounded per file, so memory does not grow
    with the size of a tiled TIFF. PNG and JPEG files are decoded whole; TIFF files
    stored in strips decode whole strips, so their memory grows with the image width.
    """
    path = Path(path)
    settings = settings or ReadSettings()
    override = _check_override(path, pixel_size_um)
    kind = file_kind(path)
    with reading_file(path):
        if kind == "tiff":
            views = open_tiff_views(path, settings)
        else:
            views = open_raster_views(path, kind, settings)
    if not views:
        raise read_error(path, "no image plane selected", "check the read settings")
    if override is not None:
        for view in views:
            view.pixel_size_um = override
            view.plane["pixel_size_source"] = "override"
    log.info("opened %s: %d view(s), %s, pixel size %s um/px", path, len(views),
             views[0].levels[0].shape, views[0].pixel_size_um)
    return views
