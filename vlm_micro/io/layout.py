"""Roles of the axes of a series on the way to one 2-D plane: frames, z-stack, channels.

tifffile names axes with letters: ``T`` time, ``Z`` depth, ``C`` channel, ``Y`` rows,
``X`` columns, ``S`` samples of a pixel (RGB), ``I`` and ``Q`` planes of unknown
meaning, and others (``E`` wavelength, ``H`` lifetime, ``A`` angle, ...).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from math import prod

log = logging.getLogger(__name__)

# PhotometricInterpretation values of the TIFF specification.
PHOTOMETRIC_MINISWHITE = 0
PHOTOMETRIC_RGB = 2
PHOTOMETRIC_PALETTE = 3
PHOTOMETRIC_YCBCR = 6

# Axes of unknown meaning that tifffile uses for plain page sequences. Each of their
# planes is treated as its own frame, so planes of unknown meaning are never mixed.
_SEQUENCE_AXES = "IQ"


@dataclass(frozen=True)
class PlaneLayout:
    """Axis roles of one series.

    Attributes
    ----------
    axes : str
        tifffile axes of the series, for example ``"TZCYX"`` or ``"YXS"``.
    shape : tuple of int
        Series shape in the order of ``axes``.
    frame_axis : str or None
        Axis whose indices are frames (``T``, or ``I``/``Q`` without ``T``).
    z_axis : str or None
        Axis reduced by the z projection.
    channel_axes : str
        Axes whose indices, combined, are the channels (``C`` and ``S``).
    rgb : bool
        The samples are RGB or RGBA colour, not separate channels.
    palette : bool
        The single sample indexes the colormap of the TIFF page.
    inverted : bool
        PhotometricInterpretation is MinIsWhite: low values are bright.
    drop_alpha : bool
        The last sample of a grey series is an alpha channel, which reads drop.
    fixed_axes : dict
        Other axes of size > 1, each read at index 0.
    """

    axes: str
    shape: tuple
    frame_axis: str | None = None
    z_axis: str | None = None
    channel_axes: str = ""
    rgb: bool = False
    palette: bool = False
    inverted: bool = False
    drop_alpha: bool = False
    fixed_axes: dict = field(default_factory=dict)

    def size(self, axis: str | None) -> int:
        """Return the length of ``axis``, 1 when absent."""
        return self.shape[self.axes.index(axis)] if axis and axis in self.axes else 1

    @property
    def n_frames(self) -> int:
        return self.size(self.frame_axis)

    @property
    def n_z(self) -> int:
        return self.size(self.z_axis)

    @property
    def n_channels(self) -> int:
        """Number of raw channels a region read returns (RGBA counts 4)."""
        return prod(self.size(axis) for axis in self.channel_axes) - int(self.drop_alpha)

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.size("Y"), self.size("X")

    def describe(self) -> dict:
        """Return the axis roles as a JSON-able dict."""
        return {
            "frame_axis": self.frame_axis,
            "n_frames": self.n_frames,
            "z_axis": self.z_axis,
            "z_planes": self.n_z,
            "channel_axes": self.channel_axes,
            "n_channels": self.n_channels,
            "rgb": self.rgb,
            "fixed_axes": dict(self.fixed_axes),
        }


def plane_layout(axes: str, shape: tuple, photometric: int | None, alpha: bool = False) -> PlaneLayout:
    """Assign roles to the axes of a series.

    Parameters
    ----------
    axes : str
        tifffile axes of the series.
    shape : tuple of int
        Series shape, one length per axis.
    photometric : int or None
        PhotometricInterpretation of the first page.
    alpha : bool
        The ExtraSamples tag marks the last sample as (associated or unassociated) alpha.

    Raises
    ------
    ValueError
        When the series has no ``Y`` and ``X`` axes.
    """
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"series axes {axes!r} have no Y and X")
    sizes = dict(zip(axes, shape))
    samples = sizes.get("S", 1)
    rgb = samples in (3, 4) and photometric in (PHOTOMETRIC_RGB, PHOTOMETRIC_YCBCR)
    palette = photometric == PHOTOMETRIC_PALETTE and samples == 1 and sizes.get("C", 1) == 1

    frame_axis = "T" if "T" in axes else next((a for a in _SEQUENCE_AXES if a in axes), None)
    z_axis = "Z" if "Z" in axes else None
    channel_axes = "S" if rgb else "".join(a for a in axes if a in "CS")
    handled = {"Y", "X", frame_axis, z_axis, *channel_axes}
    fixed = {a: 0 for a in axes if a not in handled and sizes[a] > 1}
    if fixed:
        log.warning("axes %s (sizes %s) have no role; only index 0 of each is read",
                    "".join(fixed), [sizes[a] for a in fixed])
    return PlaneLayout(
        axes=axes,
        shape=tuple(int(n) for n in shape),
        frame_axis=frame_axis,
        z_axis=z_axis,
        channel_axes=channel_axes,
        rgb=rgb,
        palette=palette,
        inverted=photometric == PHOTOMETRIC_MINISWHITE,
        drop_alpha=alpha and not rgb and channel_axes == "S" and samples > 1,
        fixed_axes=fixed,
    )
