"""Pixel size from OME-XML, ImageJ, resolution tags and SVS descriptions, and overrides."""

import numpy as np
import pytest
import tifffile

from vlm_micro.errors import ImageReadError
from vlm_micro.io import inspect_image, open_views
from vlm_micro.io.metadata import dpi_to_um, svs_mpp, unit_to_um

PLANE = np.arange(64, dtype=np.uint16).reshape(8, 8)


@pytest.mark.parametrize(
    "size, unit, expected",
    [(0.5, "µm", 0.5), (650, "nm", 0.65), (0.001, "mm", 1.0), (2e-7, "m", 0.2), (3.0, None, 3.0)],
)
def test_pixel_size_ome_units(tmp_path, size, unit, expected):
    metadata = {"PhysicalSizeX": size, "PhysicalSizeY": size}
    if unit:
        metadata |= {"PhysicalSizeXUnit": unit, "PhysicalSizeYUnit": unit}
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(path, PLANE, ome=True, metadata=metadata)
    (view,) = open_views(path)
    assert view.pixel_size_um == pytest.approx(expected)
    assert inspect_image(path)["pixel_size_source"] == "OME-XML"


def test_pixel_size_ome_pixel_unit_unknown(tmp_path):
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(path, PLANE, ome=True, metadata={"PhysicalSizeX": 1, "PhysicalSizeXUnit": "pixel"})
    assert open_views(path)[0].pixel_size_um is None


@pytest.mark.parametrize("unit, expected", [("um", 0.25), ("micron", 0.25), ("\\u00B5m", 0.25), ("nm", 0.00025), ("mm", 250.0)])
def test_pixel_size_imagej(write_tiff, unit, expected):
    path = write_tiff("ij.tif", PLANE, imagej=True, resolution=(4.0, 4.0), metadata={"unit": unit})
    (view,) = open_views(path)
    assert view.pixel_size_um == pytest.approx(expected)
    assert view.plane["pixel_size_source"] == "ImageJ"


def test_pixel_size_imagej_pixel_unit_unknown(write_tiff):
    path = write_tiff("ij.tif", PLANE, imagej=True, resolution=(4.0, 4.0), metadata={"unit": "pixel"})
    assert open_views(path)[0].pixel_size_um is None


def test_pixel_size_resolution_inch(write_tiff):
    path = write_tiff("inch.tif", PLANE, resolution=(25400 / 0.5, 25400 / 0.5), resolutionunit="INCH")
    (view,) = open_views(path)
    assert view.pixel_size_um == pytest.approx(0.5)
    assert view.plane["pixel_size_source"] == "TIFF resolution"


def test_pixel_size_resolution_centimeter(write_tiff):
    path = write_tiff("cm.tif", PLANE, resolution=(40000, 40000), resolutionunit="CENTIMETER")
    assert open_views(path)[0].pixel_size_um == pytest.approx(0.25)


def test_pixel_size_anisotropic_reports_both(write_tiff):
    path = write_tiff("aniso.tif", PLANE, resolution=(40000, 20000), resolutionunit="CENTIMETER")
    info = inspect_image(path)
    assert info["pixel_size_um"] == pytest.approx(0.25)
    assert info["series_list"][0]["pixel_size_y_um"] == pytest.approx(0.5)


@pytest.mark.parametrize("dpi", [72, 96, 300])
def test_pixel_size_print_default_ignored(write_tiff, dpi):
    path = write_tiff("dpi.tif", PLANE, resolution=(dpi, dpi), resolutionunit="INCH")
    assert open_views(path)[0].pixel_size_um is None


def test_pixel_size_unit_none_unknown(write_tiff):
    path = write_tiff("none.tif", PLANE, resolution=(2.0, 2.0), resolutionunit="NONE")
    assert open_views(path)[0].pixel_size_um is None
    assert inspect_image(path)["pixel_size_um"] is None


def test_pixel_size_svs_description(tmp_path):
    path = tmp_path / "slide.svs"
    description = "Aperio Image Library v12.0.0\n64x48 [0,0 64x48] (16x16) JPEG/RGB Q=70|AppMag = 20|MPP = 0.2520"
    tifffile.imwrite(path, np.full((48, 64, 3), 200, np.uint8), tile=(16, 16), photometric="rgb",
                     description=description, metadata=None)
    (view,) = open_views(path)
    assert view.pixel_size_um == pytest.approx(0.252)
    assert view.plane["pixel_size_source"] == "SVS description"


def test_pixel_size_override_wins(tmp_path):
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(path, PLANE, ome=True, metadata={"PhysicalSizeX": 0.5})
    (view,) = open_views(path, pixel_size_um=0.8)
    assert view.pixel_size_um == 0.8
    assert view.plane["pixel_size_source"] == "override"


@pytest.mark.parametrize("value", [0, -1, float("nan"), "abc"])
def test_pixel_size_override_invalid(write_tiff, value):
    path = write_tiff("a.tif", PLANE)
    with pytest.raises(ImageReadError, match="invalid pixel size override"):
        open_views(path, pixel_size_um=value)


def test_unit_to_um_table():
    assert unit_to_um("µm") == 1.0
    assert unit_to_um("MICRON") == 1.0
    assert unit_to_um("inch") == 25400.0
    assert unit_to_um("pixel") is None
    assert unit_to_um("") is None


def test_dpi_to_um():
    assert dpi_to_um(50800) == pytest.approx(0.5)
    assert dpi_to_um(72) is None
    assert dpi_to_um(0) is None


def test_svs_mpp_parse():
    assert svs_mpp("Aperio ...|MPP = 0.4990|AppMag = 20") == pytest.approx(0.499)
    assert svs_mpp("Aperio ...|AppMag = 20") is None
    assert svs_mpp(None) is None
