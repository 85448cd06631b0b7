"""Axes handling: ImageJ hyperstacks and subsets, z projection, frames, OME series."""

import numpy as np
import pytest
import tifffile

from vlm_micro.errors import ImageReadError
from vlm_micro.io import ReadSettings, inspect_image, open_views

SIZES = {"T": 2, "Z": 3, "C": 2, "Y": 20, "X": 24}


def hyperstack(rng, axes: str) -> np.ndarray:
    shape = tuple(SIZES[a] for a in axes)
    return rng.integers(0, 3000, size=shape, dtype=np.uint16)


@pytest.mark.parametrize("axes", ["TZCYX", "ZCYX", "TCYX", "TZYX", "ZYX", "CYX", "TYX", "YX"])
def test_imagej_hyperstack_axes(write_tiff, rng, axes):
    data = hyperstack(rng, axes)
    path = write_tiff("stack.tif", data, imagej=True, metadata={"axes": axes})
    views = open_views(path)
    n_frames = SIZES["T"] if "T" in axes else 1
    assert len(views) == n_frames
    for frame, view in enumerate(views):
        assert view.shape == (20, 24)
        assert view.plane["frame"] == (frame if "T" in axes else None)
        assert view.plane["projection"] == ("max" if "Z" in axes else None)
        assert len(view.plane["channels"]) == (2 if "C" in axes else 1)
    info = inspect_image(path)
    assert info["axes"] == axes
    assert info["shape"] == list(data.shape)
    assert info["dtype"] == "uint16"


@pytest.mark.parametrize("projection", ["max", "mean", "middle"])
def test_z_projection_values(write_tiff, rng, expected_grey, read_all, projection):
    data = rng.integers(0, 3000, size=(5, 20, 24), dtype=np.uint16)
    path = write_tiff("z.tif", data, imagej=True, metadata={"axes": "ZYX"})
    (view,) = open_views(path, ReadSettings(z_projection=projection))
    reduced = {"max": data.max(axis=0), "mean": data.mean(axis=0), "middle": data[2]}[projection]
    assert view.plane["projection"] == projection
    assert np.array_equal(read_all(view)[..., 0], expected_grey(reduced))


def test_z_projection_max_ignores_nan(write_tiff, read_all):
    data = np.ones((3, 4, 4), dtype=np.float32)
    data[0, 0, 0] = np.nan
    data[1, 1, 1] = 5
    (view,) = open_views(write_tiff("znan.tif", data, imagej=True, metadata={"axes": "ZYX"}))
    out = read_all(view)[..., 0]
    assert out[1, 1] == 255
    assert out[0, 0] == 0


def test_frames_select_one(write_tiff, rng):
    data = hyperstack(rng, "TZCYX")
    path = write_tiff("t.tif", data, imagej=True, metadata={"axes": "TZCYX"})
    (view,) = open_views(path, ReadSettings(frames=1))
    assert view.plane["frame"] == 1
    assert view.plane["n_frames"] == 2


def test_frames_index_out_of_range(write_tiff, rng):
    path = write_tiff("t.tif", hyperstack(rng, "TYX"), imagej=True, metadata={"axes": "TYX"})
    with pytest.raises(ImageReadError, match="read.frames is 5 but series 0 has 2 frames"):
        open_views(path, ReadSettings(frames=5))


def test_frames_index_without_time_axis(write_tiff, rng):
    path = write_tiff("z.tif", hyperstack(rng, "ZYX"), imagej=True, metadata={"axes": "ZYX"})
    (view,) = open_views(path, ReadSettings(frames=3))
    assert view.plane["frame"] is None


def test_frames_differ_in_content(write_tiff, read_all):
    data = np.zeros((2, 8, 8), dtype=np.uint16)
    data[0, :4] = 100
    data[1, 4:] = 100
    views = open_views(write_tiff("t.tif", data, imagej=True, metadata={"axes": "TYX"}))
    assert read_all(views[0])[0, 0, 0] == 255
    assert read_all(views[1])[0, 0, 0] == 0


def test_imagej_rgb_hyperstack(write_tiff, rng, read_all):
    data = rng.integers(0, 255, size=(3, 16, 16, 3), dtype=np.uint8)
    path = write_tiff("rgbstack.tif", data, imagej=True, photometric="rgb", metadata={"axes": "ZYXS"})
    (view,) = open_views(path)
    assert view.plane["rendering"] == "rgb"
    assert np.array_equal(read_all(view), data.max(axis=0))


