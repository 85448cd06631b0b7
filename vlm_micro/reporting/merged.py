"""The run's merged tile and cell tables, written image by image so that memory does not grow with the run.

``tables/tiles.parquet`` contains every tile of every image with its embedding. A whole
slide has thousands of tiles, so a run of many slides gives tens of millions of rows.
:class:`MergedTableWriter` appends each image's table to one Parquet file in row groups
of :data:`ROW_GROUP_ROWS` rows, and keeps no more than one row group in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vlm_micro.atomic import atomic_path

log = logging.getLogger(__name__)

# Rows of one row group of tiles.parquet: about 35 MB with the 512 float32 values of a
# ViT-B-32 embedding per row.
ROW_GROUP_ROWS = 16_384
# Columns left out of the CSV copy: lists of numbers that a CSV cell cannot hold.
CSV_EXCLUDED = ("embedding",)
# pandas types for the CSV copy, so that an integer or boolean column with missing
# values is written the same way in every row group (12 and an empty cell, not 12.0).
_CSV_TYPES = {
    pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(), pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(), pa.bool_(): pd.BooleanDtype(),
}


def read_schemas(paths: list[Path]) -> list[pa.Schema]:
    """Return the schemas of the Parquet files among ``paths`` that exist, reading only their footers.

    Unreadable files are left out, because the run summary lists their images as failed.
    """
    schemas = []
    for path in paths:
        if not path.is_file():
            continue
        try:
            schemas.append(pq.read_schema(path))
        except (OSError, pa.ArrowException) as exc:
            log.debug("cannot read the schema of %s (%s); its image is listed as failed", path, exc)
    return schemas


def merged_schema(schemas: list[pa.Schema], other_schemas: list[pa.Schema] = (),
                  other_columns: tuple[str, ...] = ()) -> pa.Schema | None:
    """Return the schema of a merged table: ``image_id``, then every column of the per-image tables.

    Columns are in the order they first appear. A column whose type differs between
    images gets the common type (an integer column with a float one becomes float).
    ``other_columns`` that only ``other_schemas`` have are added at the end, with
    their type there. This is how the cell table gets the predictions of the cells' tiles.
    Returns None when ``schemas`` is empty.

    A column whose types have no common type (text in one image, numbers in another)
    is stored as text, with a warning.
    """
    if not schemas:
        return None
    unified = _unify(schemas)
    fields = [pa.field("image_id", pa.large_string())] + [f for f in unified if f.name != "image_id"]
    if other_schemas and other_columns:
        other = _unify(other_schemas)
        fields += [other.field(name) for name in other_columns if name in other.names and name not in unified.names]
    merged = pa.schema(fields)
    return merged.with_metadata(pandas_metadata(schemas, merged, other_schemas))


def _unify(schemas: list[pa.Schema]) -> pa.Schema:
    """Return the union of ``schemas``; columns whose types have no common type become text."""
    plain = [schema.remove_metadata() for schema in schemas]
    try:
        return pa.unify_schemas(plain, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    types: dict[str, set] = {}
    for schema in plain:
        for column in schema:
            types.setdefault(column.name, set()).add(column.type)
    mixed = sorted(name for name, found in types.items() if len(found) > 1)
    log.warning("the per-image tables store different types in %s; the merged table stores these columns as text",
                "; ".join(f"column {name} ({', '.join(sorted(map(str, types[name])))})" for name in mixed))
    text = [pa.schema([pa.field(c.name, pa.large_string()) if c.name in mixed else c for c in schema]) for schema in plain]
    return pa.unify_schemas(text, promote_options="permissive")


def pandas_metadata(schemas: list[pa.Schema], merged: pa.Schema, other_schemas: list[pa.Schema] = ()) -> dict[bytes, bytes]:
    """Return the pandas metadata of a merged table, so pandas reads its columns with the per-image types.

    pandas stores each column's type (such as the nullable ``Int64`` of ``frame``) in
    the Parquet file's metadata. A column gets the entry that every per-image table
    agrees on, and no entry (pyarrow's default conversion) where they differ or the
    merged type is another one. Columns that ``schemas`` lack take their entry from
    ``other_schemas``.
    """
    own = _column_entries(schemas)
    other = _column_entries(other_schemas)
    base = next((json.loads(s.metadata[b"pandas"]) for s in schemas if s.metadata and b"pandas" in s.metadata), None)
    if base is None:
        return {}
    columns = []
    for column in merged:
        # image_id is set by the merge, and pandas reads it with its default string type.
        if column.name == "image_id":
            continue
        entry, types = own[column.name] if column.name in own else other.get(column.name, (None, set()))
        if entry is not None and types == {column.type}:
            columns.append(entry)
    base = dict(base, columns=columns, index_columns=[], column_indexes=[])
    return {b"pandas": json.dumps(base).encode("utf-8")}


def _column_entries(schemas: list[pa.Schema]) -> dict[str, tuple[dict | None, set]]:
    """Return, by column name, the pandas metadata entry shared by all ``schemas`` (None if they differ) and the Arrow types."""
    entries: dict[str, tuple[dict | None, set]] = {}
    for schema in schemas:
        metadata = json.loads((schema.metadata or {}).get(b"pandas", b"{}"))
        by_name = {entry.get("field_name"): entry for entry in metadata.get("columns", [])}
        for name in schema.names:
            entry, types = entries.get(name, (by_name.get(name), set()))
            if name in entries and entry != by_name.get(name):
                entry = None
            entries[name] = (entry, types | {schema.field(name).type})
    return entries


def conform(table: pa.Table, image_id: str, schema: pa.Schema) -> pa.Table:
    """Return ``table`` with the columns and types of ``schema``; ``image_id`` is set, missing columns are null."""
    columns = []
    present = set(table.column_names)  # column_names builds a new list on every access
    for column in schema:
        if column.name == "image_id":
            columns.append(pa.array([image_id] * table.num_rows, type=column.type))
        elif column.name in present:
            values = table[column.name]
            columns.append(values if values.type == column.type else values.cast(column.type))
        else:
            columns.append(pa.nulls(table.num_rows, type=column.type))
    return pa.Table.from_arrays(columns, schema=schema)


class MergedTableWriter:
    """Write a merged table as Parquet, and as CSV beside it when ``csv`` is true, one image at a time.

    Use it as a context manager and call :meth:`add` for each image. Both files are
    written atomically: they replace the old ones only when the ``with`` block ends
    without an error.
    """

    def __init__(self, parquet_path: Path, schema: pa.Schema, csv: bool) -> None:
        self.paths = [parquet_path] + ([parquet_path.with_suffix(".csv")] if csv else [])
        self.schema = schema
        self._buffer: list[pa.Table] = []
        self._buffered_rows = 0
        self._csv_header = True
        self._stack = contextlib.ExitStack()
        self._parquet: pq.ParquetWriter | None = None
        self._csv = None

    def __enter__(self) -> "MergedTableWriter":
        with self._stack as stack:
            tmp = stack.enter_context(atomic_path(self.paths[0]))
            self._parquet = stack.enter_context(pq.ParquetWriter(tmp, self.schema))
            if len(self.paths) > 1:
                tmp = stack.enter_context(atomic_path(self.paths[1]))
                self._csv = stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
            self._stack = stack.pop_all()
        return self

    def add(self, image_id: str, table: pa.Table) -> None:
        """Append the table of one image."""
        self._buffer.append(conform(table, image_id, self.schema))
        self._buffered_rows += table.num_rows
        if self._buffered_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        rows = pa.concat_tables(self._buffer)
        self._buffer, self._buffered_rows = [], 0
        self._parquet.write_table(rows)
        if self._csv is not None:
            self._write_csv(rows)

    def _write_csv(self, rows: pa.Table) -> None:
        kept = rows.drop_columns([name for name in CSV_EXCLUDED if name in rows.column_names])
        handle = self._csv  # a file opened on the temporary path of the CSV
        kept.to_pandas(types_mapper=_CSV_TYPES.get).to_csv(handle, index=False, header=self._csv_header)
        self._csv_header = False

    def __exit__(self, exc_type, exc, traceback) -> bool | None:
        if exc_type is None:
            try:
                self._flush()
                if self._csv is not None and self._csv_header:
                    self._write_csv(self.schema.empty_table())
            except BaseException as error:
                # The temporary files are removed and the old tables stay, as on any other error.
                self._stack.__exit__(type(error), error, error.__traceback__)
                raise
        return self._stack.__exit__(exc_type, exc, traceback)
