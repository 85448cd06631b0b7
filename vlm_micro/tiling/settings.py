"""Settings of the ``tiling:`` section of the configuration."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from vlm_micro.errors import ConfigError

PLACEMENTS = ("grid", "cells")


@dataclass(frozen=True)
class CellSettings:
    """Size limits of the nuclei that the ``cells`` placement keeps.

    The micrometre limits apply when the image pixel size is known; the pixel limits
    replace them for uncalibrated images.
    """

    min_diameter_um: float = 4.0
    max_diameter_um: float = 30.0
    # NOTE: the pixel limits are a guess, because the magnification is unknown. They fit
    # nuclei of 7 to 30 px, so larger nuclei at native resolution are dropped or split.
    min_diameter_px: float = 6.0  # level-0 pixels, used only for uncalibrated images
    max_diameter_px: float = 60.0

    @classmethod
    def from_dict(cls, section: dict | None) -> "CellSettings":
        """Build settings from the ``tiling: cells:`` mapping, with defaults for missing keys."""
        values = _check_mapping(section, cls, "tiling.cells")
        for name, value in values.items():
            values[name] = _positive_float(value, f"tiling.cells.{name}")
        settings = cls(**values)
        if settings.min_diameter_um >= settings.max_diameter_um:
            raise ConfigError(
                f"tiling.cells: min_diameter_um ({settings.min_diameter_um}) must be smaller than "
                f"max_diameter_um ({settings.max_diameter_um}); fix the configuration"
            )
        if settings.min_diameter_px >= settings.max_diameter_px:
            raise ConfigError(
                f"tiling.cells: min_diameter_px ({settings.min_diameter_px}) must be smaller than "
                f"max_diameter_px ({settings.max_diameter_px}); fix the configuration"
            )
        return settings


@dataclass(frozen=True)
class TileSettings:
    """Placement of tiles on an image, and the rules for keeping and flagging them.

    Attributes
    ----------
    placement : str
        ``"grid"`` (a regular grid from the top-left corner) or ``"cells"`` (one tile
        centred on each detected nucleus).
    overlap_px : int
        Overlap of neighbouring grid tiles in pixels at the model's target scale; the
        stride is ``tile_size_px - overlap_px``.
    min_foreground : float
        Grid tiles whose foreground fraction is below this value are skipped.
    thumbnail_px : int
        Longer side in pixels of the low-resolution view used for foreground detection.
    min_focus : float
        Tiles whose variance of the Laplacian (grey levels 0-255 squared, at target
        scale) is below this value are flagged ``out_of_focus``. The measure grows with
        contrast, so a sharp but faint image can fall below it.
    max_saturated_fraction : float
        Tiles with a larger fraction of clipped pixels are flagged ``saturated``.
    cells : CellSettings
        Size limits of the nuclei kept by the ``cells`` placement.
    """

    placement: str = "grid"
    overlap_px: int = 0
    min_foreground: float = 0.1
    thumbnail_px: int = 1024
    min_focus: float = 20.0
    max_saturated_fraction: float = 0.05
    cells: CellSettings = field(default_factory=CellSettings)

    @classmethod
    def from_dict(cls, section: dict | None) -> "TileSettings":
        """Build settings from the ``tiling:`` mapping, with defaults for missing keys.

        Raises
        ------
        ConfigError
            For an unknown key or an invalid value; the message names the key.
        """
        values = _check_mapping(section, cls, "tiling")
        values["cells"] = CellSettings.from_dict(values.get("cells"))
        placement = values.get("placement", cls.placement)
        if placement not in PLACEMENTS:
            raise ConfigError(
                f"tiling.placement: invalid value {placement!r}; use one of {', '.join(PLACEMENTS)}"
            )
        if "overlap_px" in values:
            values["overlap_px"] = _integer(values["overlap_px"], "tiling.overlap_px", minimum=0)
        if "thumbnail_px" in values:
            values["thumbnail_px"] = _integer(values["thumbnail_px"], "tiling.thumbnail_px", minimum=16)
        for name in ("min_foreground", "max_saturated_fraction"):
            if name in values:
                values[name] = _fraction(values[name], f"tiling.{name}")
        if "min_focus" in values:
            values["min_focus"] = _non_negative_float(values["min_focus"], "tiling.min_focus")
        return cls(**values)


def _check_mapping(section: dict | None, settings_class: type, key: str) -> dict:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(f"{key}: expected a mapping, got {type(section).__name__}; fix the configuration")
    known = {f.name for f in fields(settings_class)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(
            f"{key}: unknown key {unknown[0]!r}; valid keys are {', '.join(sorted(known))}"
        )
    return dict(section)


def _number(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}: expected a number, got {value!r}; fix the configuration")
    return float(value)


def _positive_float(value, key: str) -> float:
    number = _number(value, key)
    if number <= 0:
        raise ConfigError(f"{key}: must be greater than 0, got {value!r}; fix the configuration")
    return number


def _non_negative_float(value, key: str) -> float:
    number = _number(value, key)
    if number < 0:
        raise ConfigError(f"{key}: must be 0 or more, got {value!r}; fix the configuration")
    return number


def _fraction(value, key: str) -> float:
    number = _number(value, key)
    if not 0.0 <= number <= 1.0:
        raise ConfigError(f"{key}: must be a fraction between 0 and 1, got {value!r}; fix the configuration")
    return number


def _integer(value, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}: expected an integer >= {minimum}, got {value!r}; fix the configuration")
    return value
