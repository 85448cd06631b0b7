"""Views of PNG and JPEG files.

These formats have no random access, so the whole image is decoded into memory.
PNG pixels are decoded by imagecodecs (Pillow 13 reduces 16-bit RGB PNG to 8 bits),
JPEG pixels and the metadata of both by Pillow.
"""

from __future__ import annotations

import logging
import math
import mmap
from pathlib import Path

import numpy as np

from vlm_micro.io.diagnose import DECODE_ERRORS, read_error, wrap_decode_error
from vlm_micro.io.metadata import dpi_to_um
from vlm_micro.io.rendered import build_view
from vlm_micro.io.settings import ReadSettings
from vlm_micro.io.sources import MIN_LEVEL_SIDE, ArraySource
from vlm_micro.io.view import ArrayView, ImageView, guess_modality
from vlm_micro.io.colors import channel_colors, to_hex

log = logging.getLogger(__name__)

FORMAT_NAMES = {"png": "PNG", "jpeg": "JPEG"}


def raster_info(path: Path, kind: str) -> dict:
    """Read the header of a PNG or JPEG file: size, layout and pixel size, no pixel data."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            mode = image.mode
            info = dict(image.info)
    except DECODE_ERRORS as exc:
        raise wrap_decode_error(path, exc, f"parsing the {FORMAT_NAMES[kind]} header") from exc
    if width <= 0 or height <= 0:
        raise read_error(path, f"image has zero size ({width} x {height})", "export the image again")
    grey = mode in ("1", "L", "LA", "I", "F") or mode.startswith("I;16")
    dtype = "uint16" if mode.startswith("I;16") else "uint8"
    if kind == "png":
        grey, dtype = _png_layout(path)
    dpi = info.get("dpi")
    pixel_size = dpi_to_um(float(dpi[0])) if dpi else None
    source = None
    if pixel_size is not None:
        source = "PNG pHYs" if kind == "png" else "JPEG density"
    return {"width": width, "height": height, "mode": mode, "grey": grey, "dtype": dtype,
            "pixel_size_um": pixel_size, "pixel_size_source": source}


def raster_truncation(path: Path, kind: str) -> str | None:
    """Return why a PNG or JPEG file is cut short, or None when its structure reaches its end.

    Reads no pixel data. A PNG is truncated when a chunk ends past the end of the file.
    A JPEG is truncated when no end-of-image marker follows its last start-of-scan
    marker, which Pillow, the JPEG decoder, rejects as well.

    NOTE: a PNG cut exactly between two chunks is not found here, because it may still
    decode (the end chunk carries no data). The run reports it when decoding fails.
    """
    size = path.stat().st_size
    if kind == "png":
        with open(path, "rb") as handle:
            offset = 8  # after the PNG signature
            while offset + 8 <= size:
                handle.seek(offset)
                header = handle.read(8)
                end = offset + 12 + int.from_bytes(header[:4], "big")  # length, type, data, CRC
                if end > size:
                    return f"file is truncated: PNG data ends at byte {end} but the file has {size} bytes"
                if header[4:8] == b"IEND":
                    return None
                offset = end
        return None
    if size == 0:
        return None
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            start_of_scan, end_of_image = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    except (OSError, ValueError):
        return None  # a file system without memory mapping: the decoder still finds the cut
    if start_of_scan >= 0 and end_of_image < start_of_scan:
        return f"file is truncated: the JPEG image data has no end marker before the end of the file ({size} bytes)"
    return None


def _png_layout(path: Path) -> tuple[bool, str]:
    """Return (grey, dtype) from the PNG IHDR chunk, which Pillow reports lossily."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    bit_depth, color_type = header[24], header[25]
    # Colour types 0 and 4 are grey without and with alpha; 2, 3 and 6 are RGB, palette, RGBA.
    return color_type in (0, 4), "uint16" if bit_depth == 16 else "uint8"


def _decode(path: Path, kind: str) -> np.ndarray:
    from PIL import Image

    if kind == "png":
        import imagecodecs

        if imagecodecs.PNG.available:
            return np.asarray(imagecodecs.png_decode(path.read_bytes()))
    with Image.open(path) as image:
        image.load()
        if image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            image = image.convert("RGB")
        elif image.mode == "P":
            image = image.convert("RGBA")
        return np.asarray(image)


def decode_raster(path: Path, kind: str) -> np.ndarray:
    """Decode a PNG or JPEG file into a (rows, columns, C) array.

    Grey images have C = 1, grey with alpha and RGBA lose the alpha channel, and
    palette images are expanded to RGB. Bilevel images become uint8 0/1.
    """
    try:
        array = _decode(path, kind)
    except DECODE_ERRORS as exc:
        raise wrap_decode_error(path, exc, f"decoding the {FORMAT_NAMES[kind]} data") from exc
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise read_error(path, f"unsupported layout: pixel array of shape {array.shape}", "save it as grey or RGB")
    if array.shape[2] in (2, 4):
        array = array[:, :, :-1]
    return np.ascontiguousarray(array)


def level_count(shape: tuple[int, int]) -> int:
    """Return how many halvings bring the longer side of ``shape`` to MIN_LEVEL_SIDE."""
    longest = max(shape)
    return 1 if longest <= MIN_LEVEL_SIDE else 1 + math.ceil(math.log2(longest / MIN_LEVEL_SIDE))


def _check_series_selector(path: Path, settings: ReadSettings) -> None:
    if settings.series not in ("first", "all", 0, "0"):
        raise read_error(path, f"read.series is {settings.series!r} but the file has one series (0)",
                         "set read.series to 'first', 'all' or 0")


def open_raster_views(path: Path, kind: str, settings: ReadSettings) -> list[ImageView]:
    """Open the single view of a PNG or JPEG file."""
    _check_series_selector(path, settings)
    info = raster_info(path, kind)
    truncated = raster_truncation(path, kind)
    if truncated is not None:
        raise read_error(path, truncated, "copy or export the image again")
    array = decode_raster(path, kind)
    plane = {
        "series": 0,
        "series_name": path.name,
        "frame": None,
        "n_frames": 1,
        "frame_axis": None,
        "projection": None,
        "z_planes": 1,
        "axes": "YX" if array.shape[2] == 1 else "YXS",
        "dtype": str(array.dtype),
        "pixel_size_source": info["pixel_size_source"],
    }
    pixel_size = info["pixel_size_um"]
    if array.shape[2] == 3 and array.dtype == np.uint8:
        plane.update(channels=["rgb"], rendering="rgb")
        return [ArrayView.from_rgb(array, path=str(path), pixel_size_um=pixel_size, modality=guess_modality(array),
                                   plane=plane, n_levels=level_count(array.shape[:2]))]
    if array.shape[2] == 3:
        plane["channels"] = ["rgb"]
        return [build_view(str(path), ArraySource(array), "rgb-normalised", settings.percentiles,
                           pixel_size_um=pixel_size, plane=plane)]
    colors = np.asarray(channel_colors([None], overrides=settings.channel_colors), dtype=np.float32)
    plane.update(channels=["channel 0"], channel_colors=[to_hex(c) for c in colors])
    return [build_view(str(path), ArraySource(array), "composite", settings.percentiles, colors=colors,
                       pixel_size_um=pixel_size, plane=plane)]
