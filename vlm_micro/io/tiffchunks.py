"""Direct decoding of the tiles of tiled TIFF pages, without tifffile's zarr store.

Reading a region through tifffile's zarr store adds about 70% to the CPU time of
decoding its tiles (0.43 against 0.25 ms per 256 px JPEG tile, BENCHMARKS.md, section
Tiling). For tiled pages whose samples are
stored contiguously (PlanarConfiguration 1), :class:`TiledLevel` reads the encoded
bytes of the tiles that a region needs. It decodes each one with the page's own
decode function (``TiffPage.decode`` of tifffile 2026.3), which covers every
compression that tifffile reads. Other layouts (strips, planar samples, volumetric
tiles, bilevel images) keep the zarr store.

Reading is split in two steps so that decoding can run outside the file lock and in
threads: :meth:`TiledLevel.fetch` reads the encoded bytes (under the file lock), and
:meth:`FetchedRegion.decode` decodes and assembles them.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np

from vlm_micro.io.layout import PlaneLayout

log = logging.getLogger(__name__)

# TIFF Compression values whose tiles need the JPEGTables of the page.
_JPEG_COMPRESSIONS = {6, 7, 33007, 34892}


@dataclass(frozen=True)
class Span:
    """Part of one tile row (or column) that a sliced read selects."""

    tile: int  # tile index along the axis
    out: slice  # rows (columns) of the output array
    inside: slice  # rows (columns) of the decoded tile, with the step of the read


def tile_spans(selection: slice, tile_side: int) -> list[Span]:
    """Split ``range(start, stop, step)`` of one axis into the tiles that contain it.

    ``selection`` must have ``0 <= start`` and a positive or absent step.
    """
    start, stop, step = selection.start, selection.stop, selection.step or 1
    count = len(range(start, stop, step))
    spans = []
    if count == 0:
        return spans
    last = start + (count - 1) * step
    for tile in range(start // tile_side, last // tile_side + 1):
        tile_start = tile * tile_side
        first = max(0, -(-(tile_start - start) // step))
        end = min(count, -(-(tile_start + tile_side - start) // step))
        if first >= end:
            continue  # the step jumps over this tile
        offset = start + first * step - tile_start
        spans.append(Span(tile, slice(first, end), slice(offset, offset + (end - first - 1) * step + 1, step)))
    return spans


class TiledLevel:
    """Tiles of the pages of one native pyramid level of a TIFF series.

    Build with :meth:`create`, which returns None for layouts this class does not read.

    Parameters
    ----------
    level : tifffile.TiffPageSeries
        The series at one pyramid level; its pages are indexed in C order by the axes
        that come before the axes of one page.
    layout : PlaneLayout
        Axis roles of the series.
    """

    def __init__(self, level, layout: PlaneLayout) -> None:
        keyframe = level.keyframe
        self.level = level
        self.layout = layout
        self.page_axes = keyframe.axes
        self.leading_axes = layout.axes[: len(layout.axes) - len(self.page_axes)]
        self.leading_shape = tuple(int(n) for n in level.shape[: len(self.leading_axes)])
        self.tile_shape = (int(keyframe.tilelength), int(keyframe.tilewidth))
        self.image_shape = (int(keyframe.imagelength), int(keyframe.imagewidth))
        self.tiles_across = math.ceil(self.image_shape[1] / self.tile_shape[1])
        self.samples = int(keyframe.samplesperpixel) if self.page_axes == "YXS" else 1
        self.dtype = np.dtype(keyframe.dtype)
        self.fill_value = keyframe.nodata
        self.is_jpeg = int(keyframe.compression) in _JPEG_COMPRESSIONS

    @classmethod
    def create(cls, level, layout: PlaneLayout) -> "TiledLevel | None":
        """Return a TiledLevel for ``level``, or None when its pages need the zarr store."""
        keyframe = level.keyframe
        page_axes = getattr(keyframe, "axes", "")
        reasons = []
        if not keyframe.is_tiled:
            reasons.append("pages are stored in strips")
        if int(keyframe.tiledepth) != 1 or int(keyframe.imagedepth) != 1:
            reasons.append("tiles are volumetric")
        if int(keyframe.planarconfig) != 1 and int(keyframe.samplesperpixel) > 1:
            reasons.append("samples are stored in separate planes")
        if keyframe.dtype is None or np.dtype(keyframe.dtype) == np.bool_:
            reasons.append(f"data type {keyframe.dtype} is not read tile by tile")
        if page_axes not in ("YX", "YXS"):
            reasons.append(f"page axes {page_axes!r} are not YX or YXS")
        elif level.axes != layout.axes or not layout.axes.endswith(page_axes):
            reasons.append(f"series axes {level.axes!r} do not end with the page axes {page_axes!r}")
        elif tuple(level.shape[len(level.shape) - len(page_axes):]) != tuple(keyframe.shape):
            reasons.append(f"page shape {keyframe.shape} differs from the series shape {level.shape}")
        elif math.prod(level.shape[: len(level.shape) - len(page_axes)]) != len(level):
            reasons.append(f"{len(level)} pages do not match the series shape {level.shape}")
        if reasons:
            log.debug("series level %s read through the zarr store: %s", level.shape, "; ".join(reasons))
            return None
        return cls(level, layout)

    def page_indices(self, frame: int | None, z: int | None) -> list[int]:
        """Return the pages that hold one z plane of one frame, one per channel page, in channel order."""
        layout = self.layout
        choices = []
        for axis, size in zip(self.leading_axes, self.leading_shape):
            if axis in layout.channel_axes:
                choices.append(range(size))
            elif axis == layout.frame_axis:
                choices.append([frame or 0])
            elif axis == layout.z_axis:
                choices.append([z or 0])
            else:
                choices.append([0])
        if not choices:
            return [0]
        return [int(np.ravel_multi_index(index, self.leading_shape)) for index in itertools.product(*choices)]

    def fetch(self, page_indices: list[int], rows: slice, cols: slice) -> "FetchedRegion":
        """Read the encoded tiles that a region of the given pages needs.

        Call with the file lock held, because this seeks and reads the shared file handle.
        ``rows`` and ``cols`` are in-bounds slices of this level, with an optional step.
        """
        shape = (len(range(rows.start, rows.stop, rows.step or 1)), len(range(cols.start, cols.stop, cols.step or 1)))
        return self._fetch_spans(page_indices, tile_spans(rows, self.tile_shape[0]),
                                 tile_spans(cols, self.tile_shape[1]), shape)

    def read(self, page_indices: list[int], rows: slice, cols: slice) -> np.ndarray:
        """Read and decode a region one row of tiles at a time; call with the file lock held.

        Unlike :meth:`fetch`, the encoded bytes in memory at once are those of one row
        of tiles, so a strided read over a whole level stays small.
        """
        n_cols = len(range(cols.start, cols.stop, cols.step or 1))
        col_spans = tile_spans(cols, self.tile_shape[1])
        out = np.empty((len(range(rows.start, rows.stop, rows.step or 1)), n_cols,
                        self.samples * len(page_indices)), dtype=self.dtype)
        for row_span in tile_spans(rows, self.tile_shape[0]):
            rows_out = row_span.out.stop - row_span.out.start
            local = Span(row_span.tile, slice(0, rows_out), row_span.inside)
            out[row_span.out] = self._fetch_spans(page_indices, [local], col_spans, (rows_out, n_cols)).decode()
        return out

    def _fetch_spans(self, page_indices, row_spans, col_spans, shape) -> "FetchedRegion":
        handle = self.level.parent.filehandle
        pages = []
        for page_index in page_indices:
            page = self.level[page_index]
            encoded = {}
            for row_span in row_spans:
                for col_span in col_spans:
                    index = row_span.tile * self.tiles_across + col_span.tile
                    encoded[index] = _read_tile(handle, page, index)
            pages.append((page, encoded))
        return FetchedRegion(self, pages, row_spans, col_spans, shape)


def _read_tile(handle, page, index: int) -> bytes | None:
    """Return the encoded bytes of one tile, or None for a page or tile missing from the file."""
    if page is None:
        return None
    try:
        offset, bytecount = page.dataoffsets[index], page.databytecounts[index]
    except IndexError:
        return None  # some scanners omit the last row of tiles
    if offset == 0 or bytecount == 0:
        return None
    handle.seek(offset)
    return handle.read(bytecount)


@dataclass
class FetchedRegion:
    """Encoded tiles of a region of one or more pages, ready to decode without the file lock."""

    level: TiledLevel
    pages: list  # (page, {tile index: bytes or None}) per page, in channel order
    row_spans: list[Span]
    col_spans: list[Span]
    shape: tuple[int, int]

    def decode(self) -> np.ndarray:
        """Decode the tiles into a (rows, columns, samples x pages) array of the file's dtype.

        Missing pages and tiles read as the page's NoData value (0 when it has none),
        as in tifffile's zarr store.
        """
        whole_tile = self._whole_tile()
        return whole_tile if whole_tile is not None else self._assemble()

    def _assemble(self) -> np.ndarray:
        level = self.level
        out = np.empty((*self.shape, level.samples * len(self.pages)), dtype=level.dtype)
        for page_number, (page, encoded) in enumerate(self.pages):
            channels = slice(page_number * level.samples, (page_number + 1) * level.samples)
            for row_span in self.row_spans:
                for col_span in self.col_spans:
                    index = row_span.tile * level.tiles_across + col_span.tile
                    target = out[row_span.out, col_span.out, channels]
                    tile = _decode_tile(level, page, index, encoded[index])
                    if tile is None:
                        target[...] = level.fill_value
                        continue
                    part = tile[row_span.inside, col_span.inside]
                    if part.shape[:2] != target.shape[:2]:
                        # A tile shorter than the tile size (not seen in valid files) is padded.
                        target[...] = level.fill_value
                        target[: part.shape[0], : part.shape[1]] = part
                    else:
                        target[...] = part
        return out

    def _whole_tile(self) -> np.ndarray | None:
        """Return the decoded tile itself when the region is exactly one whole tile of one page."""
        level = self.level
        if len(self.pages) != 1 or len(self.row_spans) != 1 or len(self.col_spans) != 1:
            return None
        row_span, col_span = self.row_spans[0], self.col_spans[0]
        for span, side in ((row_span, level.tile_shape[0]), (col_span, level.tile_shape[1])):
            if span.inside.start != 0 or span.inside.stop != side or (span.inside.step or 1) != 1:
                return None
        page, encoded = self.pages[0]
        index = row_span.tile * level.tiles_across + col_span.tile
        tile = _decode_tile(level, page, index, encoded[index])
        if tile is None or tile.shape[:2] != level.tile_shape or tile.dtype != level.dtype:
            return self._assemble()  # missing or unusual tile: decoded again, padded
        return tile


def _decode_tile(level: TiledLevel, page, index: int, data: bytes | None) -> np.ndarray | None:
    """Decode one tile into a (tile rows, tile columns, samples) array, None when missing."""
    if data is None:
        return None
    keyframe = page.keyframe
    arguments = {}
    if level.is_jpeg:
        arguments = {"jpegtables": page.jpegtables, "jpegheader": keyframe.jpegheader}
    segment, _, _ = keyframe.decode(data, index, **arguments)
    if segment is None:
        return None
    return segment.reshape(segment.shape[-3], segment.shape[-2], -1)
