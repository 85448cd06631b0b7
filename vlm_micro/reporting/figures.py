"""Figures of the per-image report: label overlay, anomaly heat map, composition chart.

Each ``draw_*`` function draws into a given matplotlib Axes. :mod:`vlm_micro.reporting.panels`
lays them out as figures, which are drawn once and shared by the HTML report and the
one-page PDF. Figures are built with :class:`matplotlib.figure.Figure` directly, never
with pyplot, so no global state or GUI backend is involved.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pandas as pd
from matplotlib.collections import PatchCollection
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Patch, Rectangle

from vlm_micro.reporting.rasters import TileRaster, cell_disks
from vlm_micro.reporting.stats import bool_column, float_column

OVERLAY_ALPHA = 0.45  # opacity of the class colour over confident tiles, low enough to see the tissue
UNCERTAIN_ALPHA = 0.15  # lighter fill under the hatching of uncertain tiles
HEATMAP_CMAP = "inferno"
HEATMAP_ALPHA = 0.7
ANOMALY_OUTLINE = "#00e5ff"


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """Return a ``data:image/png;base64,...`` URI for embedding PNG bytes in HTML."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def display_tile(rgb: np.ndarray, side_px: int = 128) -> np.ndarray:
    """Scale an RGB uint8 tile so its longer side is ``side_px``: nearest neighbour up, Lanczos down."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
    scale = side_px / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    return np.asarray(image.resize(size, resample))


def rgb_png(rgb: np.ndarray, side_px: int = 128) -> bytes:
    """Encode an RGB uint8 tile as PNG, scaled so its longer side is ``side_px``."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(display_tile(rgb, side_px), mode="RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def show_background(ax, thumbnail: np.ndarray | None, shape: tuple[int, int], grey: bool = False) -> None:
    """Show the thumbnail stretched over the level-0 plane, or a grey field without one."""
    rows, cols = shape
    if thumbnail is None:
        ax.imshow(np.full((2, 2), 0.85), cmap="gray", vmin=0, vmax=1, extent=(0, cols, rows, 0))
    elif grey:
        ax.imshow(thumbnail.mean(axis=-1), cmap="gray", vmin=0, vmax=255, extent=(0, cols, rows, 0))
    else:
        ax.imshow(thumbnail, extent=(0, cols, rows, 0), interpolation="antialiased")
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_scale_bar(ax, shape: tuple[int, int], pixel_size_um: float | None, thumbnail: np.ndarray | None) -> None:
    """Draw a scale bar of a round length in micrometres at the bottom left."""
    if not pixel_size_um:
        return
    rows, cols = shape
    length_um = nice_length(cols * pixel_size_um / 5)
    length_px = length_um / pixel_size_um
    bright = thumbnail is not None and float(np.median(thumbnail)) > 127
    color = "black" if bright else "white"
    margin = 0.04 * min(rows, cols)
    y = rows - margin
    ax.plot([margin, margin + length_px], [y, y], color=color, linewidth=3, solid_capstyle="butt")
    ax.text(margin + length_px / 2, y - 0.015 * rows, f"{length_um:g} µm", color=color,
            ha="center", va="bottom", fontsize=8, fontweight="bold")


