"""Figures of the run index: composition per image and per condition, anomaly rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from vlm_micro.reporting.results import FALLBACK_COLORS

MAX_IMAGES_PLOTTED = 150  # more bars than this would be unreadable on one figure


def class_colors(classes: list[str], colors: dict[str, str]) -> list[str]:
    return [colors.get(name) or FALLBACK_COLORS[i % 10] for i, name in enumerate(classes)]


def composition_per_image(images: pd.DataFrame, classes: list[str], colors: dict[str, str]) -> Figure | None:
    """Draw one stacked horizontal bar of cell-type fractions per processed image."""
    ok = images[(images["status"] == "ok") & (pd.to_numeric(images["n_tiles"], errors="coerce") > 0)]
    ok = ok.head(MAX_IMAGES_PLOTTED)
    if ok.empty or not classes:
        return None
    fig = Figure(figsize=(7.0, 1.6 + 0.32 * len(ok)))
    ax = fig.add_subplot()
    _stacked_bars(ax, [str(v) for v in ok["image_id"]], ok, classes, colors, "frac_{}")
    uncertain = pd.to_numeric(ok["uncertain_fraction"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    for position, value in enumerate(uncertain):
        if np.isfinite(value):
            ax.text(1.01, position, f"{value:.0%} uncertain", va="center", fontsize=8, color="#555555",
                    transform=ax.get_yaxis_transform())
    ax.set_title("Predicted cell types per image (share of labelled tiles)", fontsize=11)
    return fig


def composition_per_condition(conditions: pd.DataFrame, classes: list[str], colors: dict[str, str]) -> Figure | None:
    """Draw one stacked bar of mean cell-type fractions per condition, labelled with n."""
    usable = conditions[conditions["n"] > 0]
    if usable.empty or not classes:
        return None
    fig = Figure(figsize=(7.0, 1.6 + 0.45 * len(usable)))
    ax = fig.add_subplot()
    labels = [f"{condition} (n = {n})" for condition, n in zip(usable["condition"], usable["n"])]
    _stacked_bars(ax, labels, usable, classes, colors, "frac_{}_mean")
    ax.set_title("Mean cell-type composition per condition (mean over images)", fontsize=11)
    return fig


def _stacked_bars(ax, labels: list[str], table: pd.DataFrame, classes: list[str], colors: dict[str, str],
                  pattern: str) -> None:
    positions = np.arange(len(labels))
    left = np.zeros(len(labels))
    for name, color in zip(classes, class_colors(classes, colors)):
        column = pattern.format(name)
        values = pd.to_numeric(table[column], errors="coerce").fillna(0).to_numpy(dtype=float) if column in table \
            else np.zeros(len(labels))
        ax.barh(positions, values, left=left, color=color, label=name, edgecolor="white", linewidth=0.4)
        left += values
    ax.set_yticks(positions, [_short(label) for label in labels], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0 %", "25 %", "50 %", "75 %", "100 %"], fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(len(classes), 4), fontsize=8.5,
              frameon=False)


def _short(label: str, length: int = 40) -> str:
    label = label.replace("$", r"\$")
    return label if len(label) <= length else label[: length - 1] + "…"


def anomaly_rate_per_condition(images: pd.DataFrame, conditions: pd.DataFrame, groups: pd.Series) -> Figure | None:
    """Draw the mean anomaly rate per condition with its standard deviation and each image as a dot."""
    usable = conditions[conditions["n"] > 0].reset_index(drop=True)
    if usable.empty:
        return None
    fig = Figure(figsize=(7.0, 1.6 + 0.45 * len(usable)))
    ax = fig.add_subplot()
    means = usable["anomaly_rate_mean"].to_numpy(dtype=float)
    stds = np.nan_to_num(usable["anomaly_rate_std"].to_numpy(dtype=float), nan=0.0)
    positions = np.arange(len(usable))
    ax.barh(positions, means, xerr=stds, color="#c0504d", alpha=0.6, capsize=3, label="mean ± standard deviation")
    ok = (images["status"] == "ok") & (pd.to_numeric(images["n_tiles"], errors="coerce") > 0)
    upper = float(np.nanmax(np.concatenate([means + stds, [0.05]])))
    for position, condition in enumerate(usable["condition"]):
        rates = pd.to_numeric(images.loc[ok & (groups == condition), "anomaly_rate"], errors="coerce").dropna()
        jitter = np.linspace(-0.15, 0.15, len(rates)) if len(rates) > 1 else np.zeros(len(rates))
        ax.scatter(rates, position + jitter, s=12, color="black", zorder=3,
                   label="one image" if position == 0 else None)
        upper = max(upper, float(rates.max()) if len(rates) else 0.0)
    labels = [_short(f"{c} (n = {n})") for c, n in zip(usable["condition"], usable["n"])]
    ax.set_yticks(positions, labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, min(1.0, upper * 1.15))
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_xlabel("anomaly rate (share of tiles scored anomalous)", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8.5, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    ax.set_title("Anomaly rate per condition", fontsize=11)
    return fig
