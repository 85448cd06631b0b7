"""Channel colours: parsing, name defaults and the choice for each channel."""

import pytest

from vlm_micro.io.colors import NAMED_COLORS, channel_colors, color_from_name, color_from_wavelength, parse_color, to_hex

RED, GREEN, BLUE = NAMED_COLORS["red"], NAMED_COLORS["green"], NAMED_COLORS["blue"]
MAGENTA, GREY = NAMED_COLORS["magenta"], NAMED_COLORS["grey"]


@pytest.mark.parametrize(
    "text, expected",
    [("green", GREEN), ("Magenta", MAGENTA), ("#0000ff", BLUE), ("00ff00", GREEN), ("#f00", RED), ("gray", GREY)],
)
def test_parse_color_names_and_hex(text, expected):
    assert parse_color(text) == pytest.approx(expected)


def test_parse_color_css_name():
    assert to_hex(parse_color("orchid")) == "#da70d6"


@pytest.mark.parametrize("value", ["no-such-colour", "", "#12345", 7, None])
def test_parse_color_invalid(value):
    with pytest.raises(ValueError):
        parse_color(value)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("DAPI", BLUE),
        ("Hoechst 33342", BLUE),
        ("nuclei", BLUE),
        ("GFP", GREEN),
        ("EGFP", GREEN),
        ("FITC", GREEN),
        ("Alexa Fluor 488", GREEN),
        ("mCherry", RED),
        ("Cy3", RED),
        ("561 nm", RED),
        ("tdTomato", RED),
        ("Cy5", MAGENTA),
        ("AF647", MAGENTA),
        ("far red", MAGENTA),
        ("Brightfield", GREY),
        ("DIC", GREY),
    ],
)
def test_color_from_name_fluorophores(name, expected):
    assert color_from_name(name) == expected


@pytest.mark.parametrize("name", ["channel 3", "", None, "4880"])
def test_color_from_name_unknown(name):
    assert color_from_name(name) is None


def test_color_from_wavelength_bands():
    assert color_from_wavelength(461) == BLUE
    assert color_from_wavelength(509) == GREEN
    assert color_from_wavelength(610) == RED
    assert color_from_wavelength(670) == MAGENTA
    assert color_from_wavelength(None) is None


def test_channel_colors_single_channel_grey():
    assert channel_colors(["GFP"]) == [GREY]


def test_channel_colors_from_names():
    assert channel_colors(["DAPI", "GFP", "mCherry", "Cy5"]) == [BLUE, GREEN, RED, MAGENTA]


def test_channel_colors_palette_skips_used():
    assert channel_colors(["DAPI", None, None]) == [BLUE, RED, GREEN]


def test_channel_colors_override_by_name_and_index():
    colors = channel_colors(["dapi", "GFP", None], overrides={"DAPI": "cyan", 2: "yellow"})
    assert colors == [NAMED_COLORS["cyan"], GREEN, NAMED_COLORS["yellow"]]


def test_channel_colors_override_by_index_string():
    assert channel_colors([None, None], overrides={"1": "#ff0000"})[1] == pytest.approx(RED)


def test_channel_colors_none_leaves_channel_out():
    assert channel_colors(["DAPI", "Cy5"], overrides={"Cy5": "none"})[1] == (0.0, 0.0, 0.0)


def test_channel_colors_metadata_colour_wins_over_name():
    assert channel_colors(["DAPI", "GFP"], metadata_colors=[(1.0, 0.5, 0.0), None]) == [(1.0, 0.5, 0.0), GREEN]


def test_channel_colors_ignores_uniform_white_metadata():
    colors = channel_colors(["DAPI", "GFP"], metadata_colors=[GREY, GREY])
    assert colors == [BLUE, GREEN]


def test_channel_colors_emission_wavelength():
    assert channel_colors([None, None], emission_nm=[455.0, 670.0]) == [BLUE, MAGENTA]


def test_channel_colors_many_channels_cycle():
    colors = channel_colors([None] * 9)
    assert len(colors) == 9
    assert len(set(colors[:7])) == 7
