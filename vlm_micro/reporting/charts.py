"""The composition chart of a report, drawn with Pillow in the style of the map figures.

One horizontal bar per cell type: the solid part counts confident tiles, the lighter
hatched part uncertain ones, and the total with its share is written after the bar.
Drawing it directly costs a fraction of a matplotlib figure, which matters because
every image of a run gets one.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import to_rgb
from PIL import Image, ImageDraw

from vlm_micro.reporting.maps import DPI, FIGURE_WIDTH_IN, PAD_PX, font, hatch_mask, points

LABEL_PT = 8
TICK_PT = 7
ROW_IN = 0.3  # height of one bar row
BAR_FRACTION = 0.8  # bar height over row height
UNCERTAIN_ALPHA = 0.35  # opacity of the uncertain part of a bar


def tick_step(maximum: float, max_ticks: int = 8) -> float:
    """Return a step of 1, 2, 2.5 or 5 times a power of ten (at least 1) giving at most ``max_ticks`` intervals."""
    raw = max(maximum, 1.0) / max_ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * power
        if step >= raw:
            return max(1.0, step)
    return max(1.0, 10 * power)


def composition_chart(stats: dict, colors: dict[str, str], classes: list[str], unit: str) -> np.ndarray:
    """Return the bar chart of tiles per predicted cell type as RGB pixels.

    ``stats`` is the output of :func:`vlm_micro.reporting.stats.image_stats`.
    """
    label_font, tick_font = font(LABEL_PT), font(TICK_PT)
    counts = np.array([stats["counts"][name] for name in classes], dtype=float)
    uncertain = np.array([stats["uncertain_counts"][name] for name in classes], dtype=float)
    maximum = max(1.0, float(counts.max()) if len(classes) else 1.0)
    x_max = maximum * 1.25

    width = round(FIGURE_WIDTH_IN * DPI)
    tick_len, tick_pad = points(3.5), points(3.5)
    name_width = max((label_font.getlength(name) for name in classes), default=0.0)
    left = PAD_PX + round(name_width) + tick_pad + tick_len
    right = width - PAD_PX - points(0.4 * 72)  # room for the count after the longest bar
    row = ROW_IN * DPI
    top = PAD_PX + points(4)
    plot_height = round(row * max(1, len(classes)))
    axis_y = top + plot_height
    xlabel = f"number of {unit} (hatched part: uncertain)"
    tick_height = tick_font.getbbox("0")[3]
    height = axis_y + tick_len + tick_pad + tick_height + points(4) + label_font.getbbox(xlabel)[3] + PAD_PX

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    scale = (right - left) / x_max

    def x_of(value: float) -> int:
        return round(left + value * scale)

    bar_height = row * BAR_FRACTION
    for position, name in enumerate(classes):
        centre = top + (position + 0.5) * row
        y0, y1 = round(centre - bar_height / 2), round(centre + bar_height / 2) - 1
        rgb = np.asarray(to_rgb(colors.get(name, "#808080"))) * 255
        confident_end = x_of(counts[position] - uncertain[position])
        if confident_end > left:
            draw.rectangle((left, y0, confident_end - 1, y1), fill=tuple(int(v) for v in np.rint(rgb)))
        if uncertain[position] > 0:
            _uncertain_bar(image, (confident_end, y0, x_of(counts[position]) - 1, y1), rgb)
        share = f" ({counts[position] / stats['n_tiles']:.0%})" if stats["n_tiles"] else ""
        draw.text((x_of(counts[position] + maximum * 0.01), centre), f"{int(counts[position])}{share}",
                  fill="black", font=label_font, anchor="lm")
        draw.text((left - tick_len - tick_pad, centre), name, fill="black", font=label_font, anchor="rm")
        draw.line((left - tick_len, round(centre), left, round(centre)), fill="black")

    draw.line((left, top, left, axis_y), fill="black")
    draw.line((left, axis_y, right, axis_y), fill="black")
    step = tick_step(x_max)
    for index in range(int(x_max // step) + 1):
        value = index * step
        x = x_of(value)
        draw.line((x, axis_y, x, axis_y + tick_len), fill="black")
        draw.text((x, axis_y + tick_len + tick_pad), f"{value:g}", fill="black", font=tick_font, anchor="mt")
    draw.text(((left + right) / 2, axis_y + tick_len + tick_pad + tick_height + points(4)), xlabel,
              fill="black", font=label_font, anchor="mt")
    return np.asarray(image)


def _uncertain_bar(image: Image.Image, box: tuple[int, int, int, int], rgb: np.ndarray) -> None:
    """Draw the uncertain part of a bar: the class colour and a black hatching and frame, all at low opacity."""
    left, top, right, bottom = box
    if right < left:
        return
    light = np.rint(rgb * UNCERTAIN_ALPHA + 255 * (1 - UNCERTAIN_ALPHA)).astype(np.uint8)
    dark = np.rint(light * (1 - UNCERTAIN_ALPHA)).astype(np.uint8)  # black at the same opacity over it
    region = np.empty((bottom - top + 1, right - left + 1, 3), dtype=np.uint8)
    region[:] = light
    region[hatch_mask(region.shape[:2])] = dark
    region[[0, -1], :] = dark
    region[:, [0, -1]] = dark
    image.paste(Image.fromarray(region), (left, top))
