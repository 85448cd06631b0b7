"""Plane sources of TIFF series: tiles decoded directly or read through tifffile's zarr store."""

from __future__ import annotations

import logging
import math
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from vlm_micro.io.layout import PlaneLayout
from vlm_micro.io.sources import BlockCache, PlaneSource, plan_levels, project_z
from vlm_micro.io.tiffchunks import TiledLevel

log = logging.getLogger(__name__)

# Cached blocks span whole chunks and at least this many pixels per side. Blocks read
# through the zarr store are large, which amortises its cost per call. Blocks of
# directly decoded tiles are small, so that a band of blocks across a wide slide fits
# the cache.
_MIN_BLOCK_SIDE = 512
_MIN_DIRECT_BLOCK_SIDE = 128

# Threads that decode the missing tiled blocks of one region read. The codecs of
# imagecodecs release the GIL, so decoding overlaps with the caller's work. Set to 1 to
# decode in the calling thread only.
DECODE_THREADS = 2


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
        found, pending = self._find_blocks(native, rows, cols)
        loads = [load for *_, load in pending]
        # Directly decoded blocks decode here, outside the file lock and in threads.
        decoded = _run_all(loads) if self._tiled_level(native) is not None else [load() for load in loads]
        out = None
        for y0, x0, block in found:
            out = _paste(out, rows, cols, y0, x0, block)
        for (y0, x0, key, _), block in zip(pending, decoded):
            covered = (rows.start <= y0 and y0 + block.shape[0] <= rows.stop
                       and cols.start <= x0 and x0 + block.shape[1] <= cols.stop)
            # A block that this read covers whole is needed again only by a later read
            # of the same pixels, which a row-by-row tiling pass never makes, so it is
            # not cached. Caching it cost about 20% more CPU time per 256 px tile on a
            # large slide (fresh memory pages for every decoded tile) for no hits.
            # NOTE: a second pass over the same tiles decodes them again.
            if not covered:
                self.cache.put(key, block)
            out = _paste(out, rows, cols, y0, x0, block)
        return out

    def _find_blocks(self, native: int, rows: slice, cols: slice) -> tuple[list, list]:
        """Split the blocks under a region into cached ones and ones still to load.

        Returns ``found``, a list of (y0, x0, block), and ``pending``, a list of (y0,
        x0, cache key, function that returns the block), where (y0, x0) is the block's
        top-left pixel.
        """
        block_rows, block_cols = self._block_shape(native)
        level_rows, level_cols = self.plans[native].level.shape
        found, pending = [], []
        with self.shared.lock:
            for block_y in range(rows.start // block_rows, (rows.stop - 1) // block_rows + 1):
                for block_x in range(cols.start // block_cols, (cols.stop - 1) // block_cols + 1):
                    y0, x0 = block_y * block_rows, block_x * block_cols
                    key = self.cache_key + (native, block_y, block_x)
                    block = self.cache.lookup(key)
                    if block is not None:
                        found.append((y0, x0, block))
                        continue
                    block_slices = (slice(y0, min(y0 + block_rows, level_rows)),
                                    slice(x0, min(x0 + block_cols, level_cols)))
                    pending.append((y0, x0, key, self._prepare_block(native, *block_slices)))
        return found, pending

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
        return lambda: project_z(lambda z: self._finish(planes[z].decode()), n_z, self.projection)

    def _read_projected(self, native, rows, cols):
        n_z = self.layout.n_z
        if n_z <= 1:
            return self._read_plane(native, rows, cols, 0)
        if self.projection == "middle":
            return self._read_plane(native, rows, cols, n_z // 2)
        return project_z(lambda z: self._read_plane(native, rows, cols, z), n_z, self.projection)


def _paste(out: np.ndarray | None, rows: slice, cols: slice, y0: int, x0: int, block: np.ndarray) -> np.ndarray:
    """Copy the part of a block at (y0, x0) that lies in the region (rows, cols) into ``out``.

    Allocates ``out`` with the block's channels and dtype when it is None.
    """
    if out is None:
        out = np.empty((rows.stop - rows.start, cols.stop - cols.start, block.shape[2]), block.dtype)
    top, left = max(rows.start, y0), max(cols.start, x0)
    bottom, right = min(rows.stop, y0 + block.shape[0]), min(cols.stop, x0 + block.shape[1])
    out[top - rows.start : bottom - rows.start, left - cols.start : right - cols.start] = \
        block[top - y0 : bottom - y0, left - x0 : right - x0]
    return out


_decode_pool: ThreadPoolExecutor | None = None
_decode_pool_key: tuple[int, int] = (0, 0)  # (process id, threads) the pool was made for
_decode_pool_lock = threading.Lock()


def _run_all(loads: list) -> list:
    """Call each function of ``loads`` and return the results in order, in threads when several."""
    global _decode_pool, _decode_pool_key
    if DECODE_THREADS <= 1 or len(loads) < 2:
        return [load() for load in loads]
    with _decode_pool_lock:
        # A forked child process inherits the pool object but not its threads.
        key = (os.getpid(), DECODE_THREADS)
        if _decode_pool is None or _decode_pool_key != key:
            if _decode_pool is not None and _decode_pool_key[0] == key[0]:
                _decode_pool.shutdown(wait=False)  # DECODE_THREADS changed
            _decode_pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="vlm-micro-decode")
            _decode_pool_key = key
        pool = _decode_pool
    # One task per thread, each calling every DECODE_THREADS-th function, costs less
    # than one task per function.
    shares = [loads[start :: DECODE_THREADS] for start in range(DECODE_THREADS)]
    results = list(pool.map(lambda share: [load() for load in share], shares))
    ordered = [None] * len(loads)
    for start, share_results in enumerate(results):
        ordered[start :: DECODE_THREADS] = share_results
    return ordered


def _palette_lut(keyframe) -> np.ndarray:
    """Return the page colormap as a (N, 3) uint8 lookup table."""
    colormap = np.asarray(keyframe.colormap)
    if colormap.max() > 255:
        colormap = colormap >> 8
    return colormap.T.astype(np.uint8)
