"""Settings of the readers: the ``read:`` section of the configuration."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from vlm_micro.errors import ConfigError
from vlm_micro.io.colors import parse_color

Z_PROJECTIONS = ("max", "mean", "middle")


@dataclass(frozen=True)
class ReadSettings:
    """Reader settings: which series, frames and channels become views, and how.

    Attributes
    ----------
    series : str or int
        ``"first"`` (first image series), ``"all"`` (every image series), a series name,
        or a series index. Label, macro and thumbnail images of slide files never count.
    frames : str or int
        ``"all"`` (one view per time frame) or the index of the one frame to use.
    z_projection : str
        How a z-stack becomes one plane: ``"max"``, ``"mean"`` or ``"middle"`` (the
        middle plane only).
    channel_colors : dict
        Composite colour per channel, keyed by channel name (case-insensitive) or index,
        valued by a colour name or hex string. Channels not listed get defaults from the
        file metadata and channel names.
    percentiles : tuple of float
        (low, high) percentiles, in 0..100, of each channel's intensities that map to
        black and full intensity.
    """

    series: str | int = "first"
    frames: str | int = "all"
    z_projection: str = "max"
    channel_colors: dict = field(default_factory=dict)
    percentiles: tuple[float, float] = (1.0, 99.8)

    def __post_init__(self) -> None:
        _check_series(self.series)
        _check_frames(self.frames)
        _check_projection(self.z_projection)
        _check_colors(self.channel_colors)
        object.__setattr__(self, "percentiles", _check_percentiles(self.percentiles))

    @classmethod
    def from_dict(cls, section: Mapping | None) -> "ReadSettings":
        """Build settings from the ``read:`` section of the configuration.

        Missing keys take their defaults. Raises ConfigError naming the key and value
        for an unknown key or an invalid value.
        """
        if section is None:
            return cls()
        if not isinstance(section, Mapping):
            raise ConfigError(f"read: expected a mapping of settings, got {section!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(key) for key in section if key not in known)
        if unknown:
            raise ConfigError(f"read.{unknown[0]}: unknown key; valid keys are {', '.join(sorted(known))}")
        values = dict(section)
        if values.get("channel_colors") is None:
            values.pop("channel_colors", None)
        return cls(**values)


def _check_series(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"read.series: invalid value {value!r}; use 'first', 'all', a series name or an index >= 0")
    if isinstance(value, int) and value < 0:
        raise ConfigError(f"read.series: invalid index {value}; series indices start at 0")
    if isinstance(value, str) and not value.strip():
        raise ConfigError("read.series: empty name; use 'first', 'all', a series name or an index >= 0")


def _check_frames(value: object) -> None:
    valid = value == "all" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
    if not valid:
        raise ConfigError(f"read.frames: invalid value {value!r}; use 'all' or a frame index >= 0")


def _check_projection(value: object) -> None:
    if value not in Z_PROJECTIONS:
        raise ConfigError(f"read.z_projection: invalid value {value!r}; use one of {', '.join(Z_PROJECTIONS)}")


def _check_colors(value: object) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"read.channel_colors: expected a mapping of channel name or index to colour, got {value!r}")
    for key, color in value.items():
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise ConfigError(f"read.channel_colors: invalid channel key {key!r}; use a channel name or index")
        try:
            parse_color(color)
        except ValueError:
            raise ConfigError(
                f"read.channel_colors.{key}: invalid colour {color!r}; use a name such as 'green' or a hex value such as '#00ff00'"
            ) from None


def _check_percentiles(value: object) -> tuple[float, float]:
    message = f"read.percentiles: invalid value {value!r}; use [low, high] with 0 <= low < high <= 100"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ConfigError(message)
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(message) from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high <= 100):
        raise ConfigError(message)
    return (low, high)
