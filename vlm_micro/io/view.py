"""The image view: one 2-D RGB uint8 plane of an image, read lazily by region.

Readers turn a file into one or more views (one per series and time frame that the
configuration selects). Tiling, labelling and reporting only ever see views, so they do
not care about file formats, dtypes, channels or z-stacks.

Coordinates are (row, column) in pixels of the requested pyramid level. Level 0 is the
full-resolution plane; ``levels[k].downsample`` is how many level-0 pixels one pixel of
level k spans.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

MODALITIES = ("fluorescence", "brightfield")


@dataclass(frozen=True)
class Level:
    """One pyramid level of a view."""

    shape: tuple[int, int]  # (rows, columns) in pixels of this level
    downsample: float  # level-0 pixels per pixel of this level, >= 1


@dataclass
class ImageView(ABC):
    """Lazy RGB uint8 view of one plane of an image.

    Attributes
    ----------
    path : str
        Source file.
    levels : list of Level
        Level 0 first, then coarser levels in increasing ``downsample``.
    pixel_size_um : float or None
        Level-0 pixel size in micrometres per pixel; None when the file does not say and
        no override was given (the image is then processed at native scale and reported
        as uncalibrated).
    modality : str
        ``"fluorescence"`` (dark background) or ``"brightfield"`` (bright background).
    plane : dict
        What this plane is within the file: ``series`` (int), ``series_name``,
        ``frame`` (time index or None), ``projection`` (z projection used or None),
        ``channels`` (names used for the colour composite), and anything else a reader
        wants recorded in the tables.
    """

    path: str
    levels: list[Level]
    pixel_size_um: float | None
    modality: str
    plane: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """Level-0 (rows, columns)."""
        return self.levels[0].shape

    @property
    def pad_value(self) -> int:
        """Background grey value used to pad regions outside the image."""
        return 255 if self.modality == "brightfield" else 0

    @abstractmethod
    def _read(self, y: int, x: int, height: int, width: int, level: int) -> np.ndarray:
        """Read an in-bounds region of ``level`` as an (height, width, 3) uint8 array.

        Pixels shared with a cache or an in-memory image are returned as a view. An
        array that owns its data must be referenced nowhere else, because
        :meth:`read_region` returns it without a copy.
        """

    def read_region(self, y: int, x: int, height: int, width: int, level: int = 0) -> np.ndarray:
        """Read a region of a pyramid level as RGB uint8.

        Parameters
        ----------
        y, x : int
            Top-left corner in pixels of ``level``; may lie outside the image.
        height, width : int
            Region size in pixels of ``level``.
        level : int
            Pyramid level index.

        Returns
        -------
        region : (height, width, 3) uint8 ndarray
            Parts outside the image are filled with :attr:`pad_value`.
        """
        if height <= 0 or width <= 0:
            raise ValueError(f"region size must be positive, got {height} x {width}")
        rows, cols = self.levels[level].shape
        if y >= 0 and x >= 0 and y + height <= rows and x + width <= cols:
            region = self._read(y, x, height, width, level)
            if region.flags.owndata and region.flags.writeable and region.flags.c_contiguous:
                return region
            return region.copy()
        out = np.full((height, width, 3), self.pad_value, dtype=np.uint8)
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + height, rows), min(x + width, cols)
        if y1 > y0 and x1 > x0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._read(y0, x0, y1 - y0, x1 - x0, level)
        return out

    def best_level(self, downsample: float) -> int:
        """Return the coarsest level whose downsample does not exceed ``downsample``."""
        best = 0
        for index, level in enumerate(self.levels):
            if level.downsample <= downsample * (1 + 1e-6):
                best = index
        return best

    def close(self) -> None:
        """Release the file handles of this view; reading afterwards is an error.

        Views that hold no file do nothing. Views also release their files when they
        are garbage-collected.
        """

    def __enter__(self) -> "ImageView":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def thumbnail(self, max_side: int = 1024) -> np.ndarray:
        """Return the whole plane as RGB uint8 with its longer side at most ``max_side``."""
        from skimage.transform import resize

        rows, cols = self.shape
        downsample = max(1.0, max(rows, cols) / max_side)
        level = self.best_level(downsample)
        level_rows, level_cols = self.levels[level].shape
        image = self.read_region(0, 0, level_rows, level_cols, level)
        out_rows = max(1, round(rows / downsample))
        out_cols = max(1, round(cols / downsample))
        if (out_rows, out_cols) == image.shape[:2]:
            return image
        resized = resize(image, (out_rows, out_cols), order=1, anti_aliasing=True, preserve_range=True)
        return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


@dataclass
class ArrayView(ImageView):
    """View of an RGB uint8 array held in memory (tests, PNG and JPEG files, small images).

    Coarser levels are built on first use by block averaging.
    """

    rgb: np.ndarray = None  # (rows, columns, 3) uint8

    @classmethod
    def from_rgb(
        cls,
        rgb: np.ndarray,
        *,
        path: str = "<array>",
        pixel_size_um: float | None = None,
        modality: str | None = None,
        plane: dict | None = None,
        n_levels: int = 1,
    ) -> "ArrayView":
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"ArrayView needs a (rows, columns, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
        levels = [Level(rgb.shape[:2], 1.0)]
        for k in range(1, n_levels):
            factor = 2**k
            shape = (max(1, rgb.shape[0] // factor), max(1, rgb.shape[1] // factor))
            levels.append(Level(shape, float(factor)))
        if modality is None:
            modality = guess_modality(rgb)
        return cls(path=path, levels=levels, pixel_size_um=pixel_size_um, modality=modality,
                   plane=dict(plane or {}), rgb=rgb)

    def _read(self, y, x, height, width, level):
        if level == 0:
            return self.rgb[y : y + height, x : x + width]
        factor = int(self.levels[level].downsample)
        block = self.rgb[y * factor : (y + height) * factor, x * factor : (x + width) * factor]
        block = block[: height * factor, : width * factor].astype(np.float32)
        pooled = block.reshape(height, factor, width, factor, 3).mean(axis=(1, 3))
        return np.clip(np.rint(pooled), 0, 255).astype(np.uint8)


def guess_modality(rgb: np.ndarray) -> str:
    """Guess brightfield (bright background) or fluorescence (dark background).

    Uses the median grey value of a low-resolution RGB uint8 image: most of a field of
    view is background, so the median is the background level.
    """
    grey = np.asarray(rgb, dtype=np.float32).mean(axis=-1) if rgb.ndim == 3 else np.asarray(rgb, np.float32)
    step = max(1, int(max(grey.shape) // 512))
    return "brightfield" if float(np.median(grey[::step, ::step])) > 127 else "fluorescence"
