"""Per-image output files of the pipeline and how they are written.

Layout below the results folder ``OUT``::

    status/{image_id}.json           written last, so its presence marks a finished image
    tables/tiles/{image_id}.parquet  tiles + predictions + image_id, series, frame
    tables/cells/{image_id}.parquet  detected nuclei (cells placement only)
    thumbs/{image_id}.png            RGB thumbnail of the first plane

Every file goes through :mod:`vlm_micro.atomic`, so a killed job leaves no half-written
file behind.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlm_micro.atomic import atomic_path, write_text
from vlm_micro.errors import OutputError


def file_signature(path: str | Path) -> dict | None:
    """Return the size and modification time (ns) of an image file, or None when it cannot be read.

    The status of a labelled image stores it, and a later run reuses the image's results
    only while the file still has the same signature. A file that was fixed, replaced or
    edited in place is then labelled again.
    """
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@dataclass(frozen=True)
class ImageOutputs:
    """Paths of the files written for one image."""

    out: Path
    image_id: str

    @property
    def status(self) -> Path:
        return self.out / "status" / f"{self.image_id}.json"

    @property
    def tiles(self) -> Path:
        return self.out / "tables" / "tiles" / f"{self.image_id}.parquet"

    @property
    def cells(self) -> Path:
        return self.out / "tables" / "cells" / f"{self.image_id}.parquet"

    @property
    def thumbnail(self) -> Path:
        return self.out / "thumbs" / f"{self.image_id}.png"

    def remove_stale(self) -> None:
        """Delete the files of an earlier attempt, so a failure leaves no outdated table.

        Temporary files that a killed attempt left beside its outputs (see
        ``vlm_micro.atomic``) go too.
        """
        for path in (self.status, self.tiles, self.cells, self.thumbnail):
            leftovers = path.parent.glob(f".{glob.escape(path.name)}.*.tmp") if path.parent.is_dir() else []
            for stale in (path, *leftovers):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()


def to_json_value(value):
    """Convert numpy scalars and arrays, paths and non-finite floats to plain JSON values.

    NaN and infinities become null, because JSON has no representation for them.
    """
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_json_value(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_json_value(value.tolist())
    if isinstance(value, np.generic):
        return to_json_value(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    text = json.dumps(to_json_value(payload), indent=2, sort_keys=True, allow_nan=False) + "\n"
    _guard(path, lambda: write_text(path, text))


def write_parquet(path: Path, table) -> None:
    """Write a DataFrame as parquet, atomically."""

    def write():
        with atomic_path(path) as tmp:
            table.to_parquet(tmp, index=False)

    _guard(path, write)


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an (rows, columns, 3) uint8 array as PNG, atomically."""
    from PIL import Image

    def write():
        with atomic_path(path) as tmp:
            Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")

    _guard(path, write)


def _guard(path: Path, write) -> None:
    """Run ``write`` and turn an OSError (read-only folder, full disk) into an OutputError."""
    try:
        write()
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions of the results folder") from exc


def read_json(path: Path) -> dict | None:
    """Return the JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
