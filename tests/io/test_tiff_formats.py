"""TIFF round trips: containers, compressions, sample layouts and data types."""

import numpy as np
import pytest
import tifffile

from vlm_micro.io import inspect_image, open_views

COMPRESSIONS = [None, "lzw", "zlib", "zstd", "jpeg"]


def rgb_image(rng, rows=48, cols=80):
    # Smooth content, so that JPEG round trips stay close to the original.
    y, x = np.mgrid[0:rows, 0:cols]
    base = np.stack([y * 4, x * 3, (x + y) * 2], axis=-1) % 256
    return (base + rng.integers(0, 4, size=base.shape)).astype(np.uint8)


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_tiff_rgb_round_trip(write_tiff, rng, compression, tiled, bigtiff, read_all):
    image = rgb_image(rng)
    layout = {"tile": (16, 16)} if tiled else {"rowsperstrip": 8}
    path = write_tiff("rgb.tif", image, photometric="rgb", compression=compression, bigtiff=bigtiff, **layout)
    (view,) = open_views(path)
    out = read_all(view)
    assert view.shape == (48, 80)
    assert view.plane["rendering"] == "rgb"
    if compression == "jpeg":
        assert np.abs(out.astype(int) - image).mean() < 4
    else:
        assert np.array_equal(out, image)


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("compression", [None, "lzw", "zlib", "zstd"])
def test_tiff_grey_uint16_round_trip(write_tiff, rng, compression, tiled, read_all, expected_grey):
    plane = rng.integers(0, 4096, size=(40, 56), dtype=np.uint16)
    layout = {"tile": (16, 16)} if tiled else {"rowsperstrip": 5}
    path = write_tiff("grey.tif", plane, compression=compression, **layout)
    (view,) = open_views(path)
    out = read_all(view)
    assert np.array_equal(out[..., 0], expected_grey(plane))
    assert np.array_equal(out[..., 0], out[..., 2])
    assert view.modality == "fluorescence"


def test_tiff_planar_rgb_matches_contiguous(write_tiff, rng, read_all):
    image = rgb_image(rng)
    path = write_tiff("planar.tif", np.moveaxis(image, -1, 0), photometric="rgb", planarconfig="separate")
    (view,) = open_views(path)
    assert view.plane["axes"] == "SYX"
    assert np.array_equal(read_all(view), image)


def test_tiff_rgba_drops_alpha(write_tiff, rng, read_all):
    image = np.concatenate([rgb_image(rng), np.full((48, 80, 1), 7, np.uint8)], axis=-1)
    path = write_tiff("rgba.tif", image, photometric="rgb", extrasamples=["unassalpha"])
    (view,) = open_views(path)
    assert np.array_equal(read_all(view), image[..., :3])


def test_tiff_grey_alpha_drops_alpha(write_tiff, read_all):
    data = np.zeros((8, 8, 2), dtype=np.uint16)
    data[:4, :, 0] = 500
    data[..., 1] = 65535
    path = write_tiff("grey_alpha.tif", data, photometric="minisblack", planarconfig="contig", extrasamples=["unassalpha"])
    (view,) = open_views(path)
    out = read_all(view)
    assert view.plane["channels"] == ["channel 0"]
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[7, 7].tolist() == [0, 0, 0]


def test_tiff_grey_stored_as_rgb_unchanged(write_tiff, rng, read_all):
    grey = rng.integers(10, 60, size=(32, 32), dtype=np.uint8)
    image = np.repeat(grey[..., None], 3, axis=-1)
    path = write_tiff("grey_rgb.tif", image, photometric="rgb")
    (view,) = open_views(path)
    assert np.array_equal(read_all(view), image)
    assert view.modality == "fluorescence"


def test_tiff_rgb_uint16_normalised_jointly(write_tiff, read_all):
    image = np.zeros((20, 20, 3), dtype=np.uint16)
    image[..., 0] = 40000
    image[..., 1] = 20000
    image[0, 0] = 0
    path = write_tiff("rgb16.tif", image, photometric="rgb")
    (view,) = open_views(path, None)
    assert view.plane["rendering"] == "rgb-normalised"
    assert read_all(view)[5, 5].tolist() == [255, 128, 0]


