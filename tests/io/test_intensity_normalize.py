"""Intensity normalisation and channel composite, including a property test."""

import warnings

import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from vlm_micro.errors import ImageReadError
from vlm_micro.io.normalize import Renderer, composite, intensity_limits, make_renderer, normalize
from vlm_micro.io.rendered import build_view
from vlm_micro.io.sources import ArraySource

GREY = np.ones((1, 3), dtype=np.float32)


def render_grey(plane: np.ndarray, percentiles=(1.0, 99.8)) -> np.ndarray:
    sample = plane[:, :, None]
    return make_renderer("composite", sample, percentiles, GREY).render(sample)


def test_normalize_uint16_few_bits_spans_full_range(rng):
    plane = rng.integers(0, 1024, size=(64, 64), dtype=np.uint16)
    rgb = render_grey(plane)
    assert rgb.dtype == np.uint8
    assert rgb.min() == 0
    assert rgb.max() == 255


def test_normalize_not_scaled_by_dtype_max():
    plane = np.arange(100, dtype=np.uint16).reshape(10, 10) + 1000
    rgb = render_grey(plane, (0, 100))
    assert rgb[0, 0, 0] == 0
    assert rgb[-1, -1, 0] == 255


def test_normalize_percentiles_clip_outliers():
    plane = np.zeros((100, 100), dtype=np.float32)
    plane[:50] = 10.0
    plane[0, 0] = 1e6
    rgb = render_grey(plane, (1.0, 99.0))
    assert rgb[60, 0, 0] == 0
    assert rgb[10, 0, 0] == 255
    assert rgb[0, 0, 0] == 255


def test_normalize_nan_becomes_zero():
    plane = np.linspace(0, 1, 400, dtype=np.float32).reshape(20, 20)
    plane[5, 5] = np.nan
    rgb = render_grey(plane)
    assert rgb[5, 5, 0] == 0
    assert rgb[-1, -1, 0] == 255


def test_normalize_infinite_values_clip():
    plane = np.linspace(0, 1, 400).reshape(20, 20)
    plane[0, 0], plane[0, 1] = np.inf, -np.inf
    rgb = render_grey(plane)
    assert rgb[0, 0, 0] == 255
    assert rgb[0, 1, 0] == 0


def test_normalize_constant_plane_no_division():
    plane = np.full((16, 16), 777, dtype=np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgb = render_grey(plane)
    assert np.all(rgb == 0)


def test_normalize_all_nan_plane():
    plane = np.full((8, 8), np.nan, dtype=np.float32)
    assert np.all(render_grey(plane) == 0)


def test_normalize_sparse_spots_visible():
    plane = np.full((100, 100), 100, dtype=np.uint16)
    plane[10, 10] = 5000
    rgb = render_grey(plane)
    assert rgb[10, 10, 0] == 255
    assert rgb[50, 50, 0] == 0


def test_normalize_signed_negative_values():
    plane = np.linspace(-30000, -1000, 256).astype(np.int16).reshape(16, 16)
    rgb = render_grey(plane, (0, 100))
    assert rgb[0, 0, 0] == 0
    assert rgb[-1, -1, 0] == 255


def test_normalize_uint32_offset_keeps_precision():
    plane = (np.uint32(4_000_000_000) + np.arange(256, dtype=np.uint32)).reshape(16, 16)
    rgb = render_grey(plane, (0, 100))
    assert len(np.unique(rgb[..., 0])) == 256


def test_normalize_float_huge_range():
    plane = np.geomspace(1e-30, 1e30, 400).reshape(20, 20)
    rgb = render_grey(plane, (0, 100))
    assert rgb.max() == 255
    assert rgb.min() == 0


def test_intensity_limits_per_channel():
    sample = np.stack([np.arange(100.0), np.arange(100.0) * 10], axis=-1).reshape(10, 10, 2)
    limits = intensity_limits(sample, (0, 100))
    assert limits.tolist() == [[0.0, 99.0], [0.0, 990.0]]


def test_intensity_limits_joint():
    sample = np.stack([np.arange(100.0), np.arange(100.0) * 10], axis=-1).reshape(10, 10, 2)
    limits = intensity_limits(sample, (0, 100), joint=True)
    assert limits.tolist() == [[0.0, 990.0], [0.0, 990.0]]


def test_normalize_output_range():
    raw = np.array([[[0.0], [5.0], [10.0], [20.0]]])
    out = normalize(raw, np.array([[5.0, 15.0]]))
    assert out.dtype == np.float32
    assert out.ravel().tolist() == [0.0, 0.0, 0.5, 1.0]


def test_composite_additive_and_clipped():
    normalized = np.ones((2, 2, 3), dtype=np.float32)
    colors = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=np.float32)
    rgb = composite(normalized, colors)
    assert rgb[0, 0].tolist() == [255, 255, 0]


def test_renderer_rgb_passthrough_drops_alpha():
    raw = np.arange(2 * 2 * 4, dtype=np.uint8).reshape(2, 2, 4)
    out = Renderer("rgb").render(raw)
    assert np.array_equal(out, raw[..., :3])


def test_renderer_rgb_normalised_keeps_colour_balance():
    raw = np.zeros((4, 4, 3), dtype=np.uint16)
    raw[..., 0] = 4000
    raw[..., 1] = 2000
    raw[0, 0] = 0
    renderer = make_renderer("rgb-normalised", raw, (0, 100))
    out = renderer.render(raw)
    assert out[1, 1].tolist() == [255, 128, 0]


def test_renderer_invert():
    plane = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
    out = make_renderer("composite", plane, (0, 100), GREY, invert=True).render(plane)
    assert out[0, 0, 0] == 255
    assert out[-1, -1, 0] == 0


DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.float16, np.float32, np.float64])


@st.composite
def raw_planes(draw):
    dtype = np.dtype(draw(DTYPES))
    shape = (draw(st.integers(1, 12)), draw(st.integers(1, 12)), draw(st.integers(1, 5)))
    if dtype.kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=dtype.itemsize * 8)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(max_examples=150, deadline=None)
@given(raw=raw_planes(), low=st.floats(0, 49), high=st.floats(50, 100))
def test_renderer_property_any_dtype_to_uint8(raw, low, high):
    colors = np.random.default_rng(0).random((raw.shape[2], 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = make_renderer("composite", raw, (low, high), colors).render(raw)
    assert out.dtype == np.uint8
    assert out.shape == raw.shape[:2] + (3,)


@settings(max_examples=60, deadline=None)
@given(raw=raw_planes())
def test_array_view_property_reads_uint8(raw):
    source = ArraySource(raw)
    try:
        view = build_view("<array>", source, "composite", (1.0, 99.8), colors=np.ones((raw.shape[2], 3)))
    except ImageReadError:
        return
    region = view.read_region(-1, -1, raw.shape[0] + 2, raw.shape[1] + 2)
    assert region.dtype == np.uint8
    assert region.shape == (raw.shape[0] + 2, raw.shape[1] + 2, 3)
