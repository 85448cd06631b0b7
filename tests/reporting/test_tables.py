"""Run-level tables: columns match docs/outputs.md, values match the tile tables."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from fabricate import CLASSES, FAILED_ERROR, KINDS, MARKUP_ID, REPO

DOCS = REPO / "docs" / "outputs.md"


def documented_columns(table_name: str) -> list[str]:
    """Return the column names listed under the ``### `table_name` `` heading of docs/outputs.md."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(rf"^### `{re.escape(table_name)}`\n(.*?)(?=^### |\Z)", text, flags=re.M | re.S)
    assert match, f"docs/outputs.md has no section for {table_name}"
    return re.findall(r"^\| `([^`]+)` \|", match.group(1), flags=re.M)


def expand(columns: list[str], metadata: list[str] = ()) -> list[str]:
    """Replace the <class>, <kind> and <sample sheet column> placeholders by real names.

    Consecutive rows that differ only after the placeholder alternate name by name, as
    conditions.tsv orders them: ``frac_<class>_mean`` and ``frac_<class>_std`` give
    ``frac_a_mean, frac_a_std, frac_b_mean, ...``. Other rows expand one after the other.
    """
    out = []
    index = 0
    while index < len(columns):
        column = columns[index]
        if column == "<sample sheet column>":
            out += list(metadata)
            index += 1
            continue
        placeholder = next((p for p in ("<class>", "<kind>") if p in column), None)
        if placeholder is None:
            out.append(column)
            index += 1
            continue
        group = [column]
        while index + len(group) < len(columns) and placeholder in columns[index + len(group)]:
            group.append(columns[index + len(group)])
        names = CLASSES if placeholder == "<class>" else KINDS
        prefixes = {g.split(placeholder)[0] for g in group}
        if len(group) > 1 and len(prefixes) == 1:
            out += [g.replace(placeholder, name) for name in names for g in group]
        else:
            out += [g.replace(placeholder, name) for g in group for name in names]
        index += len(group)
    return out


def read_tsv(path):
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""], dtype={"image_id": str})


def test_images_tsv_columns_documented(reported_run):
    out, _, _, _ = reported_run
    images = read_tsv(out / "images.tsv")
    expected = expand(documented_columns("images.tsv"), metadata=["condition", "replicate"])
    assert list(images.columns) == expected


def test_conditions_tsv_columns_documented(reported_run):
    out, _, _, _ = reported_run
    conditions = read_tsv(out / "conditions.tsv")
    assert list(conditions.columns) == expand(documented_columns("conditions.tsv"))


def test_tiles_parquet_columns_documented(reported_run):
    out, _, _, _ = reported_run
    tiles = pd.read_parquet(out / "tables" / "tiles.parquet")
    assert list(tiles.columns) == expand(documented_columns("tables/tiles.parquet"))


def test_cells_parquet_columns_documented(reported_run):
    out, _, _, _ = reported_run
    cells = pd.read_parquet(out / "tables" / "cells.parquet")
    assert list(cells.columns) == expand(documented_columns("tables/cells.parquet"))


def test_tiles_csv_without_embedding(reported_run):
    out, _, _, run_paths = reported_run
    csv = pd.read_csv(run_paths["tiles_csv"])
    documented = expand(documented_columns("tables/tiles.parquet"))
    assert list(csv.columns) == [name for name in documented if name != "embedding"]
    assert len(csv) == len(pd.read_parquet(out / "tables" / "tiles.parquet"))


def test_images_tsv_one_row_per_image(reported_run):
    out, statuses, _, _ = reported_run
    images = read_tsv(out / "images.tsv").set_index("image_id")
    assert sorted(images.index) == sorted(statuses)
    assert images.loc["broken", "status"] == "failed"
    assert images.loc["broken", "error"] == FAILED_ERROR
    assert pd.isna(images.loc["broken", "n_tiles"])
    assert (images.drop(index="broken")["status"] == "ok").all()
    assert images.drop(index="broken")["error"].isna().all()


def test_images_tsv_counts_match_tiles(reported_run):
    out, _, _, _ = reported_run
    images = read_tsv(out / "images.tsv").set_index("image_id")
    for image_id in ("tissue_a", "tissue_b", "cells_c", MARKUP_ID):
        tiles = pd.read_parquet(out / "tables" / "tiles" / f"{image_id}.parquet")
        row = images.loc[image_id]
        assert row["n_tiles"] == len(tiles)
        for name in CLASSES:
            assert row[f"count_{name}"] == (tiles["cell_type"] == name).sum()
            assert row[f"frac_{name}"] == pytest.approx((tiles["cell_type"] == name).mean(), abs=1e-5)
        assert row["uncertain_fraction"] == pytest.approx(tiles["uncertain"].mean(), abs=1e-5)
        assert row["anomaly_rate"] == pytest.approx(tiles["is_anomalous"].mean(), abs=1e-5)
        assert row["mean_anomaly_score"] == pytest.approx(tiles["anomaly_score"].mean(), abs=1e-5)
        assert sum(row[f"anomalous_{kind}"] for kind in KINDS) == tiles["is_anomalous"].sum()


def test_images_tsv_metadata_and_calibration(reported_run):
    out, _, _, _ = reported_run
    images = read_tsv(out / "images.tsv").set_index("image_id")
    assert images.loc["tissue_a", "condition"] == "control"
    assert images.loc["tissue_a", "pixel_size_um"] == 0.5
    assert images.loc["tissue_a", "width"] == 320
    assert images.loc["tissue_a", "height"] == 256
    assert not images.loc["tissue_a", "uncalibrated"]
    assert images.loc["tissue_b", "uncalibrated"]
    assert pd.isna(images.loc["tissue_b", "pixel_size_um"])
    assert images.loc["cells_c", "n_cells"] == 24
    assert pd.isna(images.loc["tissue_a", "n_cells"])


