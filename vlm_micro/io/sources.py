"""Raw plane sources: read regions of one plane (one series, one frame) by level.

A source returns raw (rows, columns, C) arrays in the file's dtype, after frame
selection and z projection. Levels are the native pyramid levels of the file followed
by coarser levels computed on the fly from the coarsest native level, halving until the
longer side is at most :data:`MIN_LEVEL_SIDE` pixels.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from vlm_micro.io.layout import PlaneLayout
from vlm_micro.io.tiffchunks import TiledLevel
from vlm_micro.io.view import Level

log = logging.getLogger(__name__)

MIN_LEVEL_SIDE = 512

# A computed level averages sub x sub samples per output pixel, taken with a stride of
# factor // sub pixels of the native level. This anti-aliased estimate needs memory in
# proportion to the output size, not to the image size.
_MAX_POOL_SAMPLES = 4

# Maximum number of samples (rows x columns x channels) in memory at once while
# computing a region of a coarser level. Larger regions are processed in bands of rows.
_MAX_BAND_VALUES = 1 << 24

# Decoded blocks kept per open TIFF file. A tile smaller than the file's chunks (for
# example 64 px tiles from 240 px JPEG tiles) would otherwise decode each chunk again.
BLOCK_CACHE_BYTES = 128 << 20

# Cached blocks span whole chunks and at least this many pixels per side. Blocks read
# through the zarr store are large, to amortise its cost per call; blocks of directly
# decoded tiles are small, so that a band of blocks across a wide slide fits the cache.
_MIN_BLOCK_SIDE = 512
_MIN_DIRECT_BLOCK_SIDE = 128

# Threads that decode the missing tiled blocks of one region read. The codecs of
# imagecodecs release the GIL, so decoding overlaps with the caller's work. Set to 1 to
# decode in the calling thread only.
DECODE_THREADS = 2

# Computed levels up to this size (at 8 bytes per value) are cached whole.
_WHOLE_LEVEL_BYTES = 32 << 20

# Cache of computed levels of an in-memory plane (PNG, JPEG).
_ARRAY_CACHE_BYTES = 64 << 20


@dataclass(frozen=True)
class LevelPlan:
    """Source level and extra subsampling of one pyramid level."""

    native: int  # index of the native level read
    factor: int  # extra subsampling of that native level, 1 for native levels
    level: Level


def plan_levels(native_shapes: list[tuple[int, int]]) -> list[LevelPlan]:
    """Plan native levels plus computed coarser levels.

    Parameters
    ----------
    native_shapes : list of (rows, columns)
        Shapes of the native levels, level 0 first, coarser after.
    """
    rows0, cols0 = native_shapes[0]
    plans = []
    for index, (rows, cols) in enumerate(native_shapes):
        downsample = 1.0 if index == 0 else (rows0 / rows + cols0 / cols) / 2
        plans.append(LevelPlan(index, 1, Level((int(rows), int(cols)), float(downsample))))
    base = plans[-1]
    rows, cols = base.level.shape
    factor = 2
    while max(math.ceil(rows / (factor // 2)), math.ceil(cols / (factor // 2))) > MIN_LEVEL_SIDE:
        shape = (math.ceil(rows / factor), math.ceil(cols / factor))
        plans.append(LevelPlan(base.native, factor, Level(shape, base.level.downsample * factor)))
        factor *= 2
    return plans


def _block_mean(block: np.ndarray, rows: int, cols: int, sub: int) -> np.ndarray:
    """Average sub x sub blocks of a (<= rows*sub, <= cols*sub, C) array, ignoring NaN.

    Blocks cut by the edge of the image average the pixels they have; a block without
    finite values is NaN.
    """
    is_float = block.dtype.kind == "f"
    work = np.float64 if block.dtype.itemsize >= 4 and block.dtype != np.float32 else np.float32
    total = np.zeros((rows, cols, block.shape[2]), dtype=work)
    count = np.zeros(total.shape if is_float else (rows, cols, 1), dtype=work)
    # Summing the sub * sub strided sub-grids is much faster than a reduction over
    # the non-contiguous axes of a (rows, sub, cols, sub, C) reshape.
    for i in range(sub):
        for j in range(sub):
            part = block[i::sub, j::sub]
            part_rows, part_cols = part.shape[:2]
            if is_float:
                valid = np.isfinite(part)
                total[:part_rows, :part_cols] += np.where(valid, part, 0)
                count[:part_rows, :part_cols] += valid
            else:
                total[:part_rows, :part_cols] += part
                count[:part_rows, :part_cols] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


class BlockCache:
    """Least-recently-used cache of decoded blocks, bounded in bytes.

    A block larger than the whole capacity is still kept, alone, so a file stored as one
    strip decodes once.
    """

    def __init__(self, capacity_bytes: int = BLOCK_CACHE_BYTES, lock: threading.RLock | None = None) -> None:
        self.capacity_bytes = capacity_bytes
        self.lock = lock or threading.RLock()
        self._blocks: OrderedDict = OrderedDict()
        self._bytes = 0

    def get(self, key, load):
        """Return the block of ``key``, calling ``load()`` under the lock on a miss."""
        with self.lock:
            block = self.lookup(key)
            if block is None:
                block = load()
                self.put(key, block)
            return block

    def lookup(self, key):
        """Return the block of ``key`` and mark it as recently used, or None on a miss."""
        with self.lock:
            block = self._blocks.get(key)
            if block is not None:
                self._blocks.move_to_end(key)
            return block

    def put(self, key, block: np.ndarray) -> None:
        """Store a block, evicting the least recently used ones beyond the capacity."""
        with self.lock:
            previous = self._blocks.pop(key, None)
            if previous is not None:
                self._bytes -= previous.nbytes
            self._blocks[key] = block
            self._bytes += block.nbytes
            while self._bytes > self.capacity_bytes and len(self._blocks) > 1:
                _, evicted = self._blocks.popitem(last=False)
                self._bytes -= evicted.nbytes

    def clear(self) -> None:
        with self.lock:
            self._blocks.clear()
            self._bytes = 0


class PlaneSource:
    """Base class: level plans and computed levels over ``_read_native``.

    Parameters
    ----------
    plans : list of LevelPlan
    n_channels : int
        Channels of the raw arrays that reads return.
    cache : BlockCache
        Cache shared with the other sources of the same file.
    cache_key : tuple
        Prefix of this source's keys in ``cache``.
    """

    def __init__(self, plans: list[LevelPlan], n_channels: int, cache: BlockCache, cache_key: tuple = ()) -> None:
        self.plans = plans
        self.n_channels = n_channels
        self.cache = cache
        self.cache_key = cache_key

    @property
    def levels(self) -> list[Level]:
        return [plan.level for plan in self.plans]

    def _read_native(self, native: int, rows: slice, cols: slice) -> np.ndarray:
        """Read (rows, columns, C) from a native level; slices may have a step."""
        raise NotImplementedError

    def read_raw(self, y: int, x: int, height: int, width: int, level: int) -> np.ndarray:
        """Read an in-bounds region of a level as a raw (height, width, C) array.

        Native levels keep the file's dtype; computed levels are float32 or float64
        averages in which NaN marks pixels without data. A computed level small enough
        for :data:`_WHOLE_LEVEL_BYTES` is computed whole once and cached, because the
        intensity sample, the thumbnail and foreground masks all read it.
        """
        plan = self.plans[level]
        if plan.factor == 1:
            return self._read_native(plan.native, slice(y, y + height), slice(x, x + width))
        if self._is_small(level):
            return self._whole_level(level)[y : y + height, x : x + width]
        return self._read_pooled(plan, y, x, height, width)

    def _is_small(self, level: int) -> bool:
        plan = self.plans[level]
        rows, cols = plan.level.shape
        return plan.factor > 1 and rows * cols * self.n_channels * 8 <= _WHOLE_LEVEL_BYTES

    def _whole_level(self, level: int) -> np.ndarray:
        def compute():
            plan = self.plans[level]
            rows, cols = plan.level.shape
            # The next finer level, when cached too, is a quarter of the work of the
            # native level it was computed from.
            if self._is_small(level - 1):
                return _block_mean(self._whole_level(level - 1), rows, cols, 2)
            return self._read_pooled(plan, 0, 0, rows, cols)

        return self.cache.get(self.cache_key + ("level", level), compute)

    def _read_pooled(self, plan: LevelPlan, y: int, x: int, height: int, width: int) -> np.ndarray:
        factor = plan.factor
        sub = min(factor, _MAX_POOL_SAMPLES)
        step = factor // sub
        native_rows, native_cols = self.plans[plan.native].level.shape
        band = max(1, _MAX_BAND_VALUES // max(1, width * sub * sub * self.n_channels))
        parts = []
        for start in range(0, height, band):
            rows = min(band, height - start)
            row_slice = slice((y + start) * factor, min((y + start + rows) * factor, native_rows), step)
            col_slice = slice(x * factor, min((x + width) * factor, native_cols), step)
            block = self._read_native(plan.native, row_slice, col_slice)
            parts.append(_block_mean(block, rows, width, sub))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def close(self) -> None:
        """Release file handles; reading afterwards is an error."""


class ArraySource(PlaneSource):
    """Plane held in memory as a (rows, columns, C) array."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        super().__init__(plan_levels([array.shape[:2]]), array.shape[2], BlockCache(_ARRAY_CACHE_BYTES))

    def _read_native(self, native, rows, cols):
        return self.array[rows, cols]


