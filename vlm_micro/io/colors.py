"""Channel colours for the RGB composite of fluorescence channels.

A colour is an (r, g, b) tuple of floats in 0..1. Users give colours as names
(``green``, ``magenta``, any CSS colour name that matplotlib recognises) or hex strings
(``#00ff00``, ``#0f0``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

RGB = tuple[float, float, float]

NAMED_COLORS: dict[str, RGB] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "grey": (1.0, 1.0, 1.0),
    "gray": (1.0, 1.0, 1.0),
    "white": (1.0, 1.0, 1.0),
    "orange": (1.0, 0.5, 0.0),
    # A black channel adds nothing to the composite, so "none" leaves a channel out.
    "black": (0.0, 0.0, 0.0),
    "none": (0.0, 0.0, 0.0),
}

# Colours given to channels that neither the configuration, the file metadata nor the
# channel name assign: the default channel order of ImageJ composites.
PALETTE = ("red", "green", "blue", "grey", "cyan", "magenta", "yellow")

# Channel-name patterns, checked in this order so that "far red" is magenta, not red.
# Numbers are excitation laser lines or filter centres in nm.
_NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    ("grey", r"bright\s*field|^bf$|\bdic\b|phase|\btrans|\bgr[ae]y\b"),
    ("magenta", r"cy5|far[\s_-]?red|alexa\s*6\d\d|af6\d\d|(?<!\d)6[3-6]\d(?!\d)"),
    ("cyan", r"\bcfp|cerulean|\bcyan"),
    ("yellow", r"\byfp|venus|citrine|\byellow"),
    ("blue", r"dapi|hoechst|\bbfp|alexa\s*40\d|af40\d|(?<!\d)40[05](?!\d)|\bblue"),
    ("green", r"gfp|fitc|cy2|alexa\s*488|af488|(?<!\d)488(?!\d)|\bgreen"),
    ("red", r"rfp|mcherry|cy3|tritc|tomato|texas|alexa\s*5[4-9]\d|af5[4-9]\d|"
            r"(?<!\d)5[4-9]\d(?!\d)|\bred\b"),
    ("blue", r"nucle"),
)

_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")


def parse_color(value: object) -> RGB:
    """Parse a colour name or hex string into an (r, g, b) tuple in 0..1.

    Raises
    ------
    ValueError
        When ``value`` is neither a known colour name nor a hex string.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"colour must be a name or hex string, got {value!r}")
    text = value.strip().lower()
    if text in NAMED_COLORS:
        return NAMED_COLORS[text]
    match = _HEX.fullmatch(text)
    if match:
        digits = match.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return tuple(int(digits[i : i + 2], 16) / 255.0 for i in (0, 2, 4))
    from matplotlib.colors import to_rgb

    try:
        return tuple(float(c) for c in to_rgb(text))
    except ValueError as exc:
        raise ValueError(f"unknown colour {value!r}") from exc


def to_hex(color: RGB) -> str:
    """Format an (r, g, b) colour in 0..1 as ``#rrggbb``."""
    return "#" + "".join(f"{round(min(max(c, 0.0), 1.0) * 255):02x}" for c in color)


def color_from_name(name: str | None) -> RGB | None:
    """Return the usual display colour for a channel or fluorophore name, or None."""
    if not name:
        return None
    text = name.strip().lower()
    for color, pattern in _NAME_PATTERNS:
        if re.search(pattern, text):
            return NAMED_COLORS[color]
    return None


def color_from_wavelength(emission_nm: float | None) -> RGB | None:
    """Return the display colour for an emission wavelength in nm, or None."""
    if emission_nm is None or not emission_nm > 0:
        return None
    if emission_nm < 490:
        return NAMED_COLORS["blue"]
    if emission_nm < 570:
        return NAMED_COLORS["green"]
    if emission_nm < 640:
        return NAMED_COLORS["red"]
    return NAMED_COLORS["magenta"]


def _lookup_override(overrides: Mapping, index: int, name: str | None) -> RGB | None:
    if name:
        if name in overrides:
            return parse_color(overrides[name])
        lowered = {str(key).lower(): value for key, value in overrides.items()}
        if name.lower() in lowered:
            return parse_color(lowered[name.lower()])
    for key in (index, str(index)):
        if key in overrides:
            return parse_color(overrides[key])
    return None


def _is_grey(color: RGB) -> bool:
    return max(color) - min(color) < 1e-6


def channel_colors(
    names: Sequence[str | None],
    metadata_colors: Sequence[RGB | None] | None = None,
    emission_nm: Sequence[float | None] | None = None,
    overrides: Mapping | None = None,
) -> list[RGB]:
    """Choose the composite colour of each channel.

    Parameters
    ----------
    names : sequence of str or None, length C
        Channel names from the file; None where unnamed.
    metadata_colors : sequence of (r, g, b) or None, length C, optional
        Colours stored in the file (OME ``Channel/@Color``, ImageJ LUTs).
    emission_nm : sequence of float or None, length C, optional
        Emission wavelengths in nm (OME ``Channel/@EmissionWavelength``).
    overrides : mapping, optional
        Configured colours keyed by channel name (case-insensitive) or index.

    Returns
    -------
    colors : list of (r, g, b), length C

    Notes
    -----
    Order of precedence: configured colour, file colour, channel name, emission
    wavelength, then the first :data:`PALETTE` colour not used by another channel. A
    single channel without a configured colour is grey. File colours that are all the
    same grey (OME writes white, -1, when no colour was set) are ignored for two or
    more channels because they would hide the channels from each other.
    """
    count = len(names)
    overrides = overrides or {}
    metadata_colors = list(metadata_colors or [None] * count)
    emission_nm = list(emission_nm or [None] * count)
    stored = [c for c in metadata_colors if c is not None]
    if count > 1 and stored and all(_is_grey(c) for c in stored):
        metadata_colors = [None] * count

    colors: list[RGB | None] = []
    for index, name in enumerate(names):
        color = _lookup_override(overrides, index, name)
        if color is None and count == 1:
            color = NAMED_COLORS["grey"]
        if color is None:
            color = metadata_colors[index] or color_from_name(name) or color_from_wavelength(emission_nm[index])
        colors.append(color)

    used = {c for c in colors if c is not None}
    free = [NAMED_COLORS[n] for n in PALETTE if NAMED_COLORS[n] not in used] or [NAMED_COLORS[n] for n in PALETTE]
    next_free = 0
    for index, color in enumerate(colors):
        if color is None:
            colors[index] = free[next_free % len(free)]
            next_free += 1
    return colors
