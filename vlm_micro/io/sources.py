"""Raw plane sources: read regions of one plane (one series, one frame) by level.

A source returns raw (rows, columns, C) arrays in the file's dtype, after frame
selection and z projection. Levels are the native pyramid levels of the file followed
by coarser levels computed on the fly from the coarsest native level, halving until the
longer side is at most :data:`MIN_LEVEL_SIDE` pixels. Sources of TIFF series are in
:mod:`vlm_micro.io.tiffsource`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

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


# Native levels with a shorter longer side than this are too small to sample. Computed
# levels replace them and the levels after them.
MIN_NATIVE_LEVEL_SIDE = 64


def usable_native_levels(native_shapes: list[tuple[int, int]]) -> tuple[int, str]:
    """Count the leading native levels that can serve as pyramid levels of level 0.

    A level is usable when it is smaller than the level before it, at least
    :data:`MIN_NATIVE_LEVEL_SIDE` pixels on its longer side, and one downsample factor
    maps level 0 onto it within one pixel on both axes. Writers round level sizes up
    or down, but a level with another aspect ratio (a cropped or padded copy) would put
    tiles in the wrong place, and a 1 px level would give the intensity limits.

    Returns
    -------
    count : int
        Usable levels, level 0 included; the levels from ``count`` on are not used.
    reason : str
        Why level ``count`` is not usable; empty when every level is.
    """
    rows0, cols0 = native_shapes[0]
    for index in range(1, len(native_shapes)):
        rows, cols = native_shapes[index]
        previous = native_shapes[index - 1]
        if rows >= previous[0] and cols >= previous[1]:
            return index, f"level {index} ({rows} x {cols} px) is not smaller than level {index - 1}"
        if max(rows, cols) < MIN_NATIVE_LEVEL_SIDE:
            return index, f"level {index} ({rows} x {cols} px) is below {MIN_NATIVE_LEVEL_SIDE} px"
        # Downsample factors d with |rows0 / d - rows| <= 1, and likewise for the columns.
        low = max(rows0 / (rows + 1), cols0 / (cols + 1))
        high = min(rows0 / (rows - 1) if rows > 1 else math.inf, cols0 / (cols - 1) if cols > 1 else math.inf)
        if low > high:
            return index, (f"level {index} ({rows} x {cols} px) has another aspect ratio than level 0 "
                           f"({rows0} x {cols0} px)")
    return len(native_shapes), ""


def plan_levels(native_shapes: list[tuple[int, int]]) -> list[LevelPlan]:
    """Plan native levels plus computed coarser levels.

    Parameters
    ----------
    native_shapes : list of (rows, columns)
        Shapes of the native levels, level 0 first, coarser after. Only the leading
        levels that :func:`usable_native_levels` accepts are used.
    """
    count, reason = usable_native_levels(native_shapes)
    if reason:
        log.info("pyramid %s: %s, so it and the levels after it are not used; coarser levels are computed",
                 [tuple(shape) for shape in native_shapes], reason)
    native_shapes = native_shapes[:count]
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


def project_z(read_z, n_z: int, projection: str) -> np.ndarray:
    """Project z planes with ``projection`` ("max" or "mean"), reading one plane at a time.

    ``read_z(z)`` returns plane z; at most two planes are in memory at once.
    """
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
