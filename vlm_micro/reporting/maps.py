"""The two map figures of a report, drawn pixel by pixel with numpy and Pillow.

The cell-type overlay and the anomaly heat map show the thumbnail with one colour per
tile (or per cell) on top. Both are composed here from the tile raster
(:class:`~vlm_micro.reporting.rasters.TileRaster`): each map pixel looks up the tile
under its centre once, and colours, hatching and outlines are array operations. This
costs a fraction of drawing the same maps with matplotlib artists, which matters
because every image of a run gets them. Text uses the DejaVu Sans font that ships
with matplotlib, as the other figures do.

Sizes follow matplotlib's conventions at :data:`DPI`: font sizes and line widths are
given in points (1/72 inch) and converted to pixels.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps, get_data_path
from matplotlib.colors import to_rgb
from PIL import Image, ImageDraw, ImageFont

from vlm_micro.reporting.rasters import TileRaster
from vlm_micro.reporting.stats import bool_column, float_column

DPI = 120
OVERLAY_ALPHA = 0.45  # opacity of the class colour over confident tiles, low enough to see the tissue
UNCERTAIN_ALPHA = 0.15  # lighter fill under the hatching of uncertain tiles
HEATMAP_CMAP = "inferno"
HEATMAP_ALPHA = 0.7
ANOMALY_OUTLINE = "#00e5ff"
BACKGROUND_GREY = 217  # map background where there is no thumbnail

FIGURE_WIDTH_IN = 4.6
SIDE_IN = 0.2  # space left and right of a map, where the end labels of the colour bar go
MAX_MAP_HEIGHT_IN = 6.5  # maps of tall images are narrowed to stay below this height
PAD_PX = 7  # white margin around the content
TITLE_PT = 11
LEGEND_PT = 7.5
TICK_PT = 7
LABEL_PT = 8
HATCH_PERIOD_PX = 10  # distance between hatch lines along a row
OVERLAY_TITLE = "Predicted cell type (hatched = uncertain)"
HEATMAP_TITLE = "Anomaly score (cyan outline = anomalous)"
COLORBAR_LABEL = "anomaly score (0 = normal, 1 = anomalous)"


def points(value: float) -> int:
    """Convert a length in points to whole pixels at :data:`DPI`, at least 1."""
    return max(1, round(value * DPI / 72))


@functools.lru_cache(maxsize=None)
def font(size_pt: float, bold: bool = False) -> ImageFont.FreeTypeFont:
    """Return DejaVu Sans (bold or regular) from matplotlib's data folder at ``size_pt`` points, in whole pixels."""
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(get_data_path()) / "fonts" / "ttf" / name), round(size_pt * DPI / 72))