class SharedTiff:
    """An open TiffFile shared by the sources of one file, with their block cache.

    The file closes when the last source using it is closed or garbage-collected.
    Reads hold :attr:`lock`, because a TiffFile has one file position.
    """

    def __init__(self, tif) -> None:
        self.tif = tif
        self.lock = threading.RLock()
        self.cache = BlockCache(lock=self.lock)
        self._users = 0

    def acquire(self) -> None:
        with self.lock:
            self._users += 1

    def release(self) -> None:
        with self.lock:
            self._users -= 1
            if self._users <= 0 and not self.tif.filehandle.closed:
                self.cache.clear()
                self.tif.close()


class TiffSeriesSource(PlaneSource):
    """One frame of one TIFF series.

    Native levels of tiled pages with contiguous samples decode the tiles they need
    directly (:class:`~vlm_micro.io.tiffchunks.TiledLevel`). Other levels are read
    through tifffile's zarr store.

    Parameters
    ----------
    shared : SharedTiff
    series_index : int
    layout : PlaneLayout
    frame : int or None
        Index along ``layout.frame_axis``; None when the series has no frame axis.
    projection : str
        ``"max"``, ``"mean"`` or ``"middle"``; used only when ``layout.n_z > 1``.
    direct : bool
        Decode tiled levels directly; False reads every level through the zarr store.
    """

    def __init__(self, shared: SharedTiff, series_index: int, layout: PlaneLayout,
                 frame: int | None, projection: str, direct: bool = True) -> None:
        series = shared.tif.series[series_index]
        y_axis, x_axis = layout.axes.index("Y"), layout.axes.index("X")
        shapes = [(lvl.shape[y_axis], lvl.shape[x_axis]) for lvl in series.levels]
        super().__init__(plan_levels(shapes), 3 if layout.palette else layout.n_channels, shared.cache,
                         (series_index, frame, projection))
        self.shared = shared
        self.series_index = series_index
        self.layout = layout
        self.frame = frame
        self.projection = projection
        self.direct = direct
        self._arrays: dict[int, object] = {}
        self._tiled: dict[int, TiledLevel | None] = {}
        self._colormap = _palette_lut(series.keyframe) if layout.palette else None
        shared.acquire()
        self._finalizer = weakref.finalize(self, shared.release)

    def close(self) -> None:
        self._finalizer()

    def _array(self, native: int):
        if native not in self._arrays:
            import zarr

            store = self.shared.tif.series[self.series_index].aszarr(level=native)
            self._arrays[native] = zarr.open(store, mode="r")
        return self._arrays[native]

    def _tiled_level(self, native: int) -> TiledLevel | None:
        """Return the direct tile reader of a native level, None when it needs the zarr store."""
        if native not in self._tiled:
            level = self.shared.tif.series[self.series_index].levels[native]
            self._tiled[native] = TiledLevel.create(level, self.layout) if self.direct else None
        return self._tiled[native]

    def _index(self, rows: slice, cols: slice, z: int | None) -> tuple:
        layout = self.layout
        index = []
        for axis in layout.axes:
            if axis == "Y":
                index.append(rows)
            elif axis == "X":
                index.append(cols)
            elif axis in layout.channel_axes:
                index.append(slice(None))
            elif axis == layout.frame_axis:
                index.append(self.frame or 0)
            elif axis == layout.z_axis:
                index.append(z)
            else:
                index.append(0)
        return tuple(index)

    def _read_plane(self, native: int, rows: slice, cols: slice, z: int | None) -> np.ndarray:
        tiled = self._tiled_level(native)
        with self.shared.lock:
            if tiled is not None:
                return self._finish(tiled.read(tiled.page_indices(self.frame, z), rows, cols))
            data = np.asarray(self._array(native)[self._index(rows, cols, z)])
        kept_axes = [a for a in self.layout.axes if a in "YX" or a in self.layout.channel_axes]
        order = [kept_axes.index("Y"), kept_axes.index("X")] + [i for i, a in enumerate(kept_axes) if a not in "YX"]
        data = data.transpose(order).reshape(data.shape[order[0]], data.shape[order[1]], -1)
        return self._finish(data)

    def _finish(self, data: np.ndarray) -> np.ndarray:
        """Turn (rows, columns, channels) as stored into the raw channels that reads return."""
        if self.layout.drop_alpha:
            data = data[..., :-1]
        if data.dtype == np.bool_:
            data = data.astype(np.uint8)
        if self._colormap is not None:
            data = self._colormap[np.clip(data[..., 0], 0, len(self._colormap) - 1)]
        return data

    def _block_shape(self, native: int) -> tuple[int, int]:
        tiled = self._tiled_level(native)
        if tiled is not None:
            chunks, min_side = tiled.tile_shape, _MIN_DIRECT_BLOCK_SIDE
        else:
            array_chunks = self._array(native).chunks
            chunks = tuple(int(array_chunks[self.layout.axes.index(axis)]) for axis in "YX")
            min_side = _MIN_BLOCK_SIDE
        return tuple(chunk * math.ceil(min_side / chunk) for chunk in chunks)

    def _read_native(self, native, rows, cols):
        if (rows.step or 1) != 1 or (cols.step or 1) != 1:
            return self._read_projected(native, rows, cols)
        block_rows, block_cols = self._block_shape(native)
        level_rows, level_cols = self.plans[native].level.shape
        out = None
        pending = []  # (y0, x0, key, function that returns the block) of blocks not in the cache

        def paste(y0: int, x0: int, block: np.ndarray) -> None:
            nonlocal out
            if out is None:
                out = np.empty((rows.stop - rows.start, cols.stop - cols.start, block.shape[2]), block.dtype)
            top, left = max(rows.start, y0), max(cols.start, x0)
            bottom, right = min(rows.stop, y0 + block.shape[0]), min(cols.stop, x0 + block.shape[1])
            out[top - rows.start : bottom - rows.start, left - cols.start : right - cols.start] = \
                block[top - y0 : bottom - y0, left - x0 : right - x0]

        with self.shared.lock:
            for block_y in range(rows.start // block_rows, (rows.stop - 1) // block_rows + 1):
                for block_x in range(cols.start // block_cols, (cols.stop - 1) // block_cols + 1):
                    y0, x0 = block_y * block_rows, block_x * block_cols
                    key = self.cache_key + (native, block_y, block_x)
                    block = self.cache.lookup(key)
                    if block is not None:
                        paste(y0, x0, block)
                        continue
                    block_slices = (slice(y0, min(y0 + block_rows, level_rows)),
                                    slice(x0, min(x0 + block_cols, level_cols)))
                    pending.append((y0, x0, key, self._prepare_block(native, *block_slices)))
        # Directly decoded blocks decode here, outside the file lock and in threads.
        for (y0, x0, key, _), block in zip(pending, _run_all([load for *_, load in pending])):
            covered = (rows.start <= y0 and y0 + block.shape[0] <= rows.stop
                       and cols.start <= x0 and x0 + block.shape[1] <= cols.stop)
            # A block that this read covers whole is needed again only by a later read
            # of the same pixels, which a row-by-row tiling pass never makes, so it is
            # not cached. Caching it cost about 20% more CPU time per 256 px tile on a
            # large slide (fresh memory pages for every decoded tile) for no hits.
            # NOTE: a second pass over the same tiles decodes them again.
            if not covered:
                self.cache.put(key, block)
            paste(y0, x0, block)
        return out

    def _prepare_block(self, native: int, rows: slice, cols: slice):
        """Read what a block needs from the file and return a function that returns the block.

        Call with the file lock held. Blocks of levels read through the zarr store are
        read here, so the function only returns them.
        """
        tiled = self._tiled_level(native)
        if tiled is None:
            block = self._read_projected(native, rows, cols)
            return lambda: block
        n_z = self.layout.n_z
        if n_z <= 1 or self.projection == "middle":
            fetched = tiled.fetch(tiled.page_indices(self.frame, n_z // 2 if n_z > 1 else 0), rows, cols)
            return lambda: self._finish(fetched.decode())
        planes = [tiled.fetch(tiled.page_indices(self.frame, z), rows, cols) for z in range(n_z)]
        return lambda: _project(lambda z: self._finish(planes[z].decode()), n_z, self.projection)

    def _read_projected(self, native, rows, cols):
        n_z = self.layout.n_z
        if n_z <= 1:
            return self._read_plane(native, rows, cols, 0)
        if self.projection == "middle":
            return self._read_plane(native, rows, cols, n_z // 2)
        return _project(lambda z: self._read_plane(native, rows, cols, z), n_z, self.projection)


_decode_pool: ThreadPoolExecutor | None = None
_decode_pool_pid = 0
_decode_pool_lock = threading.Lock()


def _run_all(loads: list) -> list:
    """Call each function of ``loads`` and return the results in order, in threads when several."""
    global _decode_pool, _decode_pool_pid
    if DECODE_THREADS <= 1 or len(loads) < 2:
        return [load() for load in loads]
    with _decode_pool_lock:
        # A forked child process inherits the pool object but not its threads.
        if _decode_pool is None or _decode_pool_pid != os.getpid():
            _decode_pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="vlm-micro-decode")
            _decode_pool_pid = os.getpid()
        pool = _decode_pool
    return list(pool.map(lambda load: load(), loads))


def _project(read_z, n_z: int, projection: str) -> np.ndarray:
    """Reduce z planes one at a time, so that at most two planes are in memory."""
    if projection == "max":
        result = read_z(0)
        reduce = np.fmax if result.dtype.kind == "f" else np.maximum
        for z in range(1, n_z):
            result = reduce(result, read_z(z))
        return result
    first = read_z(0)
    work = np.float64 if first.dtype.itemsize >= 4 and first.dtype != np.float32 else np.float32
    total = np.zeros(first.shape, dtype=work)
    count = np.zeros(first.shape, dtype=np.int32)
    for z in range(n_z):
        plane = first if z == 0 else read_z(z)
        valid = np.isfinite(plane) if plane.dtype.kind == "f" else np.ones(plane.shape, dtype=bool)
        total += np.where(valid, plane, 0)
        count += valid
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def _palette_lut(keyframe) -> np.ndarray:
    """Return the page colormap as a (N, 3) uint8 lookup table."""
    colormap = np.asarray(keyframe.colormap)
    if colormap.max() > 255:
        colormap = colormap >> 8
    return colormap.T.astype(np.uint8)