@pytest.mark.parametrize(
    "dtype, make",
    [
        ("uint8", lambda r: r.integers(0, 40, (30, 30))),
        ("uint16", lambda r: r.integers(0, 1024, (30, 30))),
        ("int16", lambda r: r.integers(-20000, -10000, (30, 30))),
        ("uint32", lambda r: r.integers(3_000_000_000, 3_000_100_000, (30, 30))),
        ("int32", lambda r: r.integers(-5, 5, (30, 30))),
        ("float32", lambda r: r.normal(1e4, 1e3, (30, 30))),
        ("float64", lambda r: r.normal(-1e-6, 1e-7, (30, 30))),
    ],
)
def test_tiff_dtypes_normalised(write_tiff, rng, dtype, make, read_all, expected_grey):
    plane = make(rng).astype(dtype)
    path = write_tiff(f"{dtype}.tif", plane)
    (view,) = open_views(path)
    out = read_all(view)[..., 0]
    assert np.array_equal(out, expected_grey(plane))
    assert out.min() == 0
    assert out.max() == 255


def test_tiff_float_nan(write_tiff, rng, read_all, expected_grey):
    plane = rng.random((30, 30)).astype(np.float32)
    plane[::7, ::5] = np.nan
    path = write_tiff("nan.tif", plane)
    (view,) = open_views(path)
    out = read_all(view)[..., 0]
    assert np.all(out[::7, ::5] == 0)
    assert np.array_equal(out, expected_grey(plane))


def test_tiff_constant_image(write_tiff, read_all):
    path = write_tiff("constant.tif", np.full((30, 30), 4321, dtype=np.uint16))
    (view,) = open_views(path)
    assert np.all(read_all(view) == 0)


def test_tiff_bool_image(write_tiff, read_all):
    plane = np.zeros((16, 16), dtype=bool)
    plane[4:8, 4:8] = True
    path = write_tiff("mask.tif", plane)
    (view,) = open_views(path)
    out = read_all(view)[..., 0]
    assert out[5, 5] == 255
    assert out[0, 0] == 0


def test_tiff_palette_colormap(write_tiff, read_all):
    indices = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    colormap = np.zeros((3, 256), dtype=np.uint16)
    colormap[:, 1] = (65535, 0, 0)
    colormap[:, 2] = (0, 0, 65535)
    path = write_tiff("palette.tif", indices, photometric="palette", colormap=colormap)
    (view,) = open_views(path)
    out = read_all(view)
    assert out[0, 1].tolist() == [255, 0, 0]
    assert out[1, 0].tolist() == [0, 0, 255]
    assert out[0, 0].tolist() == [0, 0, 0]


def test_tiff_miniswhite_inverted(write_tiff, read_all):
    plane = np.array([[0, 255]], dtype=np.uint8).repeat(4, axis=0)
    path = write_tiff("miniswhite.tif", plane, photometric="miniswhite")
    (view,) = open_views(path)
    out = read_all(view)[..., 0]
    assert out[0, 0] == 255
    assert out[0, 1] == 0


def test_tiff_many_channels_composite(write_tiff, rng, read_all):
    stack = rng.integers(0, 1000, size=(7, 24, 24), dtype=np.uint16)
    path = write_tiff("seven.tif", stack, metadata={"axes": "CYX"})
    (view,) = open_views(path)
    assert len(view.plane["channels"]) == 7
    assert len(set(view.plane["channel_colors"])) == 7
    assert view.modality == "fluorescence"
    assert read_all(view).dtype == np.uint8


def test_tiff_generic_multipage_frames(tmp_path, rng):
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as writer:
        for _ in range(3):
            writer.write(rng.integers(0, 255, (16, 16), dtype=np.uint8), metadata=None)
    views = open_views(path)
    assert len(views) == 3
    assert [v.plane["frame"] for v in views] == [0, 1, 2]
    assert views[0].plane["frame_axis"] == "I"


def test_tiff_region_outside_padded(write_tiff, rng):
    image = rgb_image(rng)
    (view,) = open_views(write_tiff("pad.tif", image, photometric="rgb"))
    region = view.read_region(-4, 70, 10, 20)
    assert np.all(region[:4] == view.pad_value)
    assert np.all(region[:, 10:] == view.pad_value)
    assert np.array_equal(region[4:, :10], image[:6, 70:80])


def test_tiff_bigtiff_flag_in_inspect(write_tiff, rng):
    path = write_tiff("big.tif", rgb_image(rng), photometric="rgb", bigtiff=True)
    info = inspect_image(path)
    assert info["bigtiff"] is True
    assert info["format"] == "BigTIFF"
