"""Annotation sources for fine-tuning and evaluation, read into one standard table.

Three sources are accepted:

- a table (CSV, TSV or parquet) with an image path, an optional tile region and a cell
  type and/or anomaly label, such as the ``annotations.csv`` that ``vlm-micro synth``
  writes;
- a folder per class: ``DIR/<label>/<image files>``, where ``<label>`` is a cell type,
  an anomaly kind or ``normal``, and each file is one whole-image tile;
- the per-tile table of an earlier run (it has ``tile_id`` and prediction columns) with
  corrected label columns ``cell_type_corrected`` and/or ``anomaly_kind_corrected``,
  filled in a spreadsheet.

The standard table has one row per tile and the columns of :data:`COLUMNS`. Regions are
level-0 pixels; a missing region (``<NA>``) means the whole image. ``series`` and
``frame`` pick the plane of a multi-series or time-lapse file, as a run's tile table
records them. ``<NA>`` there means the first plane that the reader settings select.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from vlm_micro.errors import AnnotationError
from vlm_micro.labeling.vocabulary import Vocabulary

log = logging.getLogger(__name__)

COLUMNS = ("image_path", "image_id", "y", "x", "height", "width", "cell_type", "anomaly", "anomaly_kind", "modality",
           "series", "frame")
REGION_COLUMNS = ("y", "x", "height", "width")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".svs", ".bmp")
NORMAL_LABELS = ("normal", "none")  # anomaly labels that mean "no anomaly"
SKIP_LABELS = ("skip", "exclude")  # corrected labels that drop the row
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet")


def load_annotations(source: str | Path, vocabulary: Vocabulary, include_uncorrected: bool = False) -> pd.DataFrame:
    """Read annotations from a table file or a folder into the standard table.

    Parameters
    ----------
    source : path
        A CSV, TSV or parquet file; a folder with ``annotations.csv``; or a folder with
        one subfolder per label.
    vocabulary : Vocabulary
        Cell type and anomaly kind names that labels must use.
    include_uncorrected : bool
        For the per-tile table of an earlier run only: keep the model's predicted labels
        for rows whose corrected columns are empty. By default only corrected labels are
        used, because unreviewed predictions would teach the model its own mistakes.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`COLUMNS`, one row per annotated tile, at least one label each.

    Raises
    ------
    AnnotationError
        When the source is missing, has no usable label column, names an unknown label
        or an image file that does not exist, or has no labelled rows.
    """
    source = Path(source).expanduser()
    if source.is_dir():
        if (source / "annotations.csv").is_file():
            table = _read_table_file(source / "annotations.csv")
            return _standardise(table, source / "annotations.csv", vocabulary, include_uncorrected)
        return _load_class_folders(source, vocabulary)
    if not source.is_file():
        raise AnnotationError(f"annotations not found: {source}; pass a CSV, TSV or parquet file or a folder per class")
    table = _read_table_file(source)
    return _standardise(table, source, vocabulary, include_uncorrected)


def _read_table_file(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv", ".txt"):
            separator = "\t" if suffix == ".tsv" else None
            return pd.read_csv(path, sep=separator, engine="python", dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise AnnotationError(f"cannot read annotation table {path}: {exc}") from exc
    raise AnnotationError(f"annotation table {path} has suffix {suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}")


def _standardise(table: pd.DataFrame, path: Path, vocabulary: Vocabulary, include_uncorrected: bool) -> pd.DataFrame:
    table = table.reset_index(drop=True)
    table.columns = [str(column).strip() for column in table.columns]
    is_run_table = "tile_id" in table.columns and "cell_type_prob" in table.columns
    paths = _image_paths(table, path)
    out = pd.DataFrame({"image_path": paths})
    out["image_id"] = _text_column(table, "image_id", default=None)
    missing_id = out["image_id"] == ""
    out.loc[missing_id, "image_id"] = [Path(p).name.split(".")[0] for p in out.loc[missing_id, "image_path"]]
    for column in REGION_COLUMNS:
        out[column] = _region_column(table, column, path)
    out["modality"] = _text_column(table, "modality", default="")
    for column in ("series", "frame"):
        out[column] = _region_column(table, column, path, positive=False)

    cell_type, anomaly, anomaly_kind = _labels(table, path, vocabulary, is_run_table, include_uncorrected)
    out["cell_type"] = cell_type
    out["anomaly"] = anomaly
    out["anomaly_kind"] = anomaly_kind

    keep = (out["cell_type"] != "") | out["anomaly"].notna()
    keep &= ~_skipped_rows(table)
    data_rows = np.flatnonzero(keep.to_numpy()) + 1  # row numbers in the file's data, for messages
    out = out[keep].reset_index(drop=True)
    if out.empty:
        hint = " (fill cell_type_corrected or anomaly_kind_corrected, or pass include_uncorrected)" if is_run_table else ""
        raise AnnotationError(f"{path} has no labelled rows{hint}")
    _check_images_exist(out, path, data_rows)
    log.info("read %d annotated tiles from %d images in %s", len(out), out["image_path"].nunique(), path)
    return out[list(COLUMNS)]


def _text_column(table: pd.DataFrame, column: str, default) -> pd.Series:
    if column not in table.columns:
        return pd.Series([default if default is not None else ""] * len(table), index=table.index, dtype=object)
    values = table[column].astype(object).where(table[column].notna(), "")
    return values.map(lambda value: str(value).strip())


def _image_paths(table: pd.DataFrame, path: Path) -> list[str]:
    """Return absolute image paths: relative paths are relative to the table's folder."""
    for column in ("image_path", "path", "file", "filename"):
        if column in table.columns:
            values = _text_column(table, column, default="")
            if (values == "").any():
                row = int(np.flatnonzero((values == "").to_numpy())[0])
                raise AnnotationError(f"{path}: column {column!r} is empty in data row {row + 1}; give an image path")
            return [str(_resolve(path.parent, value)) for value in values]
    if "image_id" in table.columns:
        return _paths_from_image_list(table, path)
    raise AnnotationError(f"{path} has no image_path column; add one with the image file of each row")