def write_two_series_ome(path, rng):
    fluorescence = rng.integers(0, 4000, size=(2, 30, 40), dtype=np.uint16)
    brightfield = np.full((20, 30, 3), 220, dtype=np.uint8)
    with tifffile.TiffWriter(path, ome=True) as writer:
        writer.write(fluorescence, metadata={
            "axes": "CYX", "Name": "cells", "PhysicalSizeX": 325, "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 325, "PhysicalSizeYUnit": "nm", "Channel": {"Name": ["DAPI", "GFP"]},
        })
        writer.write(brightfield, photometric="rgb", metadata={"Name": "overview tissue", "PhysicalSizeX": 2.0})
    return fluorescence


def test_ome_two_series_first(tmp_path, rng):
    path = tmp_path / "two.ome.tif"
    write_two_series_ome(path, rng)
    (view,) = open_views(path)
    assert view.plane["series"] == 0
    assert view.plane["series_name"] == "cells"
    assert view.plane["channels"] == ["DAPI", "GFP"]
    assert view.plane["channel_colors"] == ["#0000ff", "#00ff00"]
    assert view.pixel_size_um == pytest.approx(0.325)
    assert view.plane["pixel_size_source"] == "OME-XML"


def test_ome_two_series_inspect(tmp_path, rng):
    path = tmp_path / "two.ome.tif"
    write_two_series_ome(path, rng)
    info = inspect_image(path)
    assert info["format"] == "OME-TIFF"
    assert info["series"] == 1
    assert [s["role"] for s in info["series_list"]] == ["image", "macro"]
    assert [c["name"] for c in info["channels"]] == ["DAPI", "GFP"]


def test_ome_series_all_and_by_name(tmp_path, rng):
    path = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as writer:
        writer.write(np.zeros((16, 16), np.uint8), metadata={"Name": "a", "PhysicalSizeX": 0.5})
        writer.write(np.zeros((8, 8, 3), np.uint8), photometric="rgb", metadata={"Name": "b", "PhysicalSizeX": 1.5})
    views = open_views(path, ReadSettings(series="all"))
    assert [v.plane["series_name"] for v in views] == ["a", "b"]
    assert [v.pixel_size_um for v in views] == [0.5, 1.5]
    (by_name,) = open_views(path, ReadSettings(series="B"))
    assert by_name.plane["series"] == 1
    (by_index,) = open_views(path, ReadSettings(series=1))
    assert by_index.shape == (8, 8)


def test_ome_series_missing_name(tmp_path, rng):
    path = tmp_path / "two.ome.tif"
    write_two_series_ome(path, rng)
    with pytest.raises(ImageReadError, match="no series 'nuclei'"):
        open_views(path, ReadSettings(series="nuclei"))


def test_ome_channel_color_attribute(tmp_path):
    path = tmp_path / "color.ome.tif"
    # OME Color is signed RGBA: 0xFF8000FF is orange, opaque.
    orange = np.int32(np.uint32(0xFF8000FF).view(np.int32)).item()
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint16), ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": ["A", "B"], "Color": [orange, -1]}})
    (view,) = open_views(path)
    assert view.plane["channel_colors"][0] == "#ff8000"


def test_ome_transmitted_light_is_brightfield(tmp_path):
    path = tmp_path / "bf.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint16), ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": ["BF1", "BF2"], "IlluminationType": ["Transmitted"] * 2}})
    (view,) = open_views(path)
    assert view.modality == "brightfield"


def test_extra_axis_reads_index_zero(tmp_path, read_all):
    path = tmp_path / "angles.tif"
    data = np.zeros((2, 8, 8), np.uint16)
    data[0, 0, 0] = 10
    tifffile.imwrite(path, data, metadata={"axes": "AYX"})
    (view,) = open_views(path)
    info = inspect_image(path)
    assert info["axes"] == "AYX"
    assert info["reader_choice"]["per_series"][0]["fixed_axes"] == {"A": 0}
    assert view.plane["fixed_axes"] == {"A": 0}
    assert read_all(view)[0, 0, 0] == 255
