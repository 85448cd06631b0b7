"""A corpus of broken, odd and hostile image files, each with its expected outcome.

Every case writes its file (or folder, link, pipe) itself, so the corpus needs no data
files. ``expect`` is either :class:`Reads` (the reader opens the file and the listed
properties hold) or :class:`Fails` (an ImageReadError whose one-line message names the
file and contains each listed phrase).
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import tifffile
from PIL import Image

SHELL_NAME = "'\";$(touch pwned).tif"  # a shell would run `touch pwned` if it saw this name unquoted
MARKUP_NAME = "<img src=x onerror=alert(1)><b>x<b>.tif"  # a file name cannot contain '/', so no closing tags
NON_ASCII_NAME = "ümlaut été 細胞.tif"


@dataclass(frozen=True)
class Reads:
    """The file opens; ``shape`` is (rows, columns) of the first view."""

    shape: tuple[int, int] | None = None
    n_views: int | None = None
    pixel_size_um: float | None | str = "any"  # "any" skips the check
    all_black: bool = False  # every pixel of the first view is 0


@dataclass(frozen=True)
class Fails:
    """Opening or reading the file raises ImageReadError containing every phrase."""

    phrases: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Case:
    name: str  # file name inside the corpus folder
    build: Callable[[Path], None]
    expect: Reads | Fails
    run_level: bool = False  # also part of the folder of the `vlm-micro run` corpus test


def _random_grey(shape, dtype=np.uint8, seed=0) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(0, min(int(info.max), 4095), size=shape, endpoint=True).astype(dtype)


def _blobs(rows: int = 96, cols: int = 96) -> np.ndarray:
    """A grey uint8 image with bright discs on a dark background."""
    yy, xx = np.mgrid[:rows, :cols]
    image = np.full((rows, cols), 10, np.uint8)
    for cy, cx in ((20, 20), (50, 70), (75, 30)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 64] = 200
    return image


def _tiff_bytes(data: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, data, **kwargs)
    return buffer.getvalue()


def _png_bytes(data: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(data).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(data: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(data)
    if mode:
        image = image.convert(mode)
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def good_tiff(path: Path) -> None:
    tifffile.imwrite(path, _blobs())


# --------------------------------------------------------------------------- broken files


def truncated_tiff(path: Path) -> None:
    data = _tiff_bytes(_random_grey((64, 64)), compression="zlib", tile=(16, 16))
    # tifffile writes the IFD before the image data, so the cut removes tile data only.
    ifd_offset = struct.unpack("<I", data[4:8])[0]
    path.write_bytes(data[: max(ifd_offset + 200, len(data) // 2)])


def truncated_tiff_header(path: Path) -> None:
    path.write_bytes(_tiff_bytes(_random_grey((64, 64)))[:10])


def truncated_png(path: Path) -> None:
    path.write_bytes(_png_bytes(_random_grey((64, 64, 3)))[:300])


def truncated_jpeg(path: Path) -> None:
    path.write_bytes(_jpeg_bytes(_random_grey((64, 64, 3)))[:200])


def empty_file(path: Path) -> None:
    path.write_bytes(b"")


def text_file(path: Path) -> None:
    path.write_text("plate 3, well B2: see the lab notebook\n", encoding="utf-8")


def zip_file(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("image.tif", _tiff_bytes(_random_grey((8, 8))))


def random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 512, dtype=np.uint8).tobytes())


def huge_tiff_one_strip(path: Path) -> None:
    """A TIFF whose header claims 100000 x 100000 pixels in one strip of 64 bytes."""
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tags = tif.pages[0].tags
        tags["ImageWidth"].overwrite(100_000)
        tags["ImageLength"].overwrite(100_000)
        tags["RowsPerStrip"].overwrite(100_000)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(path: Path) -> None:
    """A PNG whose header claims 100000 x 100000 grey pixels with 1 kB of data."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                     + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + _png_chunk(b"IEND", b""))