def _resolve(folder: Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else (folder / candidate).resolve()


def _paths_from_image_list(table: pd.DataFrame, path: Path) -> list[str]:
    """Map image_id to path through the ``images.tsv`` of the run the table belongs to."""
    for folder in (path.parent, path.parent.parent, path.parent.parent.parent):
        images_tsv = folder / "images.tsv"
        if images_tsv.is_file():
            images = pd.read_csv(images_tsv, sep="\t", dtype=str, keep_default_na=False)
            if {"image_id", "path"} <= set(images.columns):
                lookup = dict(zip(images["image_id"], images["path"]))
                ids = _text_column(table, "image_id", default="")
                unknown = sorted(set(ids) - set(lookup))
                if unknown:
                    raise AnnotationError(f"{path}: image_id {unknown[0]!r} is not listed in {images_tsv}")
                return [str(_resolve(images_tsv.parent, lookup[image_id])) for image_id in ids]
    raise AnnotationError(f"{path} has no image_path column and no images.tsv beside it; add an image_path column")


def _region_column(table: pd.DataFrame, column: str, path: Path, positive: bool = True) -> pd.Series:
    if column not in table.columns:
        return pd.Series(pd.NA, index=table.index, dtype="Int64")
    raw = table[column].astype(object).where(table[column].notna(), "").map(lambda v: str(v).strip())
    numbers = pd.to_numeric(raw.replace("", np.nan), errors="coerce")
    bad = numbers.isna() & (raw != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise AnnotationError(f"{path}: column {column!r} has {raw.iloc[row]!r} in data row {row + 1}; use whole pixels")
    if positive and column in ("height", "width") and (numbers <= 0).any():
        row = int(np.flatnonzero((numbers <= 0).to_numpy())[0])
        raise AnnotationError(f"{path}: column {column!r} is {numbers.iloc[row]} in data row {row + 1}; it must be positive")
    return numbers.round().astype("Int64")


def _skipped_rows(table: pd.DataFrame) -> pd.Series:
    skipped = pd.Series(False, index=table.index)
    for column in ("cell_type_corrected", "anomaly_kind_corrected"):
        if column in table.columns:
            skipped |= _text_column(table, column, "").str.lower().isin(SKIP_LABELS)
    return skipped.reset_index(drop=True)


def _labels(table, path, vocabulary, is_run_table, include_uncorrected):
    """Return (cell_type, anomaly, anomaly_kind) columns after corrections, validated."""
    n = len(table)
    class_lookup = {name.lower(): name for name in vocabulary.class_names}
    kind_lookup = {name.lower(): name for name in vocabulary.anomaly_kind_names}
    use_originals = include_uncorrected or not is_run_table

    cell_type = pd.Series([""] * n, dtype=object)
    anomaly = pd.Series(pd.NA, index=range(n), dtype="Int64")
    anomaly_kind = pd.Series([""] * n, dtype=object)
    if use_originals:
        cell_type = _text_column(table, "cell_type", "")
        anomaly, anomaly_kind = _original_anomaly(table, path, kind_lookup)
        if "label" in table.columns:
            _apply_generic_label(table, path, class_lookup, kind_lookup, cell_type, anomaly, anomaly_kind)

    cell_type_columns = pd.Series(["cell_type"] * n, index=cell_type.index, dtype=object)  # where each value came from
    if "cell_type_corrected" in table.columns:
        corrected = _text_column(table, "cell_type_corrected", "")
        filled = (corrected != "") & ~corrected.str.lower().isin(SKIP_LABELS)
        cell_type = cell_type.where(~filled, corrected)
        cell_type_columns = cell_type_columns.where(~filled, "cell_type_corrected")
    if "anomaly_kind_corrected" in table.columns:
        corrected = _text_column(table, "anomaly_kind_corrected", "")
        filled = (corrected != "") & ~corrected.str.lower().isin(SKIP_LABELS)
        for row in np.flatnonzero(filled.to_numpy()):
            anomaly.iloc[row], anomaly_kind.iloc[row] = _parse_anomaly_label(
                corrected.iloc[row], kind_lookup, path, "anomaly_kind_corrected", row)

    cell_type = pd.Series(
        [_canonical_class(value, class_lookup, path, column, row)
         for row, (value, column) in enumerate(zip(cell_type, cell_type_columns))],
        index=cell_type.index, dtype=object,
    )
    if not (cell_type != "").any() and not anomaly.notna().any():
        columns = "cell_type, anomaly_kind, anomaly or label"
        if is_run_table:
            columns = "cell_type_corrected or anomaly_kind_corrected"
        raise AnnotationError(f"{path} has no labels; fill at least one of the columns {columns}")
    return cell_type.reset_index(drop=True), anomaly.reset_index(drop=True), anomaly_kind.reset_index(drop=True)


def _original_anomaly(table, path, kind_lookup):
    """Read anomaly (0/1) and kind from ``anomaly``, ``is_anomalous`` and ``anomaly_kind``."""
    n = len(table)
    kinds = _text_column(table, "anomaly_kind", "")
    anomaly = pd.Series(pd.NA, index=range(n), dtype="Int64")
    anomaly_kind = pd.Series([""] * n, dtype=object)
    flag_column = None
    for candidate in ("anomaly", "is_anomalous"):
        if flag_column is None and candidate in table.columns:
            flag_column = candidate
    flags = _text_column(table, flag_column, "") if flag_column else None
    for row in range(n):
        kind = kinds.iloc[row]
        if flags is not None and flags.iloc[row] != "":
            value = flags.iloc[row].lower()
            if value not in ("0", "1", "true", "false", "0.0", "1.0"):
                raise AnnotationError(f"{path}: column {flag_column!r} is {flags.iloc[row]!r} in data row {row + 1}; use 0 or 1")
            anomaly.iloc[row] = int(value in ("1", "true", "1.0"))
            if anomaly.iloc[row] == 1 and kind and kind.lower() not in NORMAL_LABELS:
                anomaly_kind.iloc[row] = _canonical_kind(kind, kind_lookup, path, "anomaly_kind", row)
        elif kind:
            anomaly.iloc[row], anomaly_kind.iloc[row] = _parse_anomaly_label(kind, kind_lookup, path, "anomaly_kind", row)
    return anomaly, anomaly_kind


def _apply_generic_label(table, path, class_lookup, kind_lookup, cell_type, anomaly, anomaly_kind):
    """Sort a generic ``label`` column into cell type or anomaly by name (in place)."""
    labels = _text_column(table, "label", "")
    for row, value in enumerate(labels):
        if not value:
            continue
        if value.lower() in class_lookup:
            cell_type.iloc[row] = class_lookup[value.lower()]
        else:
            anomaly.iloc[row], anomaly_kind.iloc[row] = _parse_anomaly_label(value, kind_lookup, path, "label", row, class_lookup)


def _parse_anomaly_label(value, kind_lookup, path, column, row, class_lookup=None):
    if value.lower() in NORMAL_LABELS:
        return 0, ""
    return 1, _canonical_kind(value, kind_lookup, path, column, row, class_lookup)


def _canonical_kind(value, kind_lookup, path, column, row, class_lookup=None):
    if value.lower() in kind_lookup:
        return kind_lookup[value.lower()]
    allowed = sorted(kind_lookup.values()) + ["normal"]
    if class_lookup is not None:
        allowed = sorted(class_lookup.values()) + allowed
    raise AnnotationError(
        f"{path}: unknown label {value!r} in column {column!r}, data row {row + 1}; use one of {', '.join(allowed)}"
    )


def _canonical_class(value, class_lookup, path, column, row):
    if not value or value.lower() in SKIP_LABELS:
        return ""
    if value.lower() in class_lookup:
        return class_lookup[value.lower()]
    raise AnnotationError(
        f"{path}: unknown cell type {value!r} in column {column!r}, data row {row + 1}; "
        f"use one of {', '.join(sorted(class_lookup.values()))} (names from labels.yaml)"
    )


def _check_images_exist(table: pd.DataFrame, path: Path, data_rows: np.ndarray) -> None:
    exists = {image_path: Path(image_path).is_file() for image_path in table["image_path"].unique()}
    for position, image_path in enumerate(table["image_path"]):
        if not exists[image_path]:
            raise AnnotationError(
                f"{path}: image file not found in data row {data_rows[position]}: {image_path}; fix the path or remove its rows"
            )


def _load_class_folders(folder: Path, vocabulary: Vocabulary) -> pd.DataFrame:
    """Read ``folder/<label>/<image files>``: one whole-image tile per file."""
    class_lookup = {name.lower(): name for name in vocabulary.class_names}
    kind_lookup = {name.lower(): name for name in vocabulary.anomaly_kind_names}
    rows = []
    for label_folder in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = label_folder.name.lower()
        if label not in class_lookup and label not in kind_lookup and label not in NORMAL_LABELS:
            allowed = sorted(class_lookup.values()) + sorted(kind_lookup.values()) + ["normal"]
            raise AnnotationError(f"folder {label_folder} is not a known label; name class folders one of {', '.join(allowed)}")
        files = sorted(p for p in label_folder.rglob("*") if p.is_file() and _is_image_file(p))
        for image_file in files:
            row = {"image_path": str(image_file.resolve()), "image_id": f"{label_folder.name}/{image_file.stem}",
                   "cell_type": class_lookup.get(label, ""), "anomaly": pd.NA, "anomaly_kind": "", "modality": ""}
            if label in kind_lookup:
                row["anomaly"], row["anomaly_kind"] = 1, kind_lookup[label]
            elif label in NORMAL_LABELS:
                row["anomaly"] = 0
            rows.append(row)
    if not rows:
        raise AnnotationError(f"{folder} has no annotations.csv and no image files in label subfolders (DIR/<label>/*.png)")
    out = pd.DataFrame(rows)
    for column in REGION_COLUMNS + ("series", "frame"):
        out[column] = pd.Series(pd.NA, index=out.index, dtype="Int64")
    out["anomaly"] = out["anomaly"].astype("Int64")
    log.info("read %d images from %d label folders in %s", len(out), out["image_id"].str.split("/").str[0].nunique(), folder)
    return out[list(COLUMNS)]


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
