"""PNG and JPEG: bit depths, grey, RGB, RGBA, palette, pixel size from pHYs/JFIF."""

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from vlm_micro.io import ArrayView, inspect_image, open_views


def test_png_rgb8_passthrough(tmp_path, rng, read_all):
    image = rng.integers(0, 255, size=(30, 40, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(image).save(path)
    (view,) = open_views(path)
    assert isinstance(view, ArrayView)
    assert np.array_equal(read_all(view), image)
    assert view.plane["rendering"] == "rgb"


def test_png_grey8_normalised(tmp_path, rng, expected_grey, read_all):
    plane = rng.integers(20, 90, size=(30, 40), dtype=np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(plane).save(path)
    (view,) = open_views(path)
    out = read_all(view)
    assert np.array_equal(out[..., 0], expected_grey(plane))
    assert np.array_equal(out[..., 0], out[..., 1])


def test_png_grey16(tmp_path, rng, expected_grey, read_all):
    plane = rng.integers(0, 4096, size=(30, 40), dtype=np.uint16)
    path = tmp_path / "grey16.png"
    path.write_bytes(imagecodecs.png_encode(plane))
    (view,) = open_views(path)
    assert np.array_equal(read_all(view)[..., 0], expected_grey(plane))
    assert inspect_image(path)["dtype"] == "uint16"


def test_png_rgb16_keeps_16_bits(tmp_path, read_all):
    image = np.zeros((10, 10, 3), dtype=np.uint16)
    image[..., 0] = 1000
    image[..., 1] = 500
    image[0, 0] = 0
    path = tmp_path / "rgb16.png"
    path.write_bytes(imagecodecs.png_encode(image))
    (view,) = open_views(path)
    assert view.plane["rendering"] == "rgb-normalised"
    assert read_all(view)[5, 5].tolist() == [255, 128, 0]
    info = inspect_image(path)
    assert info["dtype"] == "uint16"
    assert info["axes"] == "YXS"


def test_png_rgba_drops_alpha(tmp_path, rng, read_all):
    image = rng.integers(0, 255, size=(12, 14, 4), dtype=np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(image, mode="RGBA").save(path)
    assert np.array_equal(read_all(open_views(path)[0]), image[..., :3])


def test_png_grey_alpha(tmp_path, read_all):
    image = np.zeros((8, 8, 2), dtype=np.uint8)
    image[:4, :, 0] = 200
    image[..., 1] = 255
    path = tmp_path / "la.png"
    Image.fromarray(image, mode="LA").save(path)
    out = read_all(open_views(path)[0])
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[7, 7].tolist() == [0, 0, 0]


def test_png_palette_expanded(tmp_path, read_all):
    image = Image.new("P", (6, 4))
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    pixels = np.zeros((4, 6), np.uint8)
    pixels[0, 0], pixels[1, 1] = 1, 2
    image.putdata(pixels.ravel().tolist())
    path = tmp_path / "palette.png"
    image.save(path)
    out = read_all(open_views(path)[0])
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[1, 1].tolist() == [0, 0, 255]


def test_png_bilevel(tmp_path, read_all):
    pixels = np.zeros((8, 8), dtype=bool)
    pixels[2:4, 2:4] = True
    path = tmp_path / "mask.png"
    Image.fromarray(pixels).save(path)
    out = read_all(open_views(path)[0])
    assert out[2, 2, 0] == 255
    assert out[0, 0, 0] == 0


def test_png_pixel_size_from_phys(tmp_path):
    path = tmp_path / "phys.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path, dpi=(25400 / 0.65, 25400 / 0.65))
    (view,) = open_views(path)
    assert view.pixel_size_um == pytest.approx(0.65, rel=1e-3)
    assert view.plane["pixel_size_source"] == "PNG pHYs"


def test_jpeg_rgb(tmp_path, read_all):
    y, x = np.mgrid[0:32, 0:48]
    image = np.stack([y * 6, x * 4, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    path = tmp_path / "rgb.jpg"
    Image.fromarray(image).save(path, quality=95)
    (view,) = open_views(path)
    assert np.abs(read_all(view).astype(int) - image).mean() < 3
    assert inspect_image(path)["format"] == "JPEG"


def test_jpeg_grey(tmp_path, read_all):
    plane = np.tile(np.arange(64, dtype=np.uint8) * 3, (16, 1))
    path = tmp_path / "grey.jpeg"
    Image.fromarray(plane).save(path, quality=95)
    (view,) = open_views(path)
    out = read_all(view)
    assert view.plane["rendering"] == "composite"
    assert out[0, 0, 0] < 10
    assert out[0, -1, 0] > 245


def test_jpeg_cmyk_converted(tmp_path, read_all):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path)
    out = read_all(open_views(path)[0])
    assert out[4, 4, 0] > 200
    assert out[4, 4, 1] < 60


def test_jpeg_72_dpi_ignored(tmp_path):
    path = tmp_path / "dpi.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, dpi=(72, 72))
    assert open_views(path)[0].pixel_size_um is None
    assert inspect_image(path)["pixel_size_um"] is None


def test_jpeg_density_pixel_size(tmp_path):
    path = tmp_path / "dpi.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, dpi=(50800, 50800))
    assert open_views(path)[0].pixel_size_um == pytest.approx(0.5)


def test_png_large_gets_levels(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((40, 1500, 3), np.uint8)).save(path)
    (view,) = open_views(path)
    assert [lv.downsample for lv in view.levels] == [1.0, 2.0, 4.0]
    assert [lv["shape"] for lv in inspect_image(path)["levels"]] == [[40, 1500], [20, 750], [10, 375]]


def test_png_wrong_extension_still_read(tmp_path):
    path = tmp_path / "really_png.tif"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path, format="PNG")
    assert open_views(path)[0].shape == (4, 4)