def test_conditions_tsv_statistics(reported_run):
    out, _, _, _ = reported_run
    images = read_tsv(out / "images.tsv")
    conditions = read_tsv(out / "conditions.tsv").set_index("condition")
    assert sorted(conditions.index) == ["control", "treated"]
    assert conditions.loc["control", "n_images"] == 3
    assert conditions.loc["control", "n_failed"] == 1
    assert conditions.loc["control", "n"] == 2
    treated = images[images["condition"] == "treated"]
    for metric in [f"frac_{name}" for name in CLASSES] + ["uncertain_fraction", "anomaly_rate"]:
        assert conditions.loc["treated", f"{metric}_mean"] == pytest.approx(treated[metric].mean(), abs=1e-5)
        assert conditions.loc["treated", f"{metric}_std"] == pytest.approx(treated[metric].std(ddof=1), abs=1e-5)


def test_conditions_without_condition_column_one_group():
    from vlm_micro.reporting.summary import build_conditions_table

    images = pd.DataFrame({"image_id": ["a", "b", "c"], "status": ["ok", "ok", "failed"],
                           "n_tiles": [4, 2, pd.NA], "frac_x": [0.25, 0.5, np.nan],
                           "uncertain_fraction": [0.0, 0.5, np.nan], "anomaly_rate": [0.0, 1.0, np.nan],
                           "mean_anomaly_score": [0.1, 0.9, np.nan]})
    conditions = build_conditions_table(images)
    assert list(conditions["condition"]) == ["all"]
    row = conditions.iloc[0]
    assert row["n_images"] == 3
    assert row["n_failed"] == 1
    assert row["n"] == 2
    assert row["frac_x_mean"] == pytest.approx(0.375)
    assert row["frac_x_std"] == pytest.approx(np.std([0.25, 0.5], ddof=1))


def test_conditions_single_image_has_no_std():
    from vlm_micro.reporting.summary import build_conditions_table

    images = pd.DataFrame({"image_id": ["a"], "status": ["ok"], "condition": ["x"], "n_tiles": [3],
                           "frac_x": [1.0], "uncertain_fraction": [0.0], "anomaly_rate": [0.0],
                           "mean_anomaly_score": [0.2]})
    row = build_conditions_table(images).iloc[0]
    assert row["n"] == 1
    assert math.isnan(row["frac_x_std"])


def test_metadata_column_clash_renamed(tmp_path):
    import fabricate
    from vlm_micro.reporting.summary import build_images_table, load_results

    out = tmp_path / "results"
    fabricate.write_image(out, "a", metadata={"status": "sheet value", "n_tiles": "7", "condition": "x"})
    images = build_images_table(load_results(out, ["a"]))
    assert images.loc[0, "status"] == "ok"
    assert images.loc[0, "meta_status"] == "sheet value"
    assert images.loc[0, "meta_n_tiles"] == "7"
    assert images.loc[0, "condition"] == "x"


def test_metadata_columns_keep_sheet_order(tmp_path):
    import json

    import fabricate
    from vlm_micro.reporting.summary import build_images_table, load_results

    out = tmp_path / "results"
    sheet_order = ["zeta", "condition", "alpha"]
    fabricate.write_image(out, "a", metadata={"zeta": "z1", "condition": "c1", "alpha": "a1"})
    fabricate.write_image(out, "b", seed=1, metadata={"alpha": "a2"})  # zeta and condition empty in the sheet
    for image_id in ("a", "b"):
        path = out / "status" / f"{image_id}.json"
        status = json.loads(path.read_text(encoding="utf-8"))
        status["metadata_columns"] = sheet_order
        # Sorted keys, as the pipeline writes status files.
        path.write_text(json.dumps(status, indent=2, sort_keys=True), encoding="utf-8")
    images = build_images_table(load_results(out, ["b", "a"]))
    assert list(images.columns[4:7]) == sheet_order
    assert images.loc[0, "zeta"] == ""
    assert images.loc[0, "alpha"] == "a2"
    assert images.loc[1, "zeta"] == "z1"


def test_metadata_order_without_column_list(tmp_path):
    import fabricate
    from vlm_micro.reporting.summary import build_images_table, load_results

    out = tmp_path / "results"
    fabricate.write_image(out, "a", metadata={"replicate": "1", "condition": "c1"})
    images = build_images_table(load_results(out, ["a"]))
    assert list(images.columns[4:6]) == ["replicate", "condition"]


def test_unreadable_status_listed_as_failed(tmp_path):
    import fabricate
    from vlm_micro.reporting import write_run_summary

    out = tmp_path / "results"
    fabricate.write_image(out, "good")
    (out / "status" / "bad.json").write_text("{not json", encoding="utf-8")
    write_run_summary(out, {})
    images = read_tsv(out / "images.tsv").set_index("image_id")
    assert images.loc["bad", "status"] == "failed"
    assert "cannot read status file" in images.loc["bad", "error"]
    assert images.loc["good", "status"] == "ok"


def test_tsv_cells_have_no_tabs_or_newlines(tmp_path):
    import fabricate
    from vlm_micro.reporting import write_run_summary

    out = tmp_path / "results"
    fabricate.write_failed(out, "x", "line one\tstill one\nline two")
    write_run_summary(out, {})
    lines = (out / "images.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert read_tsv(out / "images.tsv").loc[0, "error"] == "line one still one line two"
