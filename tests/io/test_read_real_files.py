"""Real microscopy files: an Aperio slide, widefield nuclei, and scikit-image samples."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import tifffile
from PIL import Image

from vlm_micro.errors import ImageReadError
from vlm_micro.io import ReadSettings, inspect_image, open_views

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SVS = DATA_DIR / "cmu_small_region.svs"
NUCLEI = DATA_DIR / "nuclei_img2d.tif"
NUCLEAR_RGB = DATA_DIR / "nuclear_rgb.png"
SKIMAGE_DATA = Path(skimage.data.__file__).parent


@pytest.mark.parametrize(
    "path, sha256",
    [
        (SVS, "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7"),
        (NUCLEI, "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750"),
        (NUCLEAR_RGB, "c0d3fc389d90a90118b43b585cd5134a560a7fcadb7b46825fc7845321755e27"),
    ],
)
def test_real_file_checksum(path, sha256):
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256


def test_svs_baseline_view():
    (view,) = open_views(SVS)
    assert view.shape == (2967, 2220)
    assert view.pixel_size_um == pytest.approx(0.499)
    assert view.modality == "brightfield"
    assert view.plane["series_name"] == "Baseline"
    assert len(view.levels) > 1
    assert view.levels[-1].downsample > 4


def test_svs_label_and_macro_skipped():
    info = inspect_image(SVS)
    roles = {s["name"]: s["role"] for s in info["series_list"]}
    assert roles == {"Baseline": "image", "Thumbnail": "thumbnail", "Label": "label", "Macro": "macro"}
    assert info["series"] == 1
    assert info["pixel_size_um"] == pytest.approx(0.499)
    assert len(open_views(SVS, ReadSettings(series="all"))) == 1


def test_svs_label_by_name_rejected():
    with pytest.raises(ImageReadError, match="label image, which is never analysed"):
        open_views(SVS, ReadSettings(series="Label"))


def test_svs_region_passthrough():
    (view,) = open_views(SVS)
    with tifffile.TiffFile(SVS) as tif:
        expected = tif.series[0].asarray()[1000:1100, 700:820]
    assert np.array_equal(view.read_region(1000, 700, 100, 120), expected)


def test_svs_thumbnail_bright_background():
    (view,) = open_views(SVS)
    thumbnail = view.thumbnail(256)
    assert max(thumbnail.shape[:2]) == 256
    assert np.median(thumbnail) > 180


def test_nuclei_uint16_normalised():
    (view,) = open_views(NUCLEI)
    out = view.read_region(0, 0, 512, 512)
    assert view.shape == (512, 512)
    assert view.pixel_size_um is None
    assert view.modality == "fluorescence"
    assert view.plane["dtype"] == "uint16"
    assert out.min() == 0
    assert out.max() == 255
    assert np.array_equal(out[..., 0], out[..., 1])


def test_nuclei_inspect_uncalibrated():
    info = inspect_image(NUCLEI)
    assert info["pixel_size_um"] is None
    assert info["dtype"] == "uint16"
    assert info["axes"] == "YX"


def test_nuclear_rgb_png_passthrough():
    (view,) = open_views(NUCLEAR_RGB)
    expected = np.asarray(Image.open(NUCLEAR_RGB).convert("RGB"))
    assert view.shape == (1024, 1344)
    assert view.modality == "fluorescence"
    assert np.array_equal(view.read_region(0, 0, 1024, 1344), expected)


def test_skimage_ihc_brightfield():
    (view,) = open_views(SKIMAGE_DATA / "ihc.png")
    assert view.modality == "brightfield"
    assert np.array_equal(view.read_region(0, 0, 512, 512), skimage.data.immunohistochemistry())


def test_skimage_cell_grey():
    (view,) = open_views(SKIMAGE_DATA / "cell.png")
    out = view.read_region(0, 0, 660, 550)
    assert view.shape == (660, 550)
    assert view.plane["rendering"] == "composite"
    assert np.array_equal(out[..., 0], out[..., 2])
    assert out.max() == 255