def nice_length(value: float) -> float:
    """Round ``value`` down to 1, 2 or 5 times a power of ten."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (5, 2, 1):
        if step * power <= value:
            return step * power
    return power


@dataclass(frozen=True)
class MapGrid:
    """Positions of the tiles of the first plane on the pixels of a map.

    Attributes
    ----------
    shape : (int, int)
        Level-0 rows and columns of the plane.
    index : (height, width) int64 ndarray
        Row of the tile table under the centre of each map pixel, -1 where there is none.
    """

    shape: tuple[int, int]
    index: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """Height and width of the map in pixels."""
        return self.index.shape

    @property
    def scale(self) -> tuple[float, float]:
        """Map pixels per level-0 pixel, vertically and horizontally."""
        return self.index.shape[0] / self.shape[0], self.index.shape[1] / self.shape[1]


def map_grid(raster: TileRaster, shape: tuple[int, int]) -> MapGrid:
    """Look up the tile under each pixel of a map of the plane ``shape`` (level-0 rows, columns)."""
    aspect = shape[0] / max(1, shape[1])
    width = (FIGURE_WIDTH_IN - 2 * SIDE_IN) * DPI
    height = width * aspect
    if height > MAX_MAP_HEIGHT_IN * DPI:
        height = MAX_MAP_HEIGHT_IN * DPI
        width = height / aspect
    height, width = max(1, round(height)), max(1, round(width))
    rows = np.floor((np.arange(height) + 0.5) * shape[0] / height / raster.downsample).astype(np.int64)
    cols = np.floor((np.arange(width) + 0.5) * shape[1] / width / raster.downsample).astype(np.int64)
    index = np.full((height, width), -1, dtype=np.int64)
    row_ok = rows < raster.index.shape[0]
    col_ok = cols < raster.index.shape[1]
    index[np.ix_(row_ok, col_ok)] = raster.index[np.ix_(rows[row_ok], cols[col_ok])]
    return MapGrid(tuple(shape), index)


def _background(thumbnail: np.ndarray | None, size: tuple[int, int], grey: bool) -> np.ndarray:
    """Return the thumbnail stretched over the map as float RGB 0-255, or a light grey field."""
    height, width = size
    if thumbnail is None:
        return np.full((height, width, 3), float(BACKGROUND_GREY))
    image = Image.fromarray(np.ascontiguousarray(thumbnail, dtype=np.uint8), mode="RGB")
    # Enlarged thumbnails keep sharp pixels, and reduced ones are filtered against aliasing.
    resample = Image.Resampling.NEAREST if width >= 2 * image.width else Image.Resampling.LANCZOS
    pixels = np.asarray(image.resize((width, height), resample), dtype=np.float32)
    if grey:
        pixels = np.repeat(pixels.mean(axis=2, keepdims=True), 3, axis=2)
    return pixels


def _boundary(index: np.ndarray, width: int) -> np.ndarray:
    """Return the pixels that lie within ``width`` pixels of another tile or of the map edge, inside a tile."""
    padded = np.pad(index, width, constant_values=-1)
    height, columns = index.shape
    edge = np.zeros(index.shape, dtype=bool)
    for shift in range(1, width + 1):
        for dy, dx in ((shift, 0), (-shift, 0), (0, shift), (0, -shift)):
            neighbour = padded[width + dy : width + dy + height, width + dx : width + dx + columns]
            edge |= neighbour != index
    return edge & (index >= 0)


def hatch_mask(size: tuple[int, int]) -> np.ndarray:
    """Return a mask of lines rising to the right ("////"), :data:`HATCH_PERIOD_PX` apart."""
    rows, cols = np.indices(size)
    return (rows + cols) % HATCH_PERIOD_PX < 2


def _blend(image: np.ndarray, mask: np.ndarray, rgb: np.ndarray, alpha) -> None:
    """Paint ``rgb`` (0-1, one row per masked pixel, or one colour) with opacity ``alpha`` where ``mask`` is set."""
    alpha = np.asarray(alpha, dtype=np.float32)
    if alpha.ndim:
        alpha = alpha[:, None]
    image[mask] = image[mask] * (1 - alpha) + np.asarray(rgb, dtype=np.float32) * 255 * alpha


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def overlay_map(grid: MapGrid, view: dict, colors: dict[str, str], classes: list[str]) -> np.ndarray:
    """Return the map of predicted cell types: class colours over the thumbnail, uncertain tiles hatched.

    ``view`` contains ``thumbnail``, ``tiles`` (first plane), ``placement`` and
    ``pixel_size_um``. Cells get a thin outline in their class colour. Uncertain
    tiles and cells are hatched and outlined in their class colour.
    """
    image = _background(view["thumbnail"], grid.size, grey=False)
    tiles = view["tiles"]
    inside = grid.index >= 0
    if not tiles.empty and inside.any():
        labels = tiles["cell_type"].astype(str).to_numpy()
        lookup = {name: position for position, name in enumerate(classes)}
        class_index = np.array([lookup.get(label, -1) for label in labels], dtype=np.int64)
        palette = np.array([to_rgb(colors.get(name, "#808080")) for name in classes] + [(0.0, 0.0, 0.0)])
        uncertain = bool_column(tiles, "uncertain")
        known = class_index >= 0
        alpha = np.where(known, np.where(uncertain, UNCERTAIN_ALPHA, OVERLAY_ALPHA), 0.0)
        tile_rgb = palette[class_index]  # unknown labels take the last row and alpha 0

        under = grid.index[inside]
        _blend(image, inside, tile_rgb[under], alpha[under])
        hatched = inside.copy()
        hatched[inside] = uncertain[under] & known[under]
        edges = _boundary(grid.index, 1)
        outline = edges if view["placement"] == "cells" else edges & hatched
        lines = (outline | (hatched & hatch_mask(grid.size))) & inside
        if lines.any():
            line_tiles = grid.index[lines]
            visible = known[line_tiles]
            mask = lines.copy()
            mask[lines] = visible
            _blend(image, mask, tile_rgb[line_tiles[visible]], 1.0)
    image = _to_uint8(image)
    bright = view["thumbnail"] is not None and float(np.median(view["thumbnail"])) > 127
    return _with_scale_bar(image, grid, view["pixel_size_um"], "black" if bright else "white")


def heatmap(grid: MapGrid, view: dict) -> np.ndarray:
    """Return the map of anomaly scores (0 to 1, inferno) over the grey thumbnail, flagged tiles outlined in cyan."""
    image = _background(view["thumbnail"], grid.size, grey=True)
    tiles = view["tiles"]
    inside = grid.index >= 0
    if not tiles.empty and inside.any():
        scores = float_column(tiles, "anomaly_score")
        if view["placement"] == "cells":
            scores = np.nan_to_num(scores, nan=0.0)  # cells without a score show as 0
        lut = colormaps[HEATMAP_CMAP](np.linspace(0.0, 1.0, 256))[:, :3]
        scored = inside.copy()
        scored[inside] = np.isfinite(scores[grid.index[inside]])
        values = scores[grid.index[scored]]
        _blend(image, scored, lut[np.rint(np.clip(values, 0.0, 1.0) * 255).astype(np.int64)], HEATMAP_ALPHA)
        flagged = bool_column(tiles, "is_anomalous")
        if flagged.any():
            outline = _boundary(grid.index, points(1.2))
            outline[outline] = flagged[grid.index[outline]]
            _blend(image, outline, to_rgb(ANOMALY_OUTLINE), 1.0)
    return _with_scale_bar(_to_uint8(image), grid, view["pixel_size_um"], "white")


def _with_scale_bar(image: np.ndarray, grid: MapGrid, pixel_size_um: float | None, color: str) -> np.ndarray:
    """Draw a scale bar of a round length in micrometres at the bottom left of a map."""
    if not pixel_size_um:
        return image
    rows, cols = grid.shape
    scale_y, scale_x = grid.scale
    length_um = nice_length(cols * pixel_size_um / 5)
    margin = 0.04 * min(rows, cols)
    left = margin * scale_x
    right = (margin + length_um / pixel_size_um) * scale_x
    y = (rows - margin) * scale_y
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    half = points(3) / 2
    draw.rectangle((round(left), round(y - half), round(right) - 1, round(y + half) - 1), fill=color)
    draw.text(((left + right) / 2, y - 0.015 * rows * scale_y), f"{length_um:g} µm", fill=color,
              font=font(LABEL_PT, bold=True), anchor="md")
    return np.asarray(picture)


def _canvas(map_image: np.ndarray, title: str, below_px: int,
            min_width: int = 0) -> tuple[Image.Image, tuple[int, int]]:
    """Put a map under its title on a white canvas with ``below_px`` free rows under it.

    The canvas is at least ``min_width`` pixels wide. Returns the canvas and the
    (left, top) pixel of the map.
    """
    height, width = map_image.shape[:2]
    title_font = font(TITLE_PT)
    title_height = title_font.getbbox(title)[3]
    top = PAD_PX + title_height + points(6)
    canvas_width = max(round(FIGURE_WIDTH_IN * DPI), width + 2 * points(SIDE_IN * 72), min_width)
    canvas = Image.new("RGB", (canvas_width, top + height + below_px + PAD_PX), "white")
    left = (canvas_width - width) // 2
    canvas.paste(Image.fromarray(map_image), (left, top))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((left - 1, top - 1, left + width, top + height), outline="black")
    draw.text((canvas_width / 2, top - points(6)), title, fill="black", font=title_font, anchor="ms")
    return canvas, (left, top)


def legend_entries(stats: dict, colors: dict[str, str], classes: list[str], unit: str) -> list[tuple[str, str | None]]:
    """Return the overlay legend: (label, colour) per class with its count and share, then ("uncertain ...", None)."""
    n_tiles = stats["n_tiles"]
    entries = []
    for name in classes:
        count = stats["counts"].get(name, 0)
        share = f" ({count / n_tiles:.0%})" if n_tiles else ""
        noun = unit if count != 1 else unit[:-1]
        entries.append((f"{name}: {count} {noun}{share}", colors.get(name, "#808080")))
    n_uncertain = sum(stats["uncertain_counts"].values())
    share = f" ({n_uncertain / n_tiles:.0%})" if n_tiles else ""
    entries.append((f"uncertain (hatched): {n_uncertain}{share}", None))
    return entries


def overlay_figure(grid: MapGrid, view: dict, stats: dict, colors: dict[str, str], classes: list[str],
                   unit: str) -> np.ndarray:
    """Return the overlay map with its title and a legend of classes with counts, as RGB pixels."""
    map_image = overlay_map(grid, view, colors, classes)
    entries = legend_entries(stats, colors, classes, unit)
    legend = _legend_image(entries, round(FIGURE_WIDTH_IN * DPI) - 2 * PAD_PX)
    # A legend of very long class names makes the figure wider rather than being cut.
    canvas, (_, top) = _canvas(map_image, OVERLAY_TITLE, points(4) + legend.height, legend.width + 2 * PAD_PX)
    canvas.paste(legend, ((canvas.width - legend.width) // 2, top + map_image.shape[0] + points(4)))
    return np.asarray(canvas)


def _legend_image(entries: list[tuple[str, str | None]], max_width: int) -> Image.Image:
    """Lay out legend entries in two columns (one when they do not fit), filled column by column."""
    text_font = font(LEGEND_PT)
    em = LEGEND_PT * DPI / 72
    swatch_width, swatch_height = round(2.0 * em), round(0.7 * em)
    gap, column_gap, row_pitch = round(0.8 * em), round(2.0 * em), round(1.7 * em)
    entry_widths = [swatch_width + gap + round(text_font.getlength(label)) for label, _ in entries]
    for ncol in (2, 1):
        per_column = math.ceil(len(entries) / ncol)
        columns = [entry_widths[i : i + per_column] for i in range(0, len(entries), per_column)]
        column_widths = [max(widths) for widths in columns]
        width = sum(column_widths) + column_gap * (len(columns) - 1)
        if width <= max_width or ncol == 1:
            break
    image = Image.new("RGB", (width, per_column * row_pitch), "white")
    draw = ImageDraw.Draw(image)
    for position, (label, color) in enumerate(entries):
        column, row = divmod(position, per_column)
        x = sum(column_widths[:column]) + column_gap * column
        y = row * row_pitch + row_pitch // 2
        box = (x, y - swatch_height // 2, x + swatch_width - 1, y + swatch_height - swatch_height // 2 - 1)
        if color is None:
            _hatched_swatch(image, box)
        else:
            rgb = np.asarray(to_rgb(color)) * 255 * 0.8 + 255 * 0.2  # alpha 0.8 over white
            draw.rectangle(box, fill=tuple(int(round(value)) for value in rgb))
        draw.text((x + swatch_width + gap, y), label, fill="black", font=text_font, anchor="lm")
    return image


def _hatched_swatch(image: Image.Image, box: tuple[int, int, int, int]) -> None:
    """Draw the legend swatch of uncertain tiles: black hatching and frame on white."""
    left, top, right, bottom = box
    region = np.asarray(image.crop((left, top, right + 1, bottom + 1))).copy()
    region[hatch_mask(region.shape[:2])] = 0
    image.paste(Image.fromarray(region), (left, top))
    ImageDraw.Draw(image).rectangle(box, outline="black")


def heatmap_figure(grid: MapGrid, view: dict, threshold: float | None) -> np.ndarray:
    """Return the heat map with its title and a 0-1 colour bar with the anomaly threshold marked, as RGB pixels."""
    map_image = heatmap(grid, view)
    bar_gap, bar_height, tick = points(8), points(10), points(3.5)
    tick_font, label_font = font(TICK_PT), font(LABEL_PT)
    below = bar_gap + bar_height + tick + points(3.5) + tick_font.getbbox("0.00")[3] + points(4) + \
        label_font.getbbox(COLORBAR_LABEL)[3]
    canvas, (left, top) = _canvas(map_image, HEATMAP_TITLE, below)
    width = map_image.shape[1]
    bar_top = top + map_image.shape[0] + bar_gap

    lut = colormaps[HEATMAP_CMAP](np.linspace(0.0, 1.0, width))[:, :3]
    row = _to_uint8(lut * 255 * HEATMAP_ALPHA + 255 * (1 - HEATMAP_ALPHA))
    canvas.paste(Image.fromarray(np.repeat(row[None], bar_height, axis=0)), (left, bar_top))
    draw = ImageDraw.Draw(canvas)
    if threshold is not None:
        x = left + threshold * (width - 1)
        half = points(2) / 2
        draw.rectangle((round(x - half), bar_top, round(x + half) - 1, bar_top + bar_height - 1),
                       fill=ANOMALY_OUTLINE)
    draw.rectangle((left - 1, bar_top - 1, left + width, bar_top + bar_height), outline="black")
    tick_bottom = bar_top + bar_height + tick
    for value in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = round(left + value * (width - 1))
        draw.line((x, bar_top + bar_height, x, tick_bottom), fill="black")
        draw.text((x, tick_bottom + points(3.5)), f"{value:.2f}", fill="black", font=tick_font, anchor="mt")
    label_top = tick_bottom + points(3.5) + tick_font.getbbox("0.00")[3] + points(4)
    draw.text((left + width / 2, label_top), COLORBAR_LABEL, fill="black", font=label_font, anchor="mt")
    return np.asarray(canvas)
