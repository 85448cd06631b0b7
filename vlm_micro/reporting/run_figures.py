"""Figures of the run index, drawn with Pillow in the style of the report figures.

Composition per image and per condition are stacked horizontal bars of cell-type
shares. The anomaly figure shows the mean anomaly rate of each condition with one
standard deviation, and each image as a dot. Each function returns RGB pixels, or None
when there is nothing to draw.

They are drawn directly rather than with matplotlib for the same reason as the report
figures: the summary is the last job of every run, and on 50 images importing
matplotlib's figure machinery and rendering these three figures took about two thirds
of its time.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from PIL import Image, ImageDraw

from vlm_micro.reporting.charts import tick_step
from vlm_micro.reporting.maps import DPI, PAD_PX, font, points
from vlm_micro.reporting.results import FALLBACK_COLORS

MAX_IMAGES_PLOTTED = 150  # more bars than this would be unreadable on one figure
FIGURE_WIDTH_IN = 6.5
TITLE_PT = 11
LABEL_PT = 8
TICK_PT = 7
LEGEND_PT = 7.5
IMAGE_ROW_IN = 0.25  # height of one image's bar
CONDITION_ROW_IN = 0.35  # height of one condition's bar
BAR_FRACTION = 0.8  # bar height over row height
MAX_LABEL_CHARS = 40  # longer image and condition names are shortened by an ellipsis in the middle
ANOMALY_BAR = "#c0504d"
ANOMALY_BAR_ALPHA = 0.6


def class_colors(classes: list[str], colors: dict[str, str]) -> list[str]:
    return [colors.get(name) or FALLBACK_COLORS[i % 10] for i, name in enumerate(classes)]


def composition_per_image(images: pd.DataFrame, classes: list[str], colors: dict[str, str]) -> np.ndarray | None:
    """Draw one stacked bar of cell-type fractions per processed image, with its uncertain share at the right."""
    ok = images[(images["status"] == "ok") & (pd.to_numeric(images["n_tiles"], errors="coerce") > 0)]
    ok = ok.head(MAX_IMAGES_PLOTTED)
    if ok.empty or not classes:
        return None
    uncertain = pd.to_numeric(ok["uncertain_fraction"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    notes = [f"{value:.0%} uncertain" if np.isfinite(value) else "" for value in uncertain]
    return _stacked_bars("Predicted cell types per image (share of labelled tiles)",
                         [_short(str(value)) for value in ok["image_id"]], _fractions(ok, classes, "frac_{}"),
                         class_colors(classes, colors), classes, IMAGE_ROW_IN, notes)


def composition_per_condition(conditions: pd.DataFrame, classes: list[str], colors: dict[str, str]) -> np.ndarray | None:
    """Draw one stacked bar of mean cell-type fractions per condition, labelled with n."""
    usable = conditions[conditions["n"] > 0]
    if usable.empty or not classes:
        return None
    labels = condition_labels(usable)
    return _stacked_bars("Mean cell-type composition per condition (mean over images)", labels,
                         _fractions(usable, classes, "frac_{}_mean"), class_colors(classes, colors), classes,
                         CONDITION_ROW_IN)


def anomaly_rate_per_condition(images: pd.DataFrame, conditions: pd.DataFrame, groups: pd.Series) -> np.ndarray | None:
    """Draw the mean anomaly rate per condition with its standard deviation and each image as a dot."""
    usable = conditions[conditions["n"] > 0].reset_index(drop=True)
    if usable.empty:
        return None
    means = pd.to_numeric(usable["anomaly_rate_mean"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    stds = np.nan_to_num(pd.to_numeric(usable["anomaly_rate_std"], errors="coerce")
                         .to_numpy(dtype=float, na_value=np.nan), nan=0.0)
    ok = (images["status"] == "ok") & (pd.to_numeric(images["n_tiles"], errors="coerce") > 0)
    rates = [pd.to_numeric(images.loc[ok & (groups == condition), "anomaly_rate"], errors="coerce").dropna()
             .to_numpy(dtype=float) for condition in usable["condition"]]
    finite = np.concatenate([means + stds, *rates, [0.05]])
    upper = min(1.0, float(np.nanmax(finite)) * 1.15)
    labels = condition_labels(usable)

    canvas = _Canvas("Anomaly rate per condition", labels, CONDITION_ROW_IN, "",
                     "anomaly rate (share of tiles scored anomalous)")
    draw = canvas.draw
    bar_rgb = _blend_white(ANOMALY_BAR, ANOMALY_BAR_ALPHA)
    cap, dot = points(3), points(2)
    for position, (mean, std, values) in enumerate(zip(means, stds, rates)):
        y0, y1, centre = canvas.bar_rows(position)
        if np.isfinite(mean):
            end = canvas.x_of(min(mean, upper) / upper)
            if end > canvas.left:
                draw.rectangle((canvas.left, y0, end - 1, y1), fill=bar_rgb)
            low, high = canvas.x_of(max(mean - std, 0) / upper), canvas.x_of(min(mean + std, upper) / upper)
            if std > 0:
                draw.line((low, centre, high, centre), fill="black", width=1)
                for x in (low, high):
                    draw.line((x, centre - cap, x, centre + cap), fill="black", width=1)
        jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(len(values))
        for value, shift in zip(values, jitter):
            x, y = canvas.x_of(min(value, upper) / upper), centre + shift * canvas.row
            draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill="black")
    step = tick_step(upper * 100, max_ticks=6) / 100
    canvas.x_axis([index * step / upper for index in range(int(upper / step + 1e-9) + 1)],
                  [f"{index * step * 100:g} %" for index in range(int(upper / step + 1e-9) + 1)])
    canvas.legend([("mean ± standard deviation", "bar", bar_rgb), ("one image", "dot", (0, 0, 0))])
    return canvas.pixels()


def condition_labels(conditions: pd.DataFrame) -> list[str]:
    """Return "condition (n = N)" per row, the condition shortened so that n always shows."""
    return [f"{_short(str(condition))} (n = {n})" for condition, n in zip(conditions["condition"], conditions["n"])]


def _fractions(table: pd.DataFrame, classes: list[str], pattern: str) -> np.ndarray:
    """Return a rows x classes array of the ``pattern`` columns, with 0 where a value or column is missing."""
    columns = []
    for name in classes:
        column = pattern.format(name)
        values = pd.to_numeric(table[column], errors="coerce") if column in table else pd.Series(0.0, index=table.index)
        columns.append(values.fillna(0).clip(lower=0).to_numpy(dtype=float))
    return np.stack(columns, axis=1)


def _stacked_bars(title: str, labels: list[str], fractions: np.ndarray, bar_colors: list[str], classes: list[str],
                  row_in: float, notes: list[str] | None = None) -> np.ndarray:
    canvas = _Canvas(title, labels, row_in, max(notes or [""], key=len), "")
    draw = canvas.draw
    rgb = [_blend_white(color, 1.0) for color in bar_colors]
    label_font = font(LABEL_PT)
    for position, row in enumerate(fractions):
        y0, y1, centre = canvas.bar_rows(position)
        # Bars end at 100 % even where rounded fractions sum a little above it.
        edges = np.minimum(np.concatenate([[0.0], np.cumsum(row)]), 1.0)
        for index in range(len(classes)):
            start, end = canvas.x_of(edges[index]), canvas.x_of(edges[index + 1])
            if end > start:
                draw.rectangle((start, y0, end - 1, y1), fill=rgb[index])
                if start > canvas.left:
                    draw.line((start, y0, start, y1), fill="white")  # a thin gap between two types
        if notes and notes[position]:
            draw.text((canvas.right + points(4), centre), notes[position], fill="#555555", font=label_font,
                      anchor="lm")
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    canvas.x_axis(ticks, [f"{value:.0%}".replace("%", " %") for value in ticks])
    canvas.legend([(name, "bar", rgb[index]) for index, name in enumerate(classes)])
    return canvas.pixels()


class _Canvas:
    """A figure with a title, one labelled row per bar, an x axis from 0 to 1 and a legend under it.

    The left margin fits the longest row label and the right margin ``right_text``, so
    long names make the plot narrower instead of being cut.
    """

    def __init__(self, title: str, labels: list[str], row_in: float, right_text: str, xlabel: str):
        self.labels, self.xlabel = labels, xlabel
        self.title_font, self.label_font = font(TITLE_PT), font(LABEL_PT)
        self.tick_font, self.legend_font = font(TICK_PT), font(LEGEND_PT)
        self.width = round(FIGURE_WIDTH_IN * DPI)
        self.tick_len, self.tick_pad = points(3.5), points(3.5)
        name_width = max((self.label_font.getlength(label) for label in labels), default=0.0)
        self.left = PAD_PX + round(name_width) + self.tick_pad + self.tick_len
        right_width = round(self.label_font.getlength(right_text)) + points(4) if right_text else points(12)
        self.right = max(self.left + points(72), self.width - PAD_PX - right_width)
        self.width = max(self.width, self.right + right_width + PAD_PX)
        self.row = row_in * DPI
        self.top = PAD_PX + self.title_font.getbbox(title)[3] + points(8)
        self.axis_y = self.top + round(self.row * len(labels))
        self.title = title
        self.legend_entries: list[tuple[str, str, tuple[int, int, int]]] = []
        self.ticks: list[tuple[float, str]] = []
        # The image is made once the legend is known; until then bars go on a tall enough sheet.
        self.image = Image.new("RGB", (self.width, self.axis_y + 1), "white")
        self.draw = ImageDraw.Draw(self.image)

    def x_of(self, value: float) -> int:
        """Pixel column of an axis value between 0 and 1."""
        return round(self.left + value * (self.right - self.left))

    def bar_rows(self, position: int) -> tuple[int, int, float]:
        """Return the first and last pixel row of bar ``position`` and its centre."""
        centre = self.top + (position + 0.5) * self.row
        half = self.row * BAR_FRACTION / 2
        return round(centre - half), round(centre + half) - 1, centre

    def x_axis(self, values: list[float], texts: list[str]) -> None:
        self.ticks = list(zip(values, texts))

    def legend(self, entries: list[tuple[str, str, tuple[int, int, int]]]) -> None:
        self.legend_entries = entries

    def pixels(self) -> np.ndarray:
        """Add the labels, axes and legend below the bars and return the figure as RGB pixels."""
        em = LEGEND_PT * DPI / 72
        swatch, gap, column_gap, row_pitch = round(1.6 * em), round(0.6 * em), round(1.6 * em), round(1.7 * em)
        widths = [swatch + gap + round(self.legend_font.getlength(text)) for text, _, _ in self.legend_entries]
        lines = _flow(widths, column_gap, self.width - 2 * PAD_PX)

        tick_height = self.tick_font.getbbox("0 %")[3]
        below = self.tick_len + self.tick_pad + tick_height + points(4)
        if self.xlabel:
            below += self.label_font.getbbox(self.xlabel)[3] + points(4)
        legend_top = self.axis_y + below + points(4)
        height = legend_top + len(lines) * row_pitch + PAD_PX
        image = Image.new("RGB", (self.width, height), "white")
        image.paste(self.image, (0, 0))
        draw = ImageDraw.Draw(image)

        draw.text((self.width / 2, PAD_PX), self.title, fill="black", font=self.title_font, anchor="mt")
        for position, label in enumerate(self.labels):
            centre = self.top + (position + 0.5) * self.row
            draw.text((self.left - self.tick_len - self.tick_pad, centre), label, fill="black", font=self.label_font,
                      anchor="rm")
            draw.line((self.left - self.tick_len, round(centre), self.left, round(centre)), fill="black")

        draw.line((self.left, self.top, self.left, self.axis_y), fill="black")
        draw.line((self.left, self.axis_y, self.right, self.axis_y), fill="black")
        for value, text in self.ticks:
            x = self.x_of(value)
            draw.line((x, self.axis_y, x, self.axis_y + self.tick_len), fill="black")
            draw.text((x, self.axis_y + self.tick_len + self.tick_pad), text, fill="black", font=self.tick_font,
                      anchor="mt")
        if self.xlabel:
            draw.text(((self.left + self.right) / 2, self.axis_y + self.tick_len + self.tick_pad + tick_height
                       + points(4)), self.xlabel, fill="black", font=self.label_font, anchor="mt")

        for line_number, line in enumerate(lines):
            y = legend_top + line_number * row_pitch + row_pitch // 2
            x = (self.width - (sum(widths[i] for i in line) + column_gap * (len(line) - 1))) // 2
            for index in line:
                text, kind, rgb = self.legend_entries[index]
                if kind == "dot":
                    radius = points(2)
                    draw.ellipse((x + swatch // 2 - radius, y - radius, x + swatch // 2 + radius, y + radius), fill=rgb)
                else:
                    draw.rectangle((x, y - round(0.35 * em), x + swatch - 1, y + round(0.35 * em) - 1), fill=rgb)
                draw.text((x + swatch + gap, y), text, fill="black", font=self.legend_font, anchor="lm")
                x += widths[index] + column_gap
        return np.asarray(image)


def _flow(widths: list[int], gap: int, max_width: int) -> list[list[int]]:
    """Split entries of the given widths into lines no wider than ``max_width`` (at least one entry per line)."""
    lines: list[list[int]] = []
    used = 0
    for index, width in enumerate(widths):
        if lines and used + gap + width <= max_width:
            lines[-1].append(index)
            used += gap + width
        else:
            lines.append([index])
            used = width
    return lines


def _blend_white(color: str, alpha: float) -> tuple[int, int, int]:
    """Return ``color`` at opacity ``alpha`` over white as 0-255 RGB."""
    rgb = np.asarray(to_rgb(color)) * 255 * alpha + 255 * (1 - alpha)
    return tuple(int(round(value)) for value in rgb)


def _short(label: str, length: int = MAX_LABEL_CHARS) -> str:
    """Shorten ``label`` to ``length`` characters by an ellipsis in the middle.

    Names of one experiment often share a long start and differ only at the end
    (``..._field_0001``, ``..._field_0002``), so both ends stay.
    """
    if len(label) <= length:
        return label
    tail = (length - 1) // 2
    return label[: length - 1 - tail] + "…" + label[len(label) - tail :]
