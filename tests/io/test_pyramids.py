"""Pyramid levels (native and computed), slide label/macro pages, lazy bounded reads."""

import threading

import numpy as np
import pytest
import tifffile

from vlm_micro.errors import ImageReadError
from vlm_micro.io import ReadSettings, inspect_image, open_views
from vlm_micro.io import sources


def gradient_rgb(rows, cols):
    y, x = np.mgrid[0:rows, 0:cols]
    return np.stack([(y * 255) // rows, (x * 255) // cols, np.full_like(x, 200)], axis=-1).astype(np.uint8)


def write_pyramid_ome(path, base):
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        writer.write(base, subifds=2, tile=(64, 64), photometric="rgb", compression="zlib",
                     metadata={"PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25})
        writer.write(base[::2, ::2], subfiletype=1, tile=(64, 64), photometric="rgb", compression="zlib")
        writer.write(base[::4, ::4], subfiletype=1, tile=(64, 64), photometric="rgb", compression="zlib")
        writer.write(np.full((32, 96, 3), 30, np.uint8), subfiletype=1, photometric="rgb", metadata=None)


def test_pyramid_ome_subifd_levels(tmp_path, read_all):
    path = tmp_path / "pyramid.ome.tif"
    base = gradient_rgb(512, 640)
    write_pyramid_ome(path, base)
    (view,) = open_views(path)
    assert [level.shape for level in view.levels[:3]] == [(512, 640), (256, 320), (128, 160)]
    assert [level.downsample for level in view.levels[:3]] == [1.0, 2.0, 4.0]
    assert np.array_equal(read_all(view, 2), base[::4, ::4])
    assert view.pixel_size_um == 0.25


def test_pyramid_ome_extra_page_not_a_view(tmp_path):
    path = tmp_path / "pyramid.ome.tif"
    write_pyramid_ome(path, gradient_rgb(512, 640))
    info = inspect_image(path)
    assert info["series"] == 1
    assert [s["role"] for s in info["series_list"]] == ["image", "reduced"]
    assert len(open_views(path, ReadSettings(series="all"))) == 1


def test_computed_levels_block_mean(write_tiff, read_all):
    base = gradient_rgb(600, 90)
    (view,) = open_views(write_tiff("flat.tif", base, photometric="rgb"))
    assert [lv.shape for lv in view.levels] == [(600, 90), (300, 45)]
    expected = base.reshape(300, 2, 45, 2, 3).mean(axis=(1, 3))
    assert np.abs(read_all(view, 1).astype(float) - expected).max() <= 0.5


def test_computed_levels_strided_factor(write_tiff):
    plane = np.tile(np.arange(40, dtype=np.uint16), (2100, 1))
    (view,) = open_views(write_tiff("tall.tif", plane, rowsperstrip=64))
    shapes = [lv.shape for lv in view.levels]
    assert shapes == [(2100, 40), (1050, 20), (525, 10), (263, 5)]
    assert view.levels[3].downsample == 8.0
    coarse = view.read_region(0, 0, 263, 5, 3)
    assert coarse.dtype == np.uint8
    assert np.all(np.diff(coarse[10, :, 0].astype(int)) > 0)


def test_computed_level_partial_edge_block(write_tiff):
    plane = np.full((1025, 3), 1000, dtype=np.uint16)
    plane[:, 0] = 0
    (view,) = open_views(write_tiff("edge.tif", plane))
    last = view.read_region(view.levels[1].shape[0] - 1, 0, 1, 2, 1)
    assert last[0, 1, 0] == 255


def test_generic_reduced_pages_are_levels(tmp_path):
    path = tmp_path / "generic.tif"
    base = gradient_rgb(256, 256)
    with tifffile.TiffWriter(path) as writer:
        writer.write(base, tile=(64, 64), photometric="rgb", metadata=None)
        writer.write(base[::2, ::2], tile=(64, 64), photometric="rgb", subfiletype=1, metadata=None)
        writer.write(np.full((40, 100, 3), 9, np.uint8), photometric="rgb", description="label 100x40", metadata=None)
    info = inspect_image(path)
    roles = [s["role"] for s in info["series_list"]]
    assert roles.count("image") == 1
    assert "label" in roles
    (view,) = open_views(path, ReadSettings(series="all"))
    assert view.levels[1].shape == (128, 128)
    assert view.levels[1].downsample == 2.0


def write_fake_svs(path):
    head = "Aperio Image Library v12.0.0\n"
    with tifffile.TiffWriter(path) as writer:
        writer.write(gradient_rgb(96, 128), tile=(32, 32), photometric="rgb", compression="jpeg", metadata=None,
                     description=head + "128x96 [0,0 128x96] (32x32) JPEG/RGB Q=70|AppMag = 20|MPP = 0.5")
        writer.write(np.full((24, 32, 3), 200, np.uint8), photometric="rgb", metadata=None,
                     description=head + "128x96 -> 32x24 - ")
        writer.write(np.full((20, 30, 3), 50, np.uint8), photometric="rgb", subfiletype=1, compression="lzw",
                     metadata=None, description=head + "label 30x20")
        writer.write(np.full((20, 60, 3), 90, np.uint8), photometric="rgb", subfiletype=9, compression="jpeg",
                     metadata=None, description=head + "macro 60x20")


def test_svs_label_macro_thumbnail_skipped(tmp_path):
    path = tmp_path / "slide.svs"
    write_fake_svs(path)
    info = inspect_image(path)
    assert [s["role"] for s in info["series_list"]] == ["image", "thumbnail", "label", "macro"]
    views = open_views(path, ReadSettings(series="all"))
    assert len(views) == 1
    assert views[0].shape == (96, 128)


@pytest.mark.parametrize("selector", ["Label", "macro", 3])
def test_svs_label_series_rejected(tmp_path, selector):
    path = tmp_path / "slide.svs"
    write_fake_svs(path)
    with pytest.raises(ImageReadError, match="never analysed"):
        open_views(path, ReadSettings(series=selector))


def test_block_cache_memory_bounded(write_tiff, monkeypatch):
    image = gradient_rgb(512, 512)
    path = write_tiff("tiles.tif", image, tile=(64, 64), photometric="rgb", compression="zlib")
    (view,) = open_views(path)
    cache = view.source.shared.cache
    monkeypatch.setattr(cache, "capacity_bytes", 1 << 20)
    for y in range(0, 512, 48):
        for x in range(0, 512, 48):
            assert np.array_equal(view.read_region(y, x, 48, 48), _padded(image, y, x, 48, view.pad_value))
    largest = max(block.nbytes for block in cache._blocks.values())
    assert cache._bytes <= (1 << 20) + largest


def _padded(image, y, x, size, pad_value):
    out = np.full((size, size, 3), pad_value, np.uint8)
    part = image[y : y + size, x : x + size]
    out[: part.shape[0], : part.shape[1]] = part
    return out


def test_views_share_file_until_last_closed(write_tiff):
    data = np.zeros((3, 16, 16), np.uint16)
    path = write_tiff("t.tif", data, imagej=True, metadata={"axes": "TYX"})
    views = open_views(path)
    handle = views[0].source.shared.tif.filehandle
    views[0].close()
    assert not handle.closed
    views[1].read_region(0, 0, 4, 4)
    views[1].close()
    views[2].close()
    assert handle.closed


def test_views_read_from_threads(write_tiff):
    image = gradient_rgb(256, 256)
    (view,) = open_views(write_tiff("tiles.tif", image, tile=(32, 32), photometric="rgb", compression="zlib"))
    results = {}

    def read(key, y):
        results[key] = view.read_region(y, 0, 64, 256)

    threads = [threading.Thread(target=read, args=(i, 64 * (i % 4))) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for key, region in results.items():
        y = 64 * (key % 4)
        assert np.array_equal(region, image[y : y + 64])


def test_levels_reported_by_inspect(write_tiff):
    path = write_tiff("flat.tif", gradient_rgb(1100, 60), photometric="rgb")
    levels = inspect_image(path)["levels"]
    assert [lv["shape"] for lv in levels] == [[1100, 60], [550, 30], [275, 15]]
    assert [lv["native"] for lv in levels] == [True, False, False]


def test_min_level_side_constant():
    assert sources.MIN_LEVEL_SIDE == 512


@pytest.mark.parametrize(("shapes", "usable", "reason"), [
    ([(1001, 1001), (501, 501), (251, 251)], 3, ""),  # writers round level sizes up
    ([(2048, 3000), (1024, 1500), (512, 750)], 3, ""),
    ([(2048, 2048), (1024, 1536), (512, 512)], 1, "another aspect ratio"),
    ([(2048, 2048), (1000, 40)], 1, "another aspect ratio"),
    ([(2048, 2048), (2048, 2048)], 1, "not smaller"),
    ([(2048, 2048), (512, 512), (1, 1)], 2, "below 64 px"),
])
def test_usable_native_levels(shapes, usable, reason):
    count, found_reason = sources.usable_native_levels(shapes)
    assert count == usable
    assert reason in found_reason
    assert (found_reason == "") == (reason == "")


def write_subifd_pyramid(path, base, levels):
    """Write ``base`` with the arrays of ``levels`` as its reduced-resolution SubIFDs."""
    photometric = "rgb" if base.ndim == 3 else "minisblack"
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        writer.write(base, subifds=len(levels), tile=(256, 256), photometric=photometric, compression="zlib",
                     metadata={"PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25})
        for level in levels:
            writer.write(level, subfiletype=1, photometric=photometric, compression="zlib")


def test_distorted_level_replaced_by_computed_one(tmp_path, read_all):
    """A reduced level with another aspect ratio than level 0 would put tiles in the wrong place."""
    base = gradient_rgb(2048, 2048)
    path = tmp_path / "cropped_level.ome.tif"
    write_subifd_pyramid(path, base, [np.zeros((1024, 1536, 3), np.uint8)])
    (view,) = open_views(path)
    assert view.levels[1].shape == (1024, 1024)
    assert view.levels[1].downsample == 2.0
    expected = base.reshape(1024, 2, 1024, 2, 3).mean(axis=(1, 3))
    assert np.abs(read_all(view, 1).astype(float) - expected).max() <= 1.0


def test_one_pixel_level_not_sampled(tmp_path):
    """Intensity limits from a 1 px level rendered a whole 16-bit image black."""
    base = np.full((2048, 2048), 100, np.uint16)
    base[512:1024, 512:1024] = 3000
    path = tmp_path / "one_pixel_level.ome.tif"
    write_subifd_pyramid(path, base, [np.full((1, 1), 100, np.uint16)])
    (view,) = open_views(path)
    assert all(max(level.shape) >= 64 for level in view.levels)
    bright = view.read_region(600, 600, 64, 64)
    dark = view.read_region(1500, 1500, 64, 64)
    assert bright.mean() > 200
    assert dark.mean() < 50


@pytest.mark.parametrize(("shapes", "side"), [
    ([(2048, 2048), (100, 100)], 2048),  # a 100 px level gives way to level 0
    ([(40000, 40000), (10000, 10000), (100, 100)], 100),  # unless the finer level is too large to read whole
    ([(4096, 4096), (1024, 1024), (256, 256)], 1024),
])
def test_intensity_sample_level(shapes, side):
    from types import SimpleNamespace

    from vlm_micro.io.rendered import sample_level

    source = SimpleNamespace(levels=[plan.level for plan in sources.plan_levels(shapes)])
    assert max(source.levels[sample_level(source)].shape) == side
