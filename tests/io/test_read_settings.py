"""ReadSettings: defaults and validation of the read: configuration section."""

import pytest

from vlm_micro.errors import ConfigError
from vlm_micro.io import ReadSettings


def test_read_settings_defaults():
    settings = ReadSettings.from_dict({})
    assert settings.series == "first"
    assert settings.frames == "all"
    assert settings.z_projection == "max"
    assert settings.channel_colors == {}
    assert settings.percentiles == (1.0, 99.8)


def test_read_settings_none_section_is_defaults():
    assert ReadSettings.from_dict(None) == ReadSettings()


def test_read_settings_all_keys():
    settings = ReadSettings.from_dict({
        "series": "tissue",
        "frames": 3,
        "z_projection": "middle",
        "channel_colors": {"DAPI": "blue", 1: "#00ff00", "2": "magenta"},
        "percentiles": [0.5, 99],
    })
    assert settings.series == "tissue"
    assert settings.frames == 3
    assert settings.z_projection == "middle"
    assert settings.channel_colors[1] == "#00ff00"
    assert settings.percentiles == (0.5, 99.0)


def test_read_settings_null_channel_colors():
    assert ReadSettings.from_dict({"channel_colors": None}).channel_colors == {}


@pytest.mark.parametrize(
    "section, key",
    [
        ({"series": -1}, "read.series"),
        ({"series": True}, "read.series"),
        ({"series": ""}, "read.series"),
        ({"series": 1.5}, "read.series"),
        ({"frames": "first"}, "read.frames"),
        ({"frames": -2}, "read.frames"),
        ({"z_projection": "sum"}, "read.z_projection"),
        ({"channel_colors": ["red"]}, "read.channel_colors"),
        ({"channel_colors": {"DAPI": "no-such-colour"}}, "read.channel_colors.DAPI"),
        ({"channel_colors": {"DAPI": 3}}, "read.channel_colors.DAPI"),
        ({"percentiles": [99, 1]}, "read.percentiles"),
        ({"percentiles": [0, 101]}, "read.percentiles"),
        ({"percentiles": [1]}, "read.percentiles"),
        ({"percentiles": "1,99"}, "read.percentiles"),
        ({"percentiles": [1, "x"]}, "read.percentiles"),
        ({"percentiles": [float("nan"), 99]}, "read.percentiles"),
        ({"seires": "first"}, "read.seires"),
    ],
)
def test_read_settings_invalid_value(section, key):
    with pytest.raises(ConfigError) as excinfo:
        ReadSettings.from_dict(section)
    message = str(excinfo.value)
    assert message.startswith(key)
    assert "\n" not in message


def test_read_settings_not_a_mapping():
    with pytest.raises(ConfigError, match="^read:"):
        ReadSettings.from_dict(["series", "first"])
