"""Describe an image file without decoding its pixels: what the reader sees and uses."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vlm_micro.io.catalog import ROLE_IMAGE, SeriesEntry, catalog_tiff, data_past_end, select_series
from vlm_micro.io.colors import channel_colors, to_hex
from vlm_micro.io.diagnose import DECODE_ERRORS, file_kind, reading_file, wrap_decode_error
from vlm_micro.io.raster import FORMAT_NAMES, level_count, raster_info, raster_truncation
from vlm_micro.io.settings import ReadSettings
from vlm_micro.io.sources import plan_levels
from vlm_micro.io.tiffread import composite_colors, frame_indices, open_tiff, render_mode

log = logging.getLogger(__name__)


def _tiff_format(tif) -> str:
    for flag, name in (("is_ome", "OME-TIFF"), ("is_imagej", "ImageJ TIFF"), ("is_svs", "Aperio SVS"),
                       ("is_ndpi", "Hamamatsu NDPI"), ("is_lsm", "Zeiss LSM"), ("is_scn", "Leica SCN")):
        if getattr(tif, flag, False):
            return name
    return "BigTIFF" if tif.is_bigtiff else "TIFF"


def _levels_dict(native_levels: list) -> list[dict]:
    plans = plan_levels(native_levels)
    return [
        {"shape": list(p.level.shape), "downsample": round(p.level.downsample, 4), "native": p.factor == 1}
        for p in plans
    ]


def _channels_dict(entry: SeriesEntry, settings: ReadSettings) -> list[dict]:
    names = entry.channel_names()
    if entry.layout.rgb or entry.layout.palette:
        return [{"index": i, "name": name, "color": None} for i, name in enumerate(names)]
    colors = channel_colors(names, entry.metadata_colors, entry.emission_nm, settings.channel_colors)
    return [
        {"index": i, "name": name, "color": to_hex(color), "emission_nm": entry.emission_nm[i]}
        for i, (name, color) in enumerate(zip(names, colors))
    ]


def _series_dict(entry: SeriesEntry, settings: ReadSettings) -> dict:
    record = {
        "index": entry.index,
        "name": entry.name,
        "role": entry.role,
        "kind": entry.kind,
        "axes": entry.axes,
        "shape": list(entry.shape),
        "dtype": entry.dtype,
        "photometric": entry.photometric,
        "compression": entry.compression,
        "tiled": entry.tiled,
        "pixel_size_um": entry.meta.pixel_size_um,
        "pixel_size_y_um": entry.meta.pixel_size_y_um,
        "pixel_size_source": entry.meta.pixel_size_source,
        "levels": _levels_dict(entry.native_levels) if entry.native_levels else [],
        "problem": entry.problem,
    }
    if entry.layout is not None:
        record["layout"] = entry.layout.describe()
        record["channels"] = _channels_dict(entry, settings)
    return record


def _reader_choice(entries: list[SeriesEntry], settings: ReadSettings, path) -> dict:
    chosen = select_series(entries, settings.series, path)
    choice = {"series": [e.index for e in chosen], "views": 0, "settings": _settings_dict(settings), "per_series": []}
    for entry in chosen:
        if entry.problem:
            choice["per_series"].append({"series": entry.index, "problem": entry.problem})
            continue
        frames = frame_indices(entry, settings.frames, path)
        colors = composite_colors(entry, settings)
        choice["views"] += len(frames)
        choice["per_series"].append({
            "series": entry.index,
            "frames": frames,
            "projection": settings.z_projection if entry.layout.n_z > 1 else None,
            "rendering": render_mode(entry),
            "channel_colors": [to_hex(c) for c in colors] if colors is not None else None,
            "fixed_axes": dict(entry.layout.fixed_axes),
        })
    return choice


def _settings_dict(settings: ReadSettings) -> dict:
    return {
        "series": settings.series,
        "frames": settings.frames,
        "z_projection": settings.z_projection,
        "percentiles": list(settings.percentiles),
        "channel_colors": {str(k): v for k, v in settings.channel_colors.items()},
    }


def _mark_truncated_series(tif, entries: list[SeriesEntry]) -> None:
    """Set the problem of each series whose image data lies past the end of the file.

    A run fails such a series with the same message (see
    :func:`vlm_micro.io.catalog.check_data_in_file`).
    """
    for entry in entries:
        if entry.problem is None:
            truncated = data_past_end(tif.series[entry.index])
            if truncated is not None:
                entry.problem = f"{truncated}; copy or export the image again"


def _inspect_tiff(path: Path, settings: ReadSettings) -> dict:
    tif = open_tiff(path)
    try:
        entries = catalog_tiff(tif)
        _mark_truncated_series(tif, entries)
        info = {"format": _tiff_format(tif), "bigtiff": bool(tif.is_bigtiff)}
        info["series_list"] = [_series_dict(e, settings) for e in entries]
        info["reader_choice"] = _reader_choice(entries, settings, path)
    except DECODE_ERRORS as exc:
        raise wrap_decode_error(path, exc, "parsing the TIFF structure") from exc
    finally:
        tif.close()
    info["series"] = sum(1 for e in entries if e.role == ROLE_IMAGE)
    main = next(s for s in info["series_list"] if s["index"] == info["reader_choice"]["series"][0])
    for key in ("axes", "shape", "dtype", "pixel_size_um", "pixel_size_source", "levels"):
        info[key] = main[key]
    info["channels"] = main.get("channels", [])
    return info


def _inspect_raster(path: Path, kind: str, settings: ReadSettings) -> dict:
    header = raster_info(path, kind)
    rows, cols = header["height"], header["width"]
    levels = [{"shape": [max(1, rows >> k), max(1, cols >> k)], "downsample": float(2**k), "native": k == 0}
              for k in range(level_count((rows, cols)))]
    grey, dtype = header["grey"], header["dtype"]
    axes, shape = ("YX", [rows, cols]) if grey else ("YXS", [rows, cols, 3])
    if grey:
        rendering = "composite"
    elif dtype == "uint8":
        rendering = "rgb"
    else:
        rendering = "rgb-normalised"
    series = {"index": 0, "name": path.name, "role": ROLE_IMAGE, "kind": kind, "axes": axes, "shape": shape,
              "dtype": dtype, "mode": header["mode"], "pixel_size_um": header["pixel_size_um"],
              "pixel_size_source": header["pixel_size_source"], "levels": levels, "problem": None}
    truncated = raster_truncation(path, kind)
    if truncated is not None:
        series["problem"] = f"{truncated}; copy or export the image again"
    per_series = {"series": 0, "frames": [None], "projection": None, "rendering": rendering}
    if series["problem"]:
        per_series = {"series": 0, "problem": series["problem"]}
    return {
        "format": FORMAT_NAMES[kind], "series": 1, "axes": axes, "shape": shape, "dtype": dtype,
        "pixel_size_um": header["pixel_size_um"], "pixel_size_source": header["pixel_size_source"],
        "levels": levels,
        "channels": [{"index": 0, "name": None, "color": to_hex(channel_colors([None], overrides=settings.channel_colors)[0])}]
        if grey else [{"index": i, "name": n, "color": None} for i, n in enumerate(("red", "green", "blue"))],
        "series_list": [series],
        "reader_choice": {"series": [0], "views": 0 if series["problem"] else 1, "settings": _settings_dict(settings),
                          "per_series": [per_series]},
    }


def inspect_image(path: str | os.PathLike, settings: ReadSettings | None = None) -> dict:
    """Describe an image file and what :func:`open_views` would read from it.

    Parameters
    ----------
    path : str or path-like
    settings : ReadSettings, optional
        Selection that ``reader_choice`` reports; defaults to ``ReadSettings()``.

    Returns
    -------
    info : dict
        JSON-able, with these keys:

        - ``path``, ``format``, ``file_size_bytes``.
        - ``series``: number of image series, label and macro images excluded.
        - ``axes``, ``shape``, ``dtype``, ``pixel_size_um`` (None when the file has
          none), ``pixel_size_source``, ``channels`` and ``levels`` of the first
          selected series.
        - ``series_list``: details of every series, label and macro images included,
          each with its ``role``.
        - ``reader_choice``: the series, frames, projection, rendering and channel
          colours that the reader uses.

    Raises
    ------
    ImageReadError
        One line naming the file, the cause and what to do.
    """
    path = Path(path)
    settings = settings or ReadSettings()
    kind = file_kind(path)
    with reading_file(path):
        info = _inspect_tiff(path, settings) if kind == "tiff" else _inspect_raster(path, kind, settings)
    first = ("path", "format", "file_size_bytes", "series", "axes", "shape", "dtype", "pixel_size_um",
             "pixel_size_source", "channels", "levels")
    info = {"path": str(path), "file_size_bytes": path.stat().st_size, **info}
    return {**{key: info[key] for key in first}, **{k: v for k, v in info.items() if k not in first}}
