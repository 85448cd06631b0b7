"""Views of TIFF-based files: TIFF, BigTIFF, OME-TIFF, ImageJ hyperstacks, SVS."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vlm_micro.errors import ImageReadError
from vlm_micro.io.catalog import SeriesEntry, catalog_tiff, check_data_in_file, select_series
from vlm_micro.io.colors import channel_colors, to_hex
from vlm_micro.io.diagnose import DECODE_ERRORS, install_tifffile_log_filter, read_error, wrap_decode_error
from vlm_micro.io.rendered import build_view
from vlm_micro.io.settings import ReadSettings
from vlm_micro.io.tiffsource import SharedTiff, TiffSeriesSource
from vlm_micro.io.view import ImageView

log = logging.getLogger(__name__)
install_tifffile_log_filter()


def open_tiff(path: Path):
    """Open a TiffFile, translating tifffile errors into ImageReadError."""
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except DECODE_ERRORS as exc:
        raise wrap_decode_error(path, exc, "parsing the TIFF structure") from exc
    try:
        if len(tif.pages) == 0:
            raise read_error(path, "no valid TIFF page: the header points past the data (truncated or damaged file)",
                             "copy or export the image again")
        first = tif.pages.first
        rows, cols = int(first.imagelength), int(first.imagewidth)
    except DECODE_ERRORS as exc:
        tif.close()
        raise wrap_decode_error(path, exc, "parsing the first TIFF page") from exc
    except ImageReadError:
        tif.close()
        raise
    if rows == 0 or cols == 0:
        tif.close()
        raise read_error(path, f"image has zero size ({cols} x {rows} pixels)", "export the image again")
    return tif


def render_mode(entry: SeriesEntry) -> str:
    """Return how the raw channels of a series become RGB (see Renderer)."""
    layout = entry.layout
    if layout.palette:
        return "rgb"
    if layout.rgb:
        return "rgb" if entry.dtype == "uint8" else "rgb-normalised"
    return "composite"


def frame_indices(entry: SeriesEntry, frames: str | int, path) -> list[int | None]:
    """Return the frame indices that ``read.frames`` selects, or [None] without a frame axis."""
    layout = entry.layout
    if layout.frame_axis is None:
        return [None]
    if frames == "all":
        return list(range(layout.n_frames))
    if frames >= layout.n_frames:
        raise read_error(
            path,
            f"read.frames is {frames} but series {entry.index} has {layout.n_frames} frames (0..{layout.n_frames - 1})",
            "set read.frames to a valid index or 'all'",
        )
    return [frames]


def composite_colors(entry: SeriesEntry, settings: ReadSettings) -> np.ndarray | None:
    """Return the (C, 3) colours of a composite series, None for RGB series."""
    if render_mode(entry) != "composite":
        return None
    colors = channel_colors(entry.channel_names(), entry.metadata_colors, entry.emission_nm, settings.channel_colors)
    return np.asarray(colors, dtype=np.float32)


def plane_record(entry: SeriesEntry, frame: int | None, settings: ReadSettings, colors) -> dict:
    """Build the JSON-able plane dict of a view: what the view is within the file."""
    layout = entry.layout
    names = [name if name else f"channel {i}" for i, name in enumerate(entry.channel_names())]
    record = {
        "series": entry.index,
        "series_name": entry.name,
        "frame": frame,
        "n_frames": layout.n_frames,
        "frame_axis": layout.frame_axis,
        "projection": settings.z_projection if layout.n_z > 1 else None,
        "z_planes": layout.n_z,
        "channels": names if colors is not None else ["rgb"],
        "axes": entry.axes,
        "dtype": entry.dtype,
        "pixel_size_source": entry.meta.pixel_size_source,
    }
    if colors is not None:
        record["channel_colors"] = [to_hex(c) for c in colors]
    if layout.fixed_axes:
        record["fixed_axes"] = dict(layout.fixed_axes)
    return record


def _series_views(shared: SharedTiff, entry: SeriesEntry, settings: ReadSettings, path: str) -> list[ImageView]:
    if entry.problem:
        raise read_error(path, f"unsupported layout: {entry.problem}",
                         "re-export it as OME-TIFF with integer or float planes of Y and X axes")
    check_data_in_file(shared.tif.series[entry.index], path)
    size_x, size_y = entry.meta.pixel_size_um, entry.meta.pixel_size_y_um
    if size_x and size_y and abs(size_y / size_x - 1) > 0.01:
        log.warning("%s series %d: pixels are %.4g x %.4g um (x by y); tiles use the x size",
                    path, entry.index, size_x, size_y)
    colors = composite_colors(entry, settings)
    views = []
    for frame in frame_indices(entry, settings.frames, path):
        source = TiffSeriesSource(shared, entry.index, entry.layout, frame, settings.z_projection)
        views.append(build_view(
            path,
            source,
            render_mode(entry),
            settings.percentiles,
            colors=colors,
            pixel_size_um=entry.meta.pixel_size_um,
            plane=plane_record(entry, frame, settings, colors),
            modality_hint=entry.meta.modality_hint,
            # tifffile writes bool masks as MinIsWhite; True still means foreground.
            invert=entry.layout.inverted and entry.dtype != "bool",
        ))
    return views


def open_tiff_views(path: Path, settings: ReadSettings) -> list[ImageView]:
    """Open the views of a TIFF-based file that ``settings`` selects.

    Every view shares one open TiffFile, which closes with the last view.
    """
    tif = open_tiff(path)
    shared = SharedTiff(tif)
    shared.acquire()  # keep the file open while the views are built
    views: list[ImageView] = []
    try:
        entries = catalog_tiff(tif)
        for entry in select_series(entries, settings.series, path):
            views.extend(_series_views(shared, entry, settings, str(path)))
    except DECODE_ERRORS as exc:
        for view in views:
            view.close()
        raise wrap_decode_error(path, exc, "opening the image") from exc
    except BaseException:
        for view in views:
            view.close()
        raise
    finally:
        shared.release()
    return views