def bigtiff_offset_past_end(path: Path) -> None:
    tifffile.imwrite(path, _random_grey((32, 32), np.uint16), bigtiff=True)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["StripOffsets"].overwrite(10_000_000)


def unknown_extension(path: Path) -> None:
    random_bytes(path)


# --------------------------------------------------------------------------- odd but valid files


def png_named_tif(path: Path) -> None:
    path.write_bytes(_png_bytes(_random_grey((40, 30, 3))))


def tiff_named_jpg(path: Path) -> None:
    path.write_bytes(_tiff_bytes(_random_grey((30, 40))))


def nan_only(path: Path) -> None:
    tifffile.imwrite(path, np.full((48, 48), np.nan, np.float32))


def all_zero(path: Path) -> None:
    tifffile.imwrite(path, np.zeros((48, 48), np.uint16))


def one_pixel_wide(path: Path) -> None:
    tifffile.imwrite(path, _random_grey((200, 1)))


def one_by_one(path: Path) -> None:
    tifffile.imwrite(path, np.array([[7]], np.uint8))


def thousand_planes(path: Path) -> None:
    tifffile.imwrite(path, _random_grey((1000, 5, 5)), photometric="minisblack")


def malformed_ome_xml(path: Path) -> None:
    description = '<?xml version="1.0"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image><Pixels SizeX="9999"'
    tifffile.imwrite(path, _blobs(), description=description, metadata=None)


def ome_claims_missing_planes(path: Path) -> None:
    """OME-XML that declares 9 time points x 3 channels x 50 z planes for one stored plane."""
    xml = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
           '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint8" SizeX="16" SizeY="16" '
           'SizeZ="50" SizeC="3" SizeT="9"><TiffData/></Pixels></Image></OME>')
    tifffile.imwrite(path, np.full((16, 16), 9, np.uint8), description=xml, metadata=None)


def zero_resolution(path: Path) -> None:
    tifffile.imwrite(path, _blobs(), resolution=(0, 0), resolutionunit="CENTIMETER")


def negative_resolution(path: Path) -> None:
    tifffile.imwrite(path, _blobs(), resolution=(1e4, 1e4), resolutionunit="CENTIMETER")
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["XResolution"].overwrite((-4, 1), dtype=10)  # SRATIONAL
        tif.pages[0].tags["YResolution"].overwrite((-4, 1), dtype=10)


def bigtiff_odd_offset(path: Path) -> None:
    """A BigTIFF whose only strip starts at an odd byte offset."""
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), bigtiff=True)
    with tifffile.TiffFile(path) as tif:
        offset = int(tif.pages[0].dataoffsets[0])
    if offset % 2 == 0:
        data = path.read_bytes()
        path.write_bytes(data[:offset] + b"\x00" + data[offset:])
        with tifffile.TiffFile(path, mode="r+b") as tif:
            tif.pages[0].tags["StripOffsets"].overwrite(offset + 1)


def ifd_loop(path: Path) -> None:
    """A TIFF whose first IFD names itself as the next IFD."""
    data = bytearray(_tiff_bytes(_blobs()))
    offset = struct.unpack("<I", data[4:8])[0]
    n_tags = struct.unpack("<H", data[offset:offset + 2])[0]
    next_pointer = offset + 2 + 12 * n_tags
    data[next_pointer:next_pointer + 4] = struct.pack("<I", offset)
    path.write_bytes(bytes(data))


def cmyk_jpeg(path: Path) -> None:
    path.write_bytes(_jpeg_bytes(_random_grey((32, 48, 3)), mode="CMYK"))


def grey16_png(path: Path) -> None:
    Image.fromarray(_random_grey((32, 32), np.uint16)).save(path)


# --------------------------------------------------------------------------- hostile file system entries


def folder(path: Path) -> None:
    path.mkdir()
    good_tiff(path / "inside.tif")


def symlink_loop(path: Path) -> None:
    os.symlink(path.name, path)


def dangling_symlink(path: Path) -> None:
    os.symlink(path.parent / "does-not-exist.tif", path)


