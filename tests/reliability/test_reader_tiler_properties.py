"""Property tests: random TIFF files go through the reader and the tiler without crashing.

Each example writes a random array with tifffile to a file, opens it with
``open_views``, reads it back and plans and reads tiles. The only exception allowed is
the project's :class:`~vlm_micro.errors.VlmMicroError` family, with a one-line message.
The normaliser itself is covered on arrays in tests/io; here it runs behind real files.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vlm_micro.errors import ImageReadError, VlmMicroError
from vlm_micro.io import ReadSettings, inspect_image, open_views
from vlm_micro.tiling import TileSettings, plan_tiles, read_tiles

# dtypes tifffile writes as plain samples; bool is written as a bilevel image.
DTYPES = ["uint8", "uint16", "int8", "int16", "uint32", "int32", "float16", "float32", "float64", "bool"]
# (axes, photometric) layouts; S is a sample axis (RGB), the rest are planes.
LAYOUTS = [("YX", "minisblack"), ("ZYX", "minisblack"), ("CYX", "minisblack"), ("TYX", "minisblack"),
           ("TZCYX", "minisblack"), ("YXS", "rgb"), ("QYX", "minisblack")]
NAN_PATTERNS = ["none", "random", "all", "row", "inf"]
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_one_line_error(exc: BaseException, path) -> None:
    message = str(exc)
    assert "\n" not in message
    assert path.name in message


def add_spots(data: np.ndarray, axes: str, rng: np.random.Generator, n_spots: int) -> None:
    """Draw bright discs of radius 2-8 px on every plane, so that nuclei detection finds something."""
    rows, cols = data.shape[axes.index("Y")], data.shape[axes.index("X")]
    yy, xx = np.mgrid[:rows, :cols]
    mask = np.zeros((rows, cols), bool)
    for _ in range(n_spots):
        radius = rng.uniform(2, 8)
        mask |= (yy - rng.uniform(0, rows)) ** 2 + (xx - rng.uniform(0, cols)) ** 2 <= radius**2
    if data.dtype == np.bool_:
        value = True
    elif data.dtype.kind == "f":
        value = min(10 * float(np.nanmax(np.abs(data))), float(np.finfo(data.dtype).max))
    else:
        value = np.iinfo(data.dtype).max
    if axes.endswith("S"):
        data[mask] = value
    else:
        data[..., mask] = value


@st.composite
def random_images(draw):
    """Draw (array, axes, photometric, pixel size or None, NaN pattern)."""
    axes, photometric = draw(st.sampled_from(LAYOUTS))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rgb_unsupported = photometric == "rgb" and dtype not in (np.uint8, np.uint16)
    if rgb_unsupported or (dtype == np.bool_ and axes != "YX"):
        dtype = np.dtype("uint8")

    sizes = {"Y": draw(st.integers(1, 70)), "X": draw(st.integers(1, 70)), "S": 3,
             "Z": draw(st.integers(1, 4)), "C": draw(st.integers(1, 4)), "T": draw(st.integers(1, 3)),
             "Q": draw(st.integers(1, 3))}
    shape = tuple(sizes[axis] for axis in axes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    if dtype == np.bool_:
        data = rng.random(shape) > 0.5
    elif dtype.kind == "f":
        data = (rng.standard_normal(shape) * draw(st.sampled_from([1e-3, 1.0, 1e4]))).astype(dtype)
    else:
        info = np.iinfo(dtype)
        high = draw(st.sampled_from([int(info.max), 1, 4095]))
        data = rng.integers(max(int(info.min), -high), high, size=shape, endpoint=True).astype(dtype)
    if draw(st.booleans()):
        add_spots(data, axes, rng, n_spots=draw(st.integers(1, 5)))

    nan_pattern = draw(st.sampled_from(NAN_PATTERNS)) if dtype.kind == "f" else "none"
    if nan_pattern == "random":
        data[rng.random(shape) < 0.3] = np.nan
    elif nan_pattern == "all":
        data[...] = np.nan
    elif nan_pattern == "row":
        data[..., 0, :] = np.nan
    elif nan_pattern == "inf":
        data[rng.random(shape) < 0.1] = np.inf
        data[rng.random(shape) < 0.1] = -np.inf

    pixel_size_um = draw(st.sampled_from([None, 0.1, 0.5, 0.65, 2.0]))
    return data, axes, photometric, pixel_size_um, nan_pattern


def write_random_tiff(path, data, axes, photometric, pixel_size_um, ome):
    kwargs = {"photometric": photometric, "metadata": {"axes": axes}}
    if ome:
        # tifffile's OME-XML writer has no float16 or bilevel pixel type.
        if data.dtype == np.float16:
            data = data.astype(np.float32)
        elif data.dtype == np.bool_:
            data = data.astype(np.uint8)
        kwargs["ome"] = True
        if pixel_size_um:
            kwargs["metadata"].update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
    elif pixel_size_um:
        kwargs.update(resolution=(1e4 / pixel_size_um, 1e4 / pixel_size_um), resolutionunit="CENTIMETER")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tifffile.imwrite(path, data, **kwargs)


def open_or_documented_error(path, read_settings=None):
    """Return the views of ``path``, or None when the reader raised ImageReadError."""
    try:
        inspect_image(path)
        return open_views(path, read_settings or ReadSettings())
    except ImageReadError as exc:
        assert_one_line_error(exc, path)
        event(f"read error: {str(exc).split(': ', 1)[1][:60]}")
        return None


@PROPERTY_SETTINGS
@given(image=random_images(), ome=st.booleans(), projection=st.sampled_from(["max", "mean", "middle"]),
       percentiles=st.sampled_from([(1.0, 99.8), (0.0, 100.0), (49.0, 51.0)]))
def test_reader_random_tiff_reads_uint8(tmp_path_factory, image, ome, projection, percentiles):
    data, axes, photometric, pixel_size_um, nan_pattern = image
    path = tmp_path_factory.mktemp("prop") / ("random.ome.tif" if ome else "random.tif")
    write_random_tiff(path, data, axes, photometric, pixel_size_um, ome)
    views = open_or_documented_error(path, ReadSettings(z_projection=projection, percentiles=percentiles))
    if views is None:
        return
    rows, cols = data.shape[axes.index("Y")], data.shape[axes.index("X")]
    assert len(views) >= 1
    for view in views[:3]:
        assert view.shape == (rows, cols)
        assert view.pixel_size_um is None or view.pixel_size_um > 0
        whole = view.read_region(-2, -3, rows + 5, cols + 7)
        assert whole.dtype == np.uint8
        assert whole.shape == (rows + 5, cols + 7, 3)
        thumbnail = view.thumbnail(32)
        assert thumbnail.dtype == np.uint8
        assert max(thumbnail.shape[:2]) <= max(32, rows, cols)
    if pixel_size_um and views[0].pixel_size_um is not None:
        assert views[0].pixel_size_um == pytest.approx(pixel_size_um, rel=1e-3)


@PROPERTY_SETTINGS
@given(image=random_images(), placement=st.sampled_from(["grid", "cells"]), tile_size_px=st.integers(4, 48),
       overlap_fraction=st.floats(0.0, 0.9), min_foreground=st.sampled_from([0.0, 0.0, 0.05, 0.5, 1.0]),
       target_pixel_size_um=st.sampled_from([None, 0.25, 0.5, 1.3]), thumbnail_px=st.sampled_from([16, 64, 1024]))
def test_tiler_random_tiff_tiles_overlap_image(tmp_path_factory, image, placement, tile_size_px, overlap_fraction,
                                               min_foreground, target_pixel_size_um, thumbnail_px):
    data, axes, photometric, pixel_size_um, _ = image
    path = tmp_path_factory.mktemp("prop") / "tiles.tif"
    write_random_tiff(path, data, axes, photometric, pixel_size_um, ome=False)
    views = open_or_documented_error(path)
    if views is None:
        return
    view = views[0]
    rows, cols = view.shape
    tile_settings = TileSettings(placement=placement, overlap_px=int(overlap_fraction * tile_size_px),
                                 min_foreground=min_foreground, thumbnail_px=thumbnail_px)
    try:
        plan = plan_tiles(view, tile_settings, target_pixel_size_um, tile_size_px)
    except VlmMicroError as exc:
        assert_one_line_error(exc, path)
        return
    tiles = plan.tiles
    event(f"{placement} tiles: {'none' if len(tiles) == 0 else 'some'} at min_foreground {min_foreground}")
    assert plan.qc["n_tiles"] == len(tiles)
    if len(tiles) == 0:
        return
    assert (tiles["height"] > 0).all()
    assert (tiles["width"] > 0).all()
    assert (tiles["y"] < rows).all()
    assert (tiles["x"] < cols).all()
    assert (tiles["y"] + tiles["height"] > 0).all()
    assert (tiles["x"] + tiles["width"] > 0).all()
    assert tiles["tile_id"].is_unique
    assert tiles["foreground_fraction"].between(0, 1).all()
    if placement == "grid":
        assert (tiles["y"] >= 0).all()
        assert (tiles["x"] >= 0).all()
    batch = read_tiles(view, tiles, tile_size_px, rows=list(range(min(len(tiles), 4))))
    assert batch.dtype == np.uint8
    assert batch.shape == (min(len(tiles), 4), tile_size_px, tile_size_px, 3)


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(2, 40), cols=st.integers(2, 40), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from(["float32", "float64"]))
def test_normalizer_nan_pixels_black_in_file(tmp_path_factory, rows, cols, seed, dtype):
    rng = np.random.default_rng(seed)
    data = rng.random((rows, cols)).astype(dtype) * 1000
    nan_mask = rng.random((rows, cols)) < 0.25
    data[nan_mask] = np.nan
    path = tmp_path_factory.mktemp("prop") / "nan.tif"
    tifffile.imwrite(path, data, photometric="minisblack")
    view = open_views(path)[0]
    region = view.read_region(0, 0, rows, cols)
    assert region.dtype == np.uint8
    assert (region[nan_mask] == 0).all()