def nice_length(value: float) -> float:
    """Round ``value`` down to 1, 2 or 5 times a power of ten."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (5, 2, 1):
        if step * power <= value:
            return step * power
    return power


def _tile_patches(tiles: pd.DataFrame, cells: pd.DataFrame | None, placement: str) -> list:
    """Return one matplotlib patch per tile (a rectangle) or per cell (a disk)."""
    if placement == "cells":
        centre_y, centre_x, radius = cell_disks(tiles, cells)
        return [Circle((x, y), r) for y, x, r in zip(centre_y, centre_x, radius)]
    boxes = tiles[["y", "x", "height", "width"]].to_numpy(dtype=float)
    return [Rectangle((x, y), width, height) for y, x, height, width in boxes]


def draw_overlay(ax, view: dict, raster: TileRaster, colors: dict[str, str], classes: list[str]) -> None:
    """Draw the thumbnail with tiles coloured by predicted cell type and uncertain tiles hatched.

    ``view`` contains ``thumbnail``, ``shape`` (level-0 rows, columns), ``tiles`` (first
    plane), ``cells``, ``placement`` and ``pixel_size_um``.
    """
    tiles = view["tiles"]
    show_background(ax, view["thumbnail"], view["shape"])
    if not tiles.empty:
        labels = tiles["cell_type"].astype(str).to_numpy()
        uncertain = bool_column(tiles, "uncertain")
        palette = np.array([to_rgba(colors.get(name, "#808080")) for name in classes] + [(0, 0, 0, 0)])
        class_index = np.array([classes.index(label) if label in classes else len(classes) for label in labels])
        rgba = palette[class_index].copy()
        rgba[:, 3] = np.where(class_index < len(classes), np.where(uncertain, UNCERTAIN_ALPHA, OVERLAY_ALPHA), 0)
        if view["placement"] == "cells":
            patches = _tile_patches(tiles, view["cells"], "cells")
            ax.add_collection(PatchCollection(patches, facecolors=rgba, edgecolors=palette[class_index], linewidths=0.6))
        else:
            ax.imshow(raster.values(rgba, 0.0), extent=raster.extent(), interpolation="nearest")
        _hatch_uncertain(ax, tiles, view, palette[class_index], uncertain)
    ax.set_xlim(0, view["shape"][1])
    ax.set_ylim(view["shape"][0], 0)
    draw_scale_bar(ax, view["shape"], view["pixel_size_um"], view["thumbnail"])


def _hatch_uncertain(ax, tiles, view, edge_colors, uncertain) -> None:
    if not uncertain.any():
        return
    patches = _tile_patches(tiles[uncertain], view["cells"], view["placement"])
    collection = PatchCollection(patches, facecolors="none", edgecolors=edge_colors[uncertain],
                                 linewidths=0.8, hatch="////")
    ax.add_collection(collection)


def overlay_legend_handles(stats: dict, colors: dict[str, str], classes: list[str], unit: str) -> list:
    """Return legend entries: one per class with its count and share, then 'uncertain'."""
    n_tiles = stats["n_tiles"]
    handles = []
    for name in classes:
        count = stats["counts"].get(name, 0)
        share = f" ({count / n_tiles:.0%})" if n_tiles else ""
        noun = unit if count != 1 else unit[:-1]
        handles.append(Patch(facecolor=colors.get(name, "#808080"), alpha=0.8, label=f"{name}: {count} {noun}{share}"))
    n_uncertain = sum(stats["uncertain_counts"].values())
    share = f" ({n_uncertain / n_tiles:.0%})" if n_tiles else ""
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="////",
                         label=f"uncertain (hatched): {n_uncertain}{share}"))
    return handles


def draw_heatmap(ax, view: dict, raster: TileRaster, threshold: float | None):
    """Draw per-tile anomaly scores (0 to 1) over a grey thumbnail and outline flagged tiles.

    Returns the mappable for a colour bar.
    """
    tiles = view["tiles"]
    show_background(ax, view["thumbnail"], view["shape"], grey=True)
    norm = Normalize(vmin=0.0, vmax=1.0)
    scores = float_column(tiles, "anomaly_score")
    if view["placement"] == "cells":
        mappable = PatchCollection(_tile_patches(tiles, view["cells"], "cells"), cmap=HEATMAP_CMAP, norm=norm,
                                   alpha=HEATMAP_ALPHA, linewidths=0)
        mappable.set_array(np.nan_to_num(scores, nan=0.0))
        ax.add_collection(mappable)
    else:
        grid = np.ma.masked_invalid(raster.values(scores, np.nan) if len(scores) else np.full(raster.index.shape, np.nan))
        mappable = ax.imshow(grid, cmap=HEATMAP_CMAP, norm=norm, alpha=HEATMAP_ALPHA, extent=raster.extent(),
                             interpolation="nearest")
    flagged = bool_column(tiles, "is_anomalous")
    if flagged.any():
        patches = _tile_patches(tiles[flagged], view["cells"], view["placement"])
        ax.add_collection(PatchCollection(patches, facecolors="none", edgecolors=ANOMALY_OUTLINE, linewidths=1.2))
    ax.set_xlim(0, view["shape"][1])
    ax.set_ylim(view["shape"][0], 0)
    draw_scale_bar(ax, view["shape"], view["pixel_size_um"], None)
    return mappable


def add_score_colorbar(fig: Figure, cax, mappable, threshold: float | None) -> None:
    """Draw a horizontal 0-1 colour bar into the axes ``cax`` with the anomaly threshold marked."""
    colorbar = fig.colorbar(mappable, cax=cax, orientation="horizontal")
    colorbar.set_ticks([0, 0.25, 0.5, 0.75, 1.0])
    colorbar.set_label("anomaly score (0 = normal, 1 = anomalous)", fontsize=8)
    colorbar.ax.tick_params(labelsize=7)
    if threshold is not None:
        colorbar.ax.axvline(threshold, color=ANOMALY_OUTLINE, linewidth=2)


def draw_composition(ax, stats: dict, colors: dict[str, str], classes: list[str], unit: str) -> None:
    """Draw horizontal bars of tiles per class: solid confident part, hatched uncertain part."""
    n_tiles = stats["n_tiles"]
    positions = np.arange(len(classes))
    confident = np.array([stats["counts"][c] - stats["uncertain_counts"][c] for c in classes], dtype=float)
    uncertain = np.array([stats["uncertain_counts"][c] for c in classes], dtype=float)
    bar_colors = [colors.get(name, "#808080") for name in classes]
    ax.barh(positions, confident, color=bar_colors)
    ax.barh(positions, uncertain, left=confident, color=bar_colors, alpha=0.35, hatch="////",
            edgecolor="black", linewidth=0.3)
    maximum = max(1.0, float((confident + uncertain).max()) if len(classes) else 1.0)
    for position, name in zip(positions, classes):
        count = stats["counts"][name]
        share = f" ({count / n_tiles:.0%})" if n_tiles else ""
        ax.text(count + maximum * 0.01, position, f"{count}{share}", va="center", fontsize=8)
    ax.set_yticks(positions, classes, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, maximum * 1.25)
    ax.set_xlabel(f"number of {unit} (hatched part: uncertain)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
