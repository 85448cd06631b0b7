"""Image views that render raw planes of a source into RGB uint8 on each read."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from vlm_micro.errors import ImageReadError
from vlm_micro.io.diagnose import DECODE_ERRORS, wrap_decode_error
from vlm_micro.io.normalize import Renderer, make_renderer
from vlm_micro.io.sources import PlaneSource
from vlm_micro.io.view import ImageView, guess_modality

log = logging.getLogger(__name__)

# The intensity limits of a view come from the finest level whose longer side is at
# most this many pixels (or the coarsest level when none is that small).
SAMPLE_MAX_SIDE = 1024
# A sample level whose longer side is below SAMPLE_MIN_SIDE gives way to the level
# before it when that one is at most SAMPLE_FALLBACK_SIDE pixels on its longer side,
# because percentiles of so few pixels estimate those of the plane poorly.
SAMPLE_MIN_SIDE = 256
SAMPLE_FALLBACK_SIDE = 2048


@dataclass
class RenderedView(ImageView):
    """View whose regions are read raw from a :class:`PlaneSource` and rendered."""

    source: PlaneSource = field(default=None, repr=False)
    renderer: Renderer = field(default=None, repr=False)

    def _read(self, y, x, height, width, level):
        try:
            raw = self.source.read_raw(y, x, height, width, level)
        except ImageReadError:
            raise
        except DECODE_ERRORS as exc:
            raise wrap_decode_error(self.path, exc, f"reading level {level} at ({y}, {x})") from exc
        return self.renderer.render(raw)

    def close(self) -> None:
        self.source.close()


def sample_level(source: PlaneSource) -> int:
    """Return the level whose pixels sample the whole plane for intensity limits."""
    levels = source.levels
    chosen = next((index for index, level in enumerate(levels) if max(level.shape) <= SAMPLE_MAX_SIDE),
                  len(levels) - 1)
    if chosen > 0 and max(levels[chosen].shape) < SAMPLE_MIN_SIDE and max(levels[chosen - 1].shape) <= SAMPLE_FALLBACK_SIDE:
        return chosen - 1
    return chosen


def build_view(
    path: str,
    source: PlaneSource,
    mode: str,
    percentiles: tuple[float, float],
    colors: np.ndarray | None = None,
    pixel_size_um: float | None = None,
    plane: dict | None = None,
    modality_hint: str | None = None,
    invert: bool = False,
) -> RenderedView:
    """Create a view, computing its intensity limits and modality from a sample.

    Parameters
    ----------
    path : str
        Source file, for messages and the view record.
    source : PlaneSource
    mode : str
        Rendering mode, see :class:`~vlm_micro.io.normalize.Renderer`.
    percentiles : (low, high) floats in 0..100
    colors : (C, 3) float ndarray, optional
        Channel colours in ``"composite"`` mode.
    pixel_size_um : float or None
        Level-0 pixel size in micrometres per pixel.
    plane : dict, optional
        Plane record; the rendering and intensity limits are added to it.
    modality_hint : str or None
        Modality from file metadata; otherwise fluorescence for two or more channels,
        else a guess from the rendered sample's background.
    invert : bool
        Render high values dark (TIFF MinIsWhite data).
    """
    level = sample_level(source)
    rows, cols = source.levels[level].shape
    try:
        sample = source.read_raw(0, 0, rows, cols, level)
    except DECODE_ERRORS as exc:
        raise wrap_decode_error(path, exc, "reading the low-resolution sample") from exc
    renderer = make_renderer(mode, sample, percentiles, colors, invert)
    if modality_hint is not None:
        modality = modality_hint
    elif mode == "composite" and source.n_channels > 1:
        modality = "fluorescence"
    else:
        modality = guess_modality(renderer.render(sample))
    plane = dict(plane or {})
    plane.update(renderer.describe())
    log.debug("view of %s: %s, modality %s, levels %s", path, plane, modality, source.levels)
    return RenderedView(
        path=path,
        levels=source.levels,
        pixel_size_um=pixel_size_um,
        modality=modality,
        plane=plane,
        source=source,
        renderer=renderer,
    )
