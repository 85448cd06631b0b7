"""Demo data: synthetic fields of view plus two real images bundled with scikit-image.

``write_demo_data(folder)`` writes::

    folder/images/synth_s{seed}_*.ome.tif   4 fluorescence + 4 brightfield synthetic images
    folder/images/ihc.png                   immunohistochemistry of colon (scikit-image)
    folder/images/cell.png                  quantitative phase image of a cell (scikit-image)
    folder/annotations.csv, truth/          ground truth of the synthetic images
    folder/images.tsv                       sample sheet: conditions, replicates, pixel sizes
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
from pathlib import Path

from vlm_micro.atomic import write_text
from vlm_micro.config import safe_image_id

log = logging.getLogger(__name__)

DEMO_SEED = 11
N_SYNTHETIC = 8  # alternating fluorescence and brightfield
SYNTHETIC_SIZE_PX = 512

# Pixel size of scikit-image's cell.png as given in skimage.data.cell's docstring
# (scikit-image 0.26): "The pixel size is 0.107 um". ihc.png has no documented pixel
# size, so it runs uncalibrated.
CELL_PNG_PIXEL_SIZE_UM = 0.107
REAL_IMAGES = (
    # file name, condition, pixel size (um/px) or None
    ("ihc.png", "real_ihc", None),
    ("cell.png", "real_phase", CELL_PNG_PIXEL_SIZE_UM),
)


def copy_skimage_images(images_dir: Path) -> list[Path]:
    """Copy ihc.png and cell.png from scikit-image's bundled data into ``images_dir``."""
    import skimage.data

    source_dir = Path(skimage.data.__file__).resolve().parent
    copied = []
    for name, _, _ in REAL_IMAGES:
        source = source_dir / name
        target = images_dir / name
        if not target.is_file():
            shutil.copyfile(source, target)
        copied.append(target)
    return copied


def _synthetic_ready(folder: Path) -> list[Path]:
    images = sorted((folder / "images").glob(f"synth_s{DEMO_SEED}_*.ome.tif"))
    return images if len(images) == N_SYNTHETIC and (folder / "annotations.csv").is_file() else []


def sample_sheet_rows(synthetic: list[Path], prefix: str = "images/") -> list[dict]:
    """Return the demo sample sheet rows: path (``prefix`` + file name), image_id, condition, replicate, pixel size."""
    rows, replicates = [], {}
    for path in synthetic:
        condition = "synthetic_fluorescence" if "_fluorescence_" in path.name else "synthetic_brightfield"
        replicates[condition] = replicates.get(condition, 0) + 1
        rows.append(_row(prefix + path.name, condition, str(replicates[condition]), None))
    for name, condition, pixel_size in REAL_IMAGES:
        rows.append(_row(prefix + name, condition, "1", pixel_size))
    return rows


def _row(path: str, condition: str, replicate: str, pixel_size_um: float | None) -> dict:
    return {
        "path": path,
        "image_id": safe_image_id(path),
        "condition": condition,
        "replicate": replicate,
        "pixel_size_um": "" if pixel_size_um is None else str(pixel_size_um),
    }


def write_sample_sheet(path: Path, rows: list[dict]) -> None:
    """Write rows as a tab-separated sample sheet with columns path, image_id, condition, replicate, pixel_size_um."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["path", "image_id", "condition", "replicate", "pixel_size_um"], delimiter="\t", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    write_text(path, buffer.getvalue())


def write_demo_data(folder: str | Path) -> Path:
    """Write the demo images and their sample sheet into ``folder``; return the sheet's path.

    Synthetic images are rendered only when they are not there yet (the generator is
    deterministic, so existing files are the same).
    """
    from vlm_micro.synth import generate_dataset

    folder = Path(folder)
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    synthetic = _synthetic_ready(folder)
    if not synthetic:
        log.info("rendering %d synthetic demo images into %s", N_SYNTHETIC, folder)
        generate_dataset(folder, N_SYNTHETIC, DEMO_SEED, modality="mixed", size_px=SYNTHETIC_SIZE_PX)
        synthetic = _synthetic_ready(folder)
    copy_skimage_images(images_dir)
    sheet = folder / "images.tsv"
    write_sample_sheet(sheet, sample_sheet_rows(synthetic))
    return sheet