def named_pipe(path: Path) -> None:
    os.mkfifo(path)


def device_link(path: Path) -> None:
    os.symlink("/dev/zero", path)


CASES = [
    Case("empty.tif", empty_file, Fails(("empty",)), run_level=True),
    Case("truncated.tif", truncated_tiff, Fails(("truncated",)), run_level=True),
    Case("truncated_header.tif", truncated_tiff_header, Fails()),
    Case("truncated.png", truncated_png, Fails()),
    Case("truncated.jpg", truncated_jpeg, Fails(), run_level=True),
    Case("notes.tif", text_file, Fails(("not a TIFF file",))),
    Case("notes.png", text_file, Fails(("not a PNG file",))),
    Case("archive.tif", zip_file, Fails(("not a TIFF file",)), run_level=True),
    Case("data.xyz", unknown_extension, Fails(("unsupported file type '.xyz'",))),
    Case("huge_one_strip.tif", huge_tiff_one_strip, Fails(("damaged",)), run_level=True),
    Case("huge.png", huge_png, Fails(("too large",))),
    Case("big_offset_past_end.tif", bigtiff_offset_past_end, Fails()),
    Case("broken\nname.tif", text_file, Fails(("not a TIFF file",))),
    Case(SHELL_NAME, truncated_tiff, Fails(("truncated",)), run_level=True),
    Case("png_named.tif", png_named_tif, Reads(shape=(40, 30), n_views=1)),
    Case("tiff_named.jpg", tiff_named_jpg, Reads(shape=(30, 40), n_views=1)),
    Case(MARKUP_NAME, good_tiff, Reads(shape=(96, 96), n_views=1)),
    Case(NON_ASCII_NAME, good_tiff, Reads(shape=(96, 96), n_views=1)),
    Case(" spaced  name .tif", good_tiff, Reads(shape=(96, 96), n_views=1)),
    Case("nan_only.tif", nan_only, Reads(shape=(48, 48), all_black=True), run_level=True),
    Case("all_zero.tif", all_zero, Reads(shape=(48, 48), all_black=True)),
    Case("one_pixel_wide.tif", one_pixel_wide, Reads(shape=(200, 1)), run_level=True),
    Case("one_by_one.tif", one_by_one, Reads(shape=(1, 1))),
    Case("thousand_planes.tif", thousand_planes, Reads(shape=(5, 5), n_views=1000)),
    Case("bad_ome.ome.tif", malformed_ome_xml, Reads(shape=(96, 96), n_views=1)),
    Case("ome_missing_planes.ome.tif", ome_claims_missing_planes, Reads(shape=(16, 16), n_views=9)),
    Case("zero_resolution.tif", zero_resolution, Reads(shape=(96, 96), pixel_size_um=None)),
    Case("negative_resolution.tif", negative_resolution, Reads(shape=(96, 96), pixel_size_um=None)),
    Case("bigtiff_odd_offset.tif", bigtiff_odd_offset, Reads(shape=(64, 64), n_views=1)),
    Case("ifd_loop.tif", ifd_loop, Reads(shape=(96, 96), n_views=1)),
    Case("cmyk.jpg", cmyk_jpeg, Reads(shape=(32, 48), n_views=1)),
    Case("grey16.png", grey16_png, Reads(shape=(32, 32), n_views=1)),
    Case("folder.tif", folder, Fails(("is a folder",)), run_level=True),
    Case("loop.tif", symlink_loop, Fails(("link loop",)), run_level=True),
    Case("dangling.tif", dangling_symlink, Fails(("symbolic link",))),
    Case("pipe.tif", named_pipe, Fails(("not a regular file",)), run_level=True),
    Case("device.tif", device_link, Fails(("not a regular file",))),
]


def build_case(case: Case, folder_path: Path) -> Path:
    """Write the file of ``case`` into ``folder_path`` and return its path."""
    path = folder_path / case.name
    case.build(path)
    return path
