"""Unreadable files fail with one line: the file, the cause, what to do."""

import struct

import numpy as np
import pytest
import tifffile
from PIL import Image

from vlm_micro.errors import ImageReadError
from vlm_micro.io import ReadSettings, inspect_image, open_views


def assert_one_line(excinfo, path, *words):
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    assert "Traceback" not in message
    for word in words:
        assert word in message


def read_and_render(path):
    views = open_views(path)
    for view in views:
        rows, cols = view.shape
        view.read_region(0, 0, rows, cols)


def test_error_missing_file(tmp_path):
    path = tmp_path / "missing.tif"
    with pytest.raises(ImageReadError) as excinfo:
        open_views(path)
    assert_one_line(excinfo, path, "file not found", "check the path")


def test_error_folder(tmp_path):
    path = tmp_path / "scan.zarr"
    path.mkdir()
    with pytest.raises(ImageReadError) as excinfo:
        inspect_image(path)
    assert_one_line(excinfo, path, "folder", "OME-TIFF")


def test_error_empty_file(tmp_path):
    path = tmp_path / "empty.tif"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError) as excinfo:
        open_views(path)
    assert_one_line(excinfo, path, "empty")


def test_error_not_an_image_with_tiff_extension(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("plate 3, well B2\n")
    with pytest.raises(ImageReadError) as excinfo:
        open_views(path)
    assert_one_line(excinfo, path, "not a TIFF file")


def test_error_unknown_extension(tmp_path):
    path = tmp_path / "data.xyz"
    path.write_bytes(b"\x00\x01\x02\x03" * 10)
    with pytest.raises(ImageReadError) as excinfo:
        open_views(path)
    assert_one_line(excinfo, path, "unsupported file type '.xyz'", "supported are")


def test_error_vendor_format_hint(tmp_path):
    path = tmp_path / "stack.czi"
    path.write_bytes(b"ZISRAWFILE" + b"\x00" * 20)
    with pytest.raises(ImageReadError) as excinfo:
        open_views(path)
    assert_one_line(excinfo, path, "'.czi'", "bfconvert")


def test_error_truncated_tiff(tmp_path, rng):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, rng.integers(0, 255, (64, 64), dtype=np.uint8), compression="zlib", tile=(16, 16))
    data = path.read_bytes()
    # Keep the header and the IFD (tifffile writes it before the image data), cut the data.
    ifd_offset = struct.unpack("<I", data[4:8])[0]
    path.write_bytes(data[: max(ifd_offset + 200, len(data) // 2)])
    with pytest.raises(ImageReadError) as excinfo:
        read_and_render(path)
    assert_one_line(excinfo, path, "truncated")


def test_tifffile_log_names_file(tmp_path, caplog):
    path = tmp_path / "cut.ome.tif"
    tifffile.imwrite(path, np.zeros((256, 256), np.uint16), ome=True, metadata={"axes": "YX"})
    # tifffile writes the OME-XML after the image data, so its tag now points past the end.
    path.write_bytes(path.read_bytes()[:2000])
    with caplog.at_level("WARNING", logger="tifffile"):
        inspect_image(path)
    records = [record for record in caplog.records if record.name == "tifffile"]
    assert records
    assert all(record.levelname == "WARNING" for record in records)
    assert all(record.getMessage().startswith(f"{path}: ") for record in records)


def test_error_truncated_header(tmp_path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8))
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(ImageReadError) as excinfo:
        read_and_render(path)
    assert_one_line(excinfo, path)


@pytest.mark.parametrize(("name", "kept_bytes"), [("cut.png", 300), ("cut.jpg", 200), ("cut.jpg", -2)])
def test_error_truncated_png_or_jpeg(tmp_path, rng, name, kept_bytes):
    path = tmp_path / name
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:kept_bytes])
    with pytest.raises(ImageReadError) as excinfo:
        read_and_render(path)
    assert_one_line(excinfo, path, "file is truncated")


@pytest.mark.parametrize("name", ["cut.png", "cut.jpg"])
def test_inspect_marks_truncated_png_or_jpeg(tmp_path, rng, name):
    path = tmp_path / name
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header stays whole, the pixel data is cut
    info = inspect_image(path)
    assert info["series_list"][0]["problem"].startswith("file is truncated")
    assert info["reader_choice"]["views"] == 0


@pytest.mark.parametrize("name", ["whole.png", "whole.jpg"])
def test_inspect_keeps_whole_png_or_jpeg(tmp_path, rng, name):
    path = tmp_path / name
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    info = inspect_image(path)
    assert info["series_list"][0]["problem"] is None
    assert info["reader_choice"]["views"] == 1


def _set_compression_tag(path, value):
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["Compression"].overwrite(value)


def test_error_unknown_compression(tmp_path):
    path = tmp_path / "codec.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), compression="zlib")
    _set_compression_tag(path, 60000)
    with pytest.raises(ImageReadError) as excinfo:
        read_and_render(path)
    assert_one_line(excinfo, path, "unsupported compression", "re-export")


def test_error_missing_codec(tmp_path, monkeypatch):
    path = tmp_path / "zstd.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), compression="zstd")
    codecs = type(tifffile.TIFF.DECOMPRESSORS)
    original = codecs.__getitem__

    def without_zstd(self, key):
        # The KeyError that tifffile raises when imagecodecs lacks the codec.
        if key == 50000:
            raise KeyError("<COMPRESSION.ZSTD: 50000> requires the 'imagecodecs' package")
        return original(self, key)

    monkeypatch.setattr(codecs, "__getitem__", without_zstd)
    with pytest.raises(ImageReadError) as excinfo:
        read_and_render(path)
    assert_one_line(excinfo, path, "missing codec", "pip install imagecodecs")


def test_error_zero_size(tmp_path):
    path = tmp_path / "zero.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(0)
    with pytest.raises(ImageReadError) as excinfo:
        read_and_render(path)
    assert_one_line(excinfo, path, "zero size")


def test_error_complex_dtype(write_tiff):
    path = write_tiff("complex.tif", np.zeros((4, 4), np.complex64))
    with pytest.raises(ImageReadError) as excinfo:
        open_views(path)
    assert_one_line(excinfo, path, "unsupported layout", "complex64")


def test_error_series_index_missing(write_tiff):
    path = write_tiff("one.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageReadError) as excinfo:
        open_views(path, ReadSettings(series=4))
    assert_one_line(excinfo, path, "no series 4", "read.series")


def test_error_series_name_for_png(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    with pytest.raises(ImageReadError) as excinfo:
        open_views(path, ReadSettings(series="nuclei"))
    assert_one_line(excinfo, path, "read.series")
