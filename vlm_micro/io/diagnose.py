"""One-line ImageReadError messages: the file, the cause and what to do next."""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from PIL.Image import DecompressionBombError

from vlm_micro.errors import ImageReadError

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2", ".svs", ".ndpi", ".scn", ".lsm", ".qptiff", ".gel")
PNG_SUFFIXES = (".png",)
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")

# Vendor formats that labs often have, with the usual way to convert them.
_CONVERT_HINT = "convert it to OME-TIFF (for example with Bio-Formats bfconvert or bioformats2raw + raw2ometiff)"
_VENDOR_SUFFIXES = (".czi", ".nd2", ".lif", ".vsi", ".ims", ".mrxs", ".oib", ".oif", ".dv", ".zvi", ".sld", ".zarr", ".bif")

# Exceptions that tifffile, imagecodecs, zarr and Pillow raise for damaged or
# unsupported files. imagecodecs errors derive from RuntimeError, tifffile's from
# ValueError, Pillow's from OSError or ValueError.
DECODE_ERRORS = (
    OSError,
    ValueError,
    RuntimeError,
    KeyError,
    IndexError,
    TypeError,
    NotImplementedError,
    EOFError,
    ArithmeticError,
    struct.error,
    zlib.error,
    MemoryError,
    DecompressionBombError,
)

# Exception texts of decoders are cut to this many characters in messages.
_MAX_DETAIL = 160


# The file that this thread is reading, named in tifffile's log records.
_current_file: ContextVar[str] = ContextVar("vlm_micro_current_file", default="")


@contextmanager
def reading_file(path: str | os.PathLike) -> Iterator[None]:
    """Name ``path`` in the log records of tifffile while the block runs."""
    token = _current_file.set(str(path))
    try:
        yield
    finally:
        _current_file.reset(token)


class TifffileLogFilter(logging.Filter):
    """Put the file being read in front of tifffile's log records, and log its errors as warnings.

    tifffile logs the problems it works around, such as a tag with an invalid offset,
    without the file name and at level ERROR. What the reader cannot read it reports in
    its own one-line error, so for vlm-micro these records are warnings about a file.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        path = _current_file.get()
        if path:
            record.msg = f"{path}: {record.getMessage()}"
            record.args = None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install_tifffile_log_filter() -> None:
    """Add :class:`TifffileLogFilter` to the ``tifffile`` logger, once per process."""
    logger = logging.getLogger("tifffile")
    if not any(isinstance(existing, TifffileLogFilter) for existing in logger.filters):
        logger.addFilter(TifffileLogFilter())


def read_error(path: str | os.PathLike, cause: str, action: str) -> ImageReadError:
    """Return an ImageReadError whose message is one line: file, cause, action."""
    return ImageReadError(f"cannot read image {str(path)!r}: {_one_line(cause)}; {action}")


def _one_line(text: str, max_length: int | None = None) -> str:
    text = re.sub(r"\s+", " ", str(text)).strip()
    if max_length is None or len(text) <= max_length:
        return text
    return text[: max_length - 3] + "..."


def file_kind(path: str | os.PathLike) -> str:
    """Return ``"tiff"``, ``"png"`` or ``"jpeg"`` for a readable image file.

    The header bytes decide, so a file with a wrong extension still opens.

    Raises
    ------
    ImageReadError
        For a missing, empty or unreadable file, a broken or looping symbolic link, a
        directory, a named pipe or device, or a file whose header matches no supported
        format.
    """
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise read_error(path, "symbolic link to a missing file, or a link loop", "fix the link or give the path of the image file")
        raise read_error(path, "file not found", "check the path and the images setting")
    if path.is_dir():
        hint = _CONVERT_HINT if path.suffix.lower() in _VENDOR_SUFFIXES else "give the path of an image file"
        raise read_error(path, "is a folder, not an image file", hint)
    if not path.is_file():
        # Opening a named pipe would block until a writer appears.
        raise read_error(path, "not a regular file (a named pipe, socket or device)", "give the path of an image file")
    try:
        with open(path, "rb") as handle:
            header = handle.read(16)
    except OSError as exc:
        raise read_error(path, f"file cannot be opened ({exc.strerror or exc})", "check its permissions") from exc
    if not header:
        raise read_error(path, "file is empty (0 bytes)", "copy or export the image again")
    if header[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if header[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if header[:3] == b"\xff\xd8\xff":
        return "jpeg"
    raise _unknown_header(path)


def _unknown_header(path: Path) -> ImageReadError:
    last = path.suffix.lower()
    expected = {s: "TIFF" for s in TIFF_SUFFIXES} | {s: "PNG" for s in PNG_SUFFIXES} | {s: "JPEG" for s in JPEG_SUFFIXES}
    if last in expected:
        return read_error(
            path,
            f"not a {expected[last]} file although its extension is {last!r} (the header bytes do not match)",
            "check that the file was exported completely and in the format its name says",
        )
    if last in _VENDOR_SUFFIXES:
        return read_error(path, f"unsupported file type {last!r}", _CONVERT_HINT)
    extension_text = repr(last) if last else "(no extension)"
    return read_error(
        path,
        f"not an image, or an unsupported file type {extension_text}",
        "supported are TIFF, OME-TIFF, ImageJ TIFF, SVS and other pyramidal TIFF, PNG and JPEG",
    )


def _codec_problem(exc: BaseException) -> str | None:
    """Return "missing" or "unknown" when ``exc`` reports an unavailable codec."""
    # tifffile raises KeyError("<COMPRESSION.X: n> requires the 'imagecodecs' package")
    # when imagecodecs lacks a codec, and ValueError("n is not a known COMPRESSION")
    # or KeyError("... not supported") for compressions it cannot decode at all.
    text = str(exc)
    if type(exc).__name__ == "DelayedImportError" or "imagecodecs" in text:
        return "missing"
    if isinstance(exc, (KeyError, ValueError)) and ("COMPRESSION" in text or "PREDICTOR" in text):
        return "unknown"
    return None


_TRUNCATION_WORDS = ("truncat", "eof", "end of file", "too small", "unexpected end")


def wrap_decode_error(path: str | os.PathLike, exc: BaseException, step: str = "reading") -> ImageReadError:
    """Translate an exception of a decoder into a one-line ImageReadError.

    ``step`` names what the reader was doing, such as "reading the low-resolution sample".
    """
    text = _one_line(f"{type(exc).__name__}: {exc}", _MAX_DETAIL)
    lowered = str(exc).lower()
    codec = _codec_problem(exc)
    if codec == "missing":
        return read_error(
            path,
            f"missing codec while {step} ({text})",
            "install imagecodecs (pip install imagecodecs) or re-export the file with LZW, Deflate, zstd or JPEG compression",
        )
    if codec == "unknown":
        return read_error(path, f"unsupported compression while {step} ({text})",
                          "re-export the file with LZW, Deflate, zstd or JPEG compression")
    if isinstance(exc, MemoryError):
        return read_error(path, f"out of memory while {step}", "use a pyramidal (tiled) TIFF or more memory")
    if isinstance(exc, DecompressionBombError):
        return read_error(path, f"image too large to decode whole ({text})",
                          "convert it to a tiled pyramidal TIFF, which is read region by region")
    if isinstance(exc, (EOFError, struct.error)) or any(word in lowered for word in _TRUNCATION_WORDS):
        return read_error(path, f"file is truncated ({text})", "copy or export the image again")
    return read_error(
        path,
        f"file is damaged or has a layout the reader does not support, found while {step} ({text})",
        "copy or export the image again, as OME-TIFF if the problem persists",
    )
