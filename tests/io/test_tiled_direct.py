"""Direct decoding of tiled TIFF pages matches tifffile's zarr store, pixel for pixel."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import tifffile

from vlm_micro.io import ReadSettings, open_views, tiffread, tiffsource
from vlm_micro.io.tiffchunks import TiledLevel, tile_spans

SVS = Path(__file__).resolve().parents[1] / "data" / "cmu_small_region.svs"


def _open_both(path, monkeypatch, settings=None):
    """Open the views of ``path`` twice: with direct tile decoding and through zarr only."""
    settings = settings or ReadSettings()
    direct = open_views(path, settings)
    with monkeypatch.context() as patch:
        patch.setattr(tiffread, "TiffSeriesSource", functools.partial(tiffsource.TiffSeriesSource, direct=False))
        through_zarr = open_views(path, settings)
    return direct, through_zarr


def _assert_same_pixels(direct_view, zarr_view, regions=()):
    assert direct_view.levels == zarr_view.levels
    for level, info in enumerate(direct_view.levels):
        rows, cols = info.shape
        np.testing.assert_array_equal(direct_view.read_region(0, 0, rows, cols, level),
                                      zarr_view.read_region(0, 0, rows, cols, level))
    for y, x, height, width in regions:
        np.testing.assert_array_equal(direct_view.read_region(y, x, height, width),
                                      zarr_view.read_region(y, x, height, width))


def _gradient(rows, cols, channels=3, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    base = np.stack([(y * 3 + x * (c + 1)) % 251 for c in range(channels)], axis=-1)
    noisy = base + rng.integers(0, 4, size=base.shape)
    return noisy.astype(dtype) if channels > 1 else noisy[..., 0].astype(dtype)


@pytest.mark.parametrize("start,stop,step,side", [
    (0, 100, 1, 32), (5, 6, 1, 32), (31, 33, 1, 32), (0, 300, 7, 32), (3, 200, 40, 16), (10, 11, 5, 4),
    (64, 128, 1, 64), (0, 1000, 64, 64), (1, 97, 3, 8),
])
def test_tile_spans_cover_selection(start, stop, step, side):
    selected = np.arange(start, stop, step)
    covered = np.full(len(selected), -1)
    for span in tile_spans(slice(start, stop, step), side):
        rows_in_tile = np.arange(side)[span.inside] + span.tile * side
        covered[span.out] = rows_in_tile
    np.testing.assert_array_equal(covered, selected)


@pytest.mark.parametrize("compression", ["jpeg", "zlib", None, "zstd"])
def test_direct_rgb_tiles_match_zarr(tmp_path, monkeypatch, compression):
    image = _gradient(150, 110)  # edge tiles on both axes
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, image, tile=(32, 48), photometric="rgb", compression=compression)
    (direct,), (through_zarr,) = _open_both(path, monkeypatch)
    assert direct.source._tiled_level(0) is not None
    assert through_zarr.source._tiled_level(0) is None
    _assert_same_pixels(direct, through_zarr, [(-5, -7, 40, 50), (100, 90, 60, 30), (31, 47, 2, 2), (0, 0, 150, 110)])
    if compression != "jpeg":
        np.testing.assert_array_equal(direct.read_region(0, 0, 150, 110), image)


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_direct_uint16_predictor_matches_zarr(tmp_path, monkeypatch, byteorder):
    plane = _gradient(130, 90, channels=1, dtype=np.uint16) * 13
    path = tmp_path / "grey.tif"
    tifffile.imwrite(path, plane, tile=(32, 32), compression="zlib", predictor=True, byteorder=byteorder)
    (direct,), (through_zarr,) = _open_both(path, monkeypatch)
    assert direct.source._tiled_level(0) is not None
    _assert_same_pixels(direct, through_zarr, [(10, 10, 70, 70)])
    raw = direct.source.read_raw(0, 0, 130, 90, 0)
    np.testing.assert_array_equal(raw[..., 0], plane)


def test_direct_float_with_nan_matches_zarr(tmp_path, monkeypatch):
    plane = _gradient(80, 70, channels=1).astype(np.float32)
    plane[5:9, 3:40] = np.nan
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, plane, tile=(16, 16))
    (direct,), (through_zarr,) = _open_both(path, monkeypatch)
    _assert_same_pixels(direct, through_zarr)


def test_direct_palette_tiles_match_zarr(tmp_path, monkeypatch):
    indices = (_gradient(64, 80, channels=1) % 4).astype(np.uint8)
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, 1] = (65535, 0, 0)
    colormap[:, 2] = (0, 65535, 0)
    colormap[:, 3] = (0, 0, 65535)
    path = tmp_path / "palette.tif"
    tifffile.imwrite(path, indices, photometric="palette", colormap=colormap, tile=(16, 16))
    (direct,), (through_zarr,) = _open_both(path, monkeypatch)
    assert direct.source._tiled_level(0) is not None
    _assert_same_pixels(direct, through_zarr)


def test_direct_rgba_drops_alpha_like_zarr(tmp_path, monkeypatch):
    image = np.concatenate([_gradient(48, 64), np.full((48, 64, 1), 9, np.uint8)], axis=-1)
    path = tmp_path / "rgba.tif"
    tifffile.imwrite(path, image, photometric="rgb", extrasamples=["unassalpha"], tile=(16, 16))
    (direct,), (through_zarr,) = _open_both(path, monkeypatch)
    _assert_same_pixels(direct, through_zarr)
    np.testing.assert_array_equal(direct.read_region(0, 0, 48, 64), image[..., :3])


def test_direct_ome_channel_pages_pyramid(tmp_path, monkeypatch):
    data = np.stack([_gradient(300, 200, channels=1, dtype=np.uint16, seed=c) * (c + 1) for c in range(3)])
    path = tmp_path / "channels.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(data, tile=(64, 64), subifds=1, metadata={"axes": "CYX"}, compression="zlib")
        tif.write(data[:, ::2, ::2], tile=(64, 64), subfiletype=1, compression="zlib")
    (direct,), (through_zarr,) = _open_both(path, monkeypatch)
    tiled = direct.source._tiled_level(0)
    assert tiled is not None and tiled.leading_axes == "C"
    assert tiled.page_indices(None, 0) == [0, 1, 2]
    assert direct.source._tiled_level(1) is not None
    _assert_same_pixels(direct, through_zarr, [(250, 150, 80, 80)])
    raw = direct.source.read_raw(0, 0, 300, 200, 0)
    np.testing.assert_array_equal(np.moveaxis(raw, -1, 0), data)


@pytest.mark.parametrize("projection", ["max", "mean", "middle"])
def test_direct_z_projection_and_frames(tmp_path, monkeypatch, projection):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 1000, size=(2, 3, 2, 70, 60), dtype=np.uint16)
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, data, tile=(32, 32), metadata={"axes": "TZCYX"}, compression="zlib")
    settings = ReadSettings(z_projection=projection)
    direct, through_zarr = _open_both(path, monkeypatch, settings)
    assert len(direct) == len(through_zarr) == 2
    for frame, (direct_view, zarr_view) in enumerate(zip(direct, through_zarr)):
        assert direct_view.source._tiled_level(0) is not None
        _assert_same_pixels(direct_view, zarr_view, [(20, 20, 40, 30)])
        raw = direct_view.source.read_raw(0, 0, 70, 60, 0)
        stack = data[frame].astype(np.float64)
        expected = {"max": stack.max(axis=0), "mean": stack.mean(axis=0), "middle": stack[1]}[projection]
        np.testing.assert_allclose(np.moveaxis(raw, -1, 0), expected, rtol=1e-6)


def test_direct_missing_tile_reads_fill_value(tmp_path, monkeypatch):
    image = _gradient(64, 64)
    path = tmp_path / "missing.tif"
    tifffile.imwrite(path, image, tile=(32, 32), photometric="rgb", compression="zlib")
    with tifffile.TiffFile(path, mode="r+b") as tif:
        counts = list(tif.pages[0].databytecounts)
        counts[3] = 0  # the bottom-right tile
        tif.pages[0].tags["TileByteCounts"].overwrite(counts)
    (direct,), (through_zarr,) = _open_both(path, monkeypatch)
    _assert_same_pixels(direct, through_zarr)
    region = direct.read_region(0, 0, 64, 64)
    assert (region[32:, 32:] == 0).all()
    np.testing.assert_array_equal(region[:32], image[:32])


def test_direct_strided_computed_levels(tmp_path, monkeypatch):
    image = _gradient(1100, 300)  # no pyramid: coarser levels are computed from strided reads
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, image, tile=(64, 64), photometric="rgb", compression="zlib")
    (direct,), (through_zarr,) = _open_both(path, monkeypatch)
    assert len(direct.levels) == 3
    _assert_same_pixels(direct, through_zarr)
    strided = direct.source._read_native(0, slice(3, 1000, 7), slice(1, 300, 5))
    np.testing.assert_array_equal(strided, image[3:1000:7, 1:300:5])


def test_direct_real_svs_matches_zarr(monkeypatch):
    direct, through_zarr = _open_both(SVS, monkeypatch)
    assert direct[0].source._tiled_level(0) is not None
    assert direct[0].source._tiled_level(0).tile_shape == (240, 240)
    _assert_same_pixels(direct[0], through_zarr[0], [(700, 500, 512, 512), (2900, 2100, 100, 200)])


def test_layouts_without_tiles_use_zarr(tmp_path):
    image = _gradient(40, 40)
    strips = tmp_path / "strips.tif"
    tifffile.imwrite(strips, image, photometric="rgb", rowsperstrip=8)
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(planar, np.moveaxis(image, -1, 0), photometric="rgb", planarconfig="separate", tile=(16, 16))
    for path in (strips, planar):
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            (view,) = open_views(path)
            assert TiledLevel.create(series.levels[0], view.source.layout) is None
            np.testing.assert_array_equal(view.read_region(0, 0, 40, 40), image)


def test_decode_threads_give_same_pixels(tmp_path, monkeypatch):
    image = _gradient(256, 256)
    path = tmp_path / "tiles.tif"
    tifffile.imwrite(path, image, tile=(32, 32), photometric="rgb", compression="jpeg")
    results = []
    for threads in (1, 2):
        monkeypatch.setattr(tiffsource, "DECODE_THREADS", threads)
        (view,) = open_views(path)
        results.append(view.read_region(0, 0, 256, 256))
        view.close()
    np.testing.assert_array_equal(results[0], results[1])


def test_covered_blocks_not_cached(tmp_path):
    image = _gradient(256, 256)
    path = tmp_path / "tiles.tif"
    tifffile.imwrite(path, image, tile=(128, 128), photometric="rgb", compression="zlib")
    (view,) = open_views(path)
    cache = view.source.cache
    cache.clear()
    view.read_region(0, 0, 128, 256)  # covers two blocks whole
    assert len(cache._blocks) == 0
    view.read_region(0, 0, 64, 64)  # part of one block
    assert len(cache._blocks) == 1


def test_read_region_result_is_private(tmp_path):
    image = _gradient(64, 64)
    path = tmp_path / "tiles.tif"
    tifffile.imwrite(path, image, tile=(32, 32), photometric="rgb", compression="zlib")
    (view,) = open_views(path)
    for y, x, size in [(0, 0, 16), (0, 0, 32), (10, 10, 40), (0, 0, 64)]:
        first = view.read_region(y, x, size, size)
        first[...] = 0
        np.testing.assert_array_equal(view.read_region(y, x, size, size), image[y : y + size, x : x + size])
