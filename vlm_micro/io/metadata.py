"""Pixel size and channel metadata of TIFF-based files.

Pixel size sources, in order of precedence: OME-XML ``Pixels/@PhysicalSizeX`` with its
unit, Zeiss LSM voxel size, ImageJ metadata (``unit`` in the ImageDescription with
the resolution tags), the Aperio SVS ImageDescription (``MPP = 0.4990``), and the
TIFF ``XResolution``/``ResolutionUnit`` tags.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from xml.etree import ElementTree

from vlm_micro.io.colors import RGB

log = logging.getLogger(__name__)

# Micrometres per unit. Keys are lower case; OME UnitsLength symbols and the unit
# strings that ImageJ writes ("micron", "\u00B5m" escaped) are both covered.
_UM_PER_UNIT = {
    "m": 1e6,
    "dm": 1e5,
    "cm": 1e4,
    "centimeter": 1e4,
    "mm": 1e3,
    "millimeter": 1e3,
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "pm": 1e-6,
    "å": 1e-4,
    "angstrom": 1e-4,
    "in": 25400.0,
    "inch": 25400.0,
    "mil": 25.4,
    "thou": 25.4,
}

# Resolutions that image editors and cameras write by default, in dots per inch. They
# describe print size, not a microscope's pixel size, so they are ignored.
_DEFAULT_DPI = (72.0, 96.0, 150.0, 200.0, 240.0, 300.0, 600.0)

_SVS_MPP = re.compile(r"\bMPP\s*=\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")


@dataclass
class SeriesMetadata:
    """Metadata of one series that the reader uses.

    Attributes
    ----------
    pixel_size_um, pixel_size_y_um : float or None
        Column (x) and row (y) pixel size of level 0 in micrometres per pixel.
    pixel_size_source : str or None
        Where the pixel size came from: ``"OME-XML"``, ``"LSM"``, ``"ImageJ"``,
        ``"SVS description"`` or ``"TIFF resolution"``.
    channel_names, channel_colors, emission_nm : list
        Per channel of the file, None where the file has no value.
    modality_hint : str or None
        ``"fluorescence"`` or ``"brightfield"`` when OME channel metadata states it.
    """

    pixel_size_um: float | None = None
    pixel_size_y_um: float | None = None
    pixel_size_source: str | None = None
    channel_names: list = field(default_factory=list)
    channel_colors: list = field(default_factory=list)
    emission_nm: list = field(default_factory=list)
    modality_hint: str | None = None


def unit_to_um(unit: str | None) -> float | None:
    """Return micrometres per ``unit``, or None for pixels, blanks and unknown units."""
    if not unit:
        return None
    text = str(unit).strip()
    if "\\u" in text:
        text = text.encode("ascii", "backslashreplace").decode("unicode_escape")
    return _UM_PER_UNIT.get(text.lower())


def _valid_size(size: float | None) -> float | None:
    if size is None or not math.isfinite(size) or size <= 0:
        return None
    return float(size)


def dpi_to_um(dots_per_inch: float | None) -> float | None:
    """Convert a resolution in dots per inch to um/px; None for the usual print defaults."""
    if not dots_per_inch or not math.isfinite(dots_per_inch) or dots_per_inch <= 0:
        return None
    if any(abs(dots_per_inch - d) < 0.05 for d in _DEFAULT_DPI):
        log.info("ignoring the resolution %.4g dpi: it is a print default, not a pixel size", dots_per_inch)
        return None
    return 25400.0 / dots_per_inch


def _ome_color(value: str | None) -> RGB | None:
    # OME Color is a signed 32-bit RGBA integer; -1 (white) is the schema default.
    if value is None:
        return None
    try:
        rgba = int(value) & 0xFFFFFFFF
    except ValueError:
        return None
    return ((rgba >> 24) & 255) / 255.0, ((rgba >> 16) & 255) / 255.0, ((rgba >> 8) & 255) / 255.0


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _ome_modality(channels: list[dict]) -> str | None:
    contrast = [(c.get("ContrastMethod") or "").lower() for c in channels]
    illumination = [(c.get("IlluminationType") or "").lower() for c in channels]
    if any(m == "fluorescence" for m in contrast) or any(i == "epifluorescence" for i in illumination):
        return "fluorescence"
    if channels and all(m == "brightfield" or i == "transmitted" for m, i in zip(contrast, illumination)):
        return "brightfield"
    return None


def parse_ome_images(omexml: str) -> list[tuple[str | None, SeriesMetadata]]:
    """Parse the Image elements of OME-XML into (image name, metadata) pairs, in order."""
    try:
        root = ElementTree.fromstring(omexml)
    except ElementTree.ParseError as exc:
        log.warning("OME-XML cannot be parsed (%s); pixel size and channel names are ignored", exc)
        return []
    images = []
    for image in root:
        if not image.tag.endswith("}Image") and image.tag != "Image":
            continue
        pixels = next((p for p in image if p.tag.endswith("Pixels")), None)
        if pixels is None:
            continue
        images.append((image.attrib.get("Name"), _ome_pixels_metadata(pixels)))
    return images


def _ome_pixels_metadata(pixels: ElementTree.Element) -> SeriesMetadata:
    attrib = pixels.attrib
    meta = SeriesMetadata()
    size_x = _float_or_none(attrib.get("PhysicalSizeX"))
    size_y = _float_or_none(attrib.get("PhysicalSizeY"))
    # OME's default unit for physical sizes is the micrometre.
    scale_x = unit_to_um(attrib.get("PhysicalSizeXUnit", "µm"))
    scale_y = unit_to_um(attrib.get("PhysicalSizeYUnit", "µm"))
    if size_x is not None and scale_x is not None:
        meta.pixel_size_um = _valid_size(size_x * scale_x)
    if size_y is not None and scale_y is not None:
        meta.pixel_size_y_um = _valid_size(size_y * scale_y)
    if meta.pixel_size_um is None and meta.pixel_size_y_um is not None:
        meta.pixel_size_um = meta.pixel_size_y_um
    if meta.pixel_size_um is not None:
        meta.pixel_size_source = "OME-XML"
    channels = [c.attrib for c in pixels if c.tag.endswith("Channel")]
    meta.channel_names = [c.get("Name") or c.get("Fluor") for c in channels]
    meta.channel_colors = [_ome_color(c.get("Color")) for c in channels]
    meta.emission_nm = [_float_or_none(c.get("EmissionWavelength")) for c in channels]
    meta.modality_hint = _ome_modality(channels)
    return meta


def _imagej_metadata(tif, keyframe) -> SeriesMetadata:
    meta = SeriesMetadata()
    info = tif.imagej_metadata or {}
    scale = unit_to_um(info.get("unit"))
    x_res = _resolution(keyframe, "XResolution")
    y_res = _resolution(keyframe, "YResolution")
    if scale is not None and x_res:
        meta.pixel_size_um = _valid_size(scale / x_res)
        meta.pixel_size_y_um = _valid_size(scale / y_res) if y_res else meta.pixel_size_um
        if meta.pixel_size_um is not None:
            meta.pixel_size_source = "ImageJ"
    luts = info.get("LUTs") or []
    meta.channel_colors = [_lut_color(lut) for lut in luts]
    return meta


def _lut_color(lut) -> RGB | None:
    try:
        top = [float(lut[i][-1]) / 255.0 for i in range(3)]
    except (TypeError, IndexError, ValueError):
        return None
    return tuple(top) if max(top) > 0 else None


def _resolution(page, name: str) -> float | None:
    tag = page.tags.get(name)
    if tag is None:
        return None
    value = tag.value
    try:
        numerator, denominator = value
        resolution = numerator / denominator
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return resolution if math.isfinite(resolution) and resolution > 0 else None


def resolution_tags_um(page) -> tuple[float | None, float | None]:
    """Return the (x, y) pixel size in um/px from a page's resolution tags.

    Only inch and centimetre units count: a ResolutionUnit of NONE gives no length.
    """
    unit_tag = page.tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2  # TIFF default: inch
    x_res = _resolution(page, "XResolution")
    y_res = _resolution(page, "YResolution")
    if unit == 2:
        return dpi_to_um(x_res), dpi_to_um(y_res)
    if unit == 3:
        return (
            dpi_to_um(x_res * 2.54) if x_res else None,
            dpi_to_um(y_res * 2.54) if y_res else None,
        )
    return None, None


def svs_mpp(description: str | None) -> float | None:
    """Return the ``MPP`` value (um/px) of an Aperio ImageDescription, or None."""
    if not description:
        return None
    match = _SVS_MPP.search(description)
    return _valid_size(float(match.group(1))) if match else None


def series_metadata(tif, series_index: int, ome_images: list | None = None) -> SeriesMetadata:
    """Collect pixel size and channel metadata of one series of an open TiffFile.

    Parameters
    ----------
    tif : tifffile.TiffFile
    series_index : int
        Index into ``tif.series``.
    ome_images : list, optional
        Output of :func:`parse_ome_images` for this file, parsed once by the caller.
    """
    series = tif.series[series_index]
    keyframe = series.keyframe
    meta = SeriesMetadata()
    if tif.is_ome and ome_images:
        meta = _match_ome_image(ome_images, tif, series_index) or meta
    if meta.pixel_size_um is None and tif.is_lsm:
        _fill_size(meta, _lsm_size(tif), "LSM")
    if tif.is_imagej:
        imagej = _imagej_metadata(tif, keyframe)
        if meta.pixel_size_um is None:
            _fill_size(meta, (imagej.pixel_size_um, imagej.pixel_size_y_um), "ImageJ")
        if not any(meta.channel_colors):
            meta.channel_colors = imagej.channel_colors
    if meta.pixel_size_um is None and tif.is_svs:
        _fill_size(meta, (svs_mpp(tif.pages.first.description),) * 2, "SVS description")
    if meta.pixel_size_um is None:
        _fill_size(meta, resolution_tags_um(keyframe), "TIFF resolution")
    return meta


def _fill_size(meta: SeriesMetadata, sizes: tuple, source: str) -> None:
    size_x, size_y = sizes
    size_x = size_x if size_x is not None else size_y
    if size_x is None:
        return
    meta.pixel_size_um = size_x
    meta.pixel_size_y_um = size_y if size_y is not None else size_x
    meta.pixel_size_source = source


def _lsm_size(tif) -> tuple[float | None, float | None]:
    info = tif.lsm_metadata or {}
    # LSM stores voxel sizes in metres.
    size_x = _valid_size(float(info.get("VoxelSizeX", 0)) * 1e6)
    size_y = _valid_size(float(info.get("VoxelSizeY", 0)) * 1e6)
    return size_x, size_y


def _match_ome_image(ome_images: list, tif, series_index: int) -> SeriesMetadata | None:
    # tifffile builds one series per OME Image element, in document order; when the
    # counts differ (damaged or partial XML), fall back to matching by name.
    if len(ome_images) == len(tif.series):
        return ome_images[series_index][1]
    name = tif.series[series_index].name
    for image_name, meta in ome_images:
        if name and image_name == name:
            return meta
    log.warning("OME-XML has %d images but the file %d series; metadata of series %d is not used",
                len(ome_images), len(tif.series), series_index)
    return None
