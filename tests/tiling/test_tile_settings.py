"""TileSettings and CellSettings: defaults and validation of the tiling section."""

from __future__ import annotations

import pytest

from vlm_micro.errors import ConfigError
from vlm_micro.tiling import CellSettings, TileSettings


def test_settings_defaults():
    settings = TileSettings.from_dict({})
    assert settings.placement == "grid"
    assert settings.overlap_px == 0
    assert settings.min_foreground == 0.1
    assert settings.thumbnail_px == 1024
    assert settings.cells == CellSettings(4.0, 30.0, 6.0, 60.0)


def test_settings_none_gives_defaults():
    assert TileSettings.from_dict(None) == TileSettings()


def test_settings_reads_every_key():
    settings = TileSettings.from_dict({
        "placement": "cells", "overlap_px": 8, "min_foreground": 0.25, "thumbnail_px": 512,
        "min_focus": 5.0, "max_saturated_fraction": 0.2,
        "cells": {"min_diameter_um": 3, "max_diameter_um": 20, "min_diameter_px": 4, "max_diameter_px": 40},
    })
    assert settings.placement == "cells"
    assert settings.overlap_px == 8
    assert settings.min_foreground == 0.25
    assert settings.thumbnail_px == 512
    assert settings.min_focus == 5.0
    assert settings.max_saturated_fraction == 0.2
    assert settings.cells == CellSettings(3.0, 20.0, 4.0, 40.0)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"placement": "random"}, "tiling.placement"),
        ({"overlap_px": -1}, "tiling.overlap_px"),
        ({"overlap_px": 2.5}, "tiling.overlap_px"),
        ({"overlap_px": True}, "tiling.overlap_px"),
        ({"min_foreground": 1.5}, "tiling.min_foreground"),
        ({"min_foreground": "half"}, "tiling.min_foreground"),
        ({"thumbnail_px": 0}, "tiling.thumbnail_px"),
        ({"min_focus": -1}, "tiling.min_focus"),
        ({"max_saturated_fraction": 2}, "tiling.max_saturated_fraction"),
        ({"tile_size": 64}, "tiling"),
        ({"cells": {"min_diameter_um": 0}}, "tiling.cells.min_diameter_um"),
        ({"cells": {"min_diameter_um": 40}}, "tiling.cells"),
        ({"cells": {"min_diameter_px": 80}}, "tiling.cells"),
        ({"cells": {"radius": 3}}, "tiling.cells"),
        ({"cells": [4, 30]}, "tiling.cells"),
    ],
)
def test_settings_invalid_value_raises(section, key):
    with pytest.raises(ConfigError) as info:
        TileSettings.from_dict(section)
    message = str(info.value)
    assert message.startswith(key)
    assert "\n" not in message
