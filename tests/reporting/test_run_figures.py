"""The figures of the run index, checked on their pixels, and its failure note."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vlm_micro.reporting import run_figures

CLASSES = ["lymphocyte", "tumor"]
COLORS = {"lymphocyte": "#1f77b4", "tumor": "#d62728"}
BLUE, RED = (0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28)


def _images(rows: list[dict]) -> pd.DataFrame:
    base = {"status": "ok", "n_tiles": 10, "uncertain_fraction": 0.1, "anomaly_rate": 0.2}
    return pd.DataFrame([{**base, **row} for row in rows])


def _colour_columns(rgb: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Return the columns where some pixel has exactly ``colour``."""
    return np.flatnonzero(np.all(rgb == colour, axis=2).any(axis=0))


def _colour_rows(rgb: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.flatnonzero(np.all(rgb == colour, axis=2).any(axis=1))


def test_composition_bar_lengths_follow_the_fractions():
    images = _images([{"image_id": "a", "frac_lymphocyte": 0.25, "frac_tumor": 0.75}])
    rgb = run_figures.composition_per_image(images, CLASSES, COLORS)
    assert rgb.dtype == np.uint8
    assert rgb.shape[2] == 3
    blue, red = _colour_columns(rgb, BLUE), _colour_columns(rgb, RED)
    # The legend swatches are the same colours; keep the bar's rows only.
    bar_rows = _colour_rows(rgb[:, blue.min() + 40 : blue.min() + 60], BLUE)
    bar = rgb[bar_rows.min() : bar_rows.max() + 1]
    blue, red = _colour_columns(bar, BLUE), _colour_columns(bar, RED)
    assert blue.max() < red.min()
    assert (red.max() - red.min() + 2) / (blue.max() - blue.min() + 1) == pytest.approx(3.0, rel=0.05)


def test_composition_bars_in_table_order():
    images = _images([
        {"image_id": "first", "frac_lymphocyte": 1.0, "frac_tumor": 0.0},
        {"image_id": "failed", "status": "failed", "n_tiles": None},
        {"image_id": "second", "frac_lymphocyte": 0.0, "frac_tumor": 1.0},
        {"image_id": "empty", "n_tiles": 0},
    ])
    rgb = run_figures.composition_per_image(images, CLASSES, COLORS)
    left = _colour_columns(rgb, BLUE).min() + 5  # inside the bars, right of the legend swatch
    column = rgb[:, left]
    blue_rows = np.flatnonzero(np.all(column == BLUE, axis=1))
    red_rows = np.flatnonzero(np.all(column == RED, axis=1))
    assert blue_rows.size and red_rows.size
    assert blue_rows.max() < red_rows.min()  # the first image's bar is on top


def test_composition_without_processed_images_draws_nothing():
    images = _images([{"image_id": "x", "status": "failed", "n_tiles": None}])
    assert run_figures.composition_per_image(images, CLASSES, COLORS) is None
    assert run_figures.composition_per_image(_images([{"image_id": "y"}]), [], COLORS) is None


def test_composition_caps_the_number_of_bars():
    many = _images([{"image_id": f"img_{i:04d}", "frac_lymphocyte": 1.0} for i in range(400)])
    few = _images([{"image_id": f"img_{i:04d}", "frac_lymphocyte": 1.0} for i in range(run_figures.MAX_IMAGES_PLOTTED)])
    assert run_figures.composition_per_image(many, CLASSES, COLORS).shape == \
        run_figures.composition_per_image(few, CLASSES, COLORS).shape


def test_long_names_keep_figure_width():
    short = run_figures.composition_per_image(_images([{"image_id": "a", "frac_tumor": 1.0}]), CLASSES, COLORS)
    long_name = "x" * 300
    wide = run_figures.composition_per_image(_images([{"image_id": long_name, "frac_tumor": 1.0}]), CLASSES, COLORS)
    assert wide.shape[1] == short.shape[1]
    assert _colour_columns(wide, RED).max() == _colour_columns(short, RED).max()
    assert _colour_columns(wide[: wide.shape[0] // 2], RED).min() > _colour_columns(short[: short.shape[0] // 2], RED).min()


def test_missing_class_columns_and_values_count_as_zero():
    images = _images([{"image_id": "a", "frac_lymphocyte": float("nan")}])
    rgb = run_figures.composition_per_image(images, CLASSES, COLORS)
    assert rgb is not None  # no tumor column, NaN lymphocyte: an empty bar, not an error


def test_anomaly_bars_and_dots():
    images = _images([
        {"image_id": "a", "condition": "control", "anomaly_rate": 0.10},
        {"image_id": "b", "condition": "control", "anomaly_rate": 0.30},
        {"image_id": "c", "condition": "treated", "anomaly_rate": 0.60},
    ])
    conditions = pd.DataFrame({"condition": ["control", "treated"], "n": [2, 1],
                               "anomaly_rate_mean": [0.2, 0.6], "anomaly_rate_std": [0.1414, np.nan]})
    rgb = run_figures.anomaly_rate_per_condition(images, conditions, images["condition"])
    bar = run_figures._blend_white(run_figures.ANOMALY_BAR, run_figures.ANOMALY_BAR_ALPHA)
    # The legend swatch has the bar colour too; the bars are the rows of that colour at the axis.
    axis_column = _colour_columns(rgb, bar).min()
    rows = np.flatnonzero(np.all(rgb[:, axis_column] == bar, axis=1))
    starts = rows[np.flatnonzero(np.diff(rows, prepend=-10) > 1)]
    assert len(starts) == 2
    # The first row of each bar, above the error bar and the dots at its centre.
    control, treated = (_colour_columns(rgb[start : start + 1], bar) for start in starts)
    assert (treated.max() - axis_column) / (control.max() - axis_column) == pytest.approx(3.0, rel=0.03)
    assert _colour_columns(rgb[starts[0] : rows.max() + 1], (0, 0, 0)).max() > treated.max() - 5  # the 0.6 dot


def test_anomaly_figure_without_usable_conditions_draws_nothing():
    images = _images([{"image_id": "a", "condition": "c"}])
    conditions = pd.DataFrame({"condition": ["c"], "n": [0], "anomaly_rate_mean": [np.nan],
                               "anomaly_rate_std": [np.nan]})
    assert run_figures.anomaly_rate_per_condition(images, conditions, images["condition"]) is None


def test_condition_labels_keep_n():
    conditions = pd.DataFrame({"condition": ["c" * 80, "control"], "n": [3, 12]})
    long_label, short_label = run_figures.condition_labels(conditions)
    assert long_label == "c" * 20 + "…" + "c" * 19 + " (n = 3)"
    assert short_label == "control (n = 12)"


def test_short_labels_keep_both_ends():
    first = run_figures._short("experiment_2024_11_plate_01_treated_replicate_field_0001")
    second = run_figures._short("experiment_2024_11_plate_01_treated_replicate_field_0002")
    assert len(first) == run_figures.MAX_LABEL_CHARS
    assert first.startswith("experiment_2024")
    assert first.endswith("field_0001")
    assert first != second


def test_index_failure_note_when_all_failed():
    from vlm_micro.reporting.index_page import _failures

    failed = pd.DataFrame({"image_id": ["a", "b"], "status": ["failed", "failed"], "error": ["bad", None]})
    some = pd.DataFrame({"image_id": ["a", "b"], "status": ["failed", "ok"], "error": ["bad", None]})
    assert "no image was labelled" in _failures(failed)
    assert "other images are complete" not in _failures(failed)
    assert "the other images are complete" in _failures(some)
