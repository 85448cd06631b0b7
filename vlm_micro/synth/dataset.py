"""Synthetic datasets on disk: images, per-image ground truth and a tile annotation table.

Layout of a dataset folder ``DIR``::

    DIR/images/<image_id>.ome.tif      OME-TIFF, 0.5 um/px; uint16 (YX) or RGB uint8 (YXS)
    DIR/truth/<image_id>_labels.tif    uint16 nucleus instance labels (OME-TIFF)
    DIR/truth/<image_id>_cells.csv     cell_id, centroid_y, centroid_x, cell_type, anomaly_kind
    DIR/annotations.csv                one row per annotated 64 x 64 px block
    DIR/synth.json                     arguments, seed, vocabulary and image ids

Image ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` alone, so the same
arguments give byte-identical files, and images can be rendered in any order or in
parallel.
"""

from __future__ import annotations

import json
import logging
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import tifffile

from vlm_micro import __version__
from vlm_micro.atomic import atomic_path, write_text
from vlm_micro.errors import ConfigError, OutputError
from vlm_micro.synth.morphology import ANOMALY_KINDS, BLOCK_PX, MORPHOLOGIES, PIXEL_SIZE_UM, check_names
from vlm_micro.synth.render import FLUORESCENCE_STAIN, MODALITIES, STAINS, render_field

log = logging.getLogger(__name__)

ANNOTATION_COLUMNS = [
    "image_path",
    "image_id",
    "y",
    "x",
    "height",
    "width",
    "cell_type",
    "anomaly",
    "anomaly_kind",
    "modality",
    "stain",
    "seed",
]
MODALITY_CHOICES = ("fluorescence", "brightfield", "mixed")
DEFAULT_LABELS = Path(__file__).resolve().parents[2] / "config" / "labels.yaml"


def image_modality(modality: str, index: int) -> str:
    """Return the modality of image ``index``: ``mixed`` alternates, fluorescence first."""
    if modality == "mixed":
        return MODALITIES[index % 2]
    return modality


def image_stain(modality: str, stain: str) -> str:
    """Return the ``stain`` column value: ``dapi`` for fluorescence, else the brightfield stain."""
    return FLUORESCENCE_STAIN if modality == "fluorescence" else stain


def image_id_for(seed: int, index: int, modality: str, stain: str) -> str:
    """Return the image id, e.g. ``synth_s7_003_brightfield_he`` or ``synth_s7_000_fluorescence_dapi``."""
    return f"synth_s{seed}_{index:03d}_{modality}_{stain}"


def vocabulary_names(labels=None) -> tuple[list[str], list[str], str | None]:
    """Return cell type names, anomaly kind names and the vocabulary source.

    ``labels`` is a labels.yaml path, a loaded Vocabulary, or None for the project's
    config/labels.yaml (or, when that file is not there, the generator's built-in names).
    """
    from vlm_micro.labeling.vocabulary import Vocabulary, load_vocabulary

    if labels is None:
        if not DEFAULT_LABELS.is_file():
            log.info("no %s; using the built-in cell types and anomaly kinds", DEFAULT_LABELS)
            return list(MORPHOLOGIES), list(ANOMALY_KINDS), None
        labels = DEFAULT_LABELS
    vocabulary = labels if isinstance(labels, Vocabulary) else load_vocabulary(labels)
    return vocabulary.class_names, vocabulary.anomaly_kind_names, vocabulary.source


def write_ome_tiff(path: Path, image: np.ndarray, name: str, pixel_size_um: float = PIXEL_SIZE_UM) -> None:
    """Write a 2-D grey or RGB image as a zlib-compressed OME-TIFF with its pixel size, atomically.

    The OME UUID is derived from ``name``, so rewriting the same image gives the same bytes.
    """
    axes = "YX" if image.ndim == 2 else "YXS"
    metadata = {
        "axes": axes,
        "Name": name,
        "PhysicalSizeX": pixel_size_um,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": pixel_size_um,
        "PhysicalSizeYUnit": "µm",
        "UUID": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'vlm-micro-synth/' + name)}",
    }
    pixels_per_cm = 1e4 / pixel_size_um
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            image,
            ome=True,
            photometric="rgb" if image.ndim == 3 else "minisblack",
            compression="zlib",
            resolution=(pixels_per_cm, pixels_per_cm),
            resolutionunit="CENTIMETER",
            metadata=metadata,
        )


def render_and_write(
    out_dir: Path,
    seed: int,
    index: int,
    modality: str,
    stain: str,
    size_px: int,
    anomaly_fraction: float,
    class_names,
    anomaly_kinds,
) -> pd.DataFrame:
    """Render image ``index``, write its image and ground truth files, return its annotation rows."""
    rng = np.random.default_rng([seed, index])
    image, truth = render_field(
        rng,
        modality,
        stain,
        size_px,
        class_names=class_names,
        anomaly_kinds=anomaly_kinds,
        anomaly_fraction=anomaly_fraction,
    )
    image_id = image_id_for(seed, index, truth.modality, truth.stain)
    image_path = f"images/{image_id}.ome.tif"
    write_ome_tiff(out_dir / image_path, image, image_id)
    write_ome_tiff(out_dir / "truth" / f"{image_id}_labels.tif", truth.labels, f"{image_id}_labels")
    with atomic_path(out_dir / "truth" / f"{image_id}_cells.csv") as tmp:
        truth.cells.to_csv(tmp, index=False)

    rows = truth.blocks.copy()
    rows.insert(0, "image_id", image_id)
    rows.insert(0, "image_path", image_path)
    rows["modality"] = truth.modality
    rows["stain"] = truth.stain
    rows["seed"] = seed
    log.debug("wrote %s: %d cells, %d annotated blocks", image_id, len(truth.cells), len(rows))
    return rows[ANNOTATION_COLUMNS]


def _validate_arguments(n_images, seed, modality, stain, size_px, anomaly_fraction, n_workers) -> None:
    if not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise ConfigError(f"number of images {n_images!r} is invalid; use 1 or more")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed {seed!r} is invalid; use an integer >= 0")
    if modality not in MODALITY_CHOICES:
        raise ConfigError(f"modality {modality!r} is invalid; use fluorescence, brightfield or mixed")
    if stain not in STAINS:
        raise ConfigError(f"stain {stain!r} is invalid; use he or ihc")
    if not isinstance(size_px, (int, np.integer)) or size_px < BLOCK_PX or size_px % BLOCK_PX:
        raise ConfigError(f"image size {size_px!r} px is invalid; use a positive multiple of {BLOCK_PX}")
    if not 0.0 <= anomaly_fraction <= 1.0:
        raise ConfigError(f"anomaly fraction {anomaly_fraction!r} is invalid; use a value from 0 to 1")
    if not isinstance(n_workers, (int, np.integer)) or n_workers < 1:
        raise ConfigError(f"number of workers {n_workers!r} is invalid; use 1 or more")


def generate_dataset(
    out_dir,
    n_images: int,
    seed: int,
    modality: str = "mixed",
    stain: str = "he",
    size_px: int = 512,
    anomaly_fraction: float = 0.2,
    *,
    labels=None,
    n_workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Render ``n_images`` synthetic fields of view with ground truth into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Dataset folder; created when missing. Files of the same names are replaced.
    n_images : int
    seed : int
        Dataset seed; image ``i`` uses ``numpy.random.default_rng([seed, i])``.
    modality : {'mixed', 'fluorescence', 'brightfield'}
        ``mixed`` alternates fluorescence (even indices) and brightfield (odd indices).
    stain : {'he', 'ihc'}
        Stain of the brightfield images.
    size_px : int
        Side of each square image in pixels, a multiple of 64.
    anomaly_fraction : float
        Probability that an annotated block carries an anomaly.
    labels : str, Path or Vocabulary, optional
        Vocabulary whose cell types and anomaly kinds are drawn (default config/labels.yaml).
    n_workers : int
        Processes rendering in parallel; the output does not depend on it.
    progress : callable, optional
        Called with the number of images finished after each image.

    Returns
    -------
    DataFrame
        The annotation table also written to ``out_dir/annotations.csv``, one row per
        annotated 64 x 64 px block, columns ``ANNOTATION_COLUMNS``.

    Raises
    ------
    ConfigError
        On an invalid argument or a vocabulary with names the generator cannot draw.
    OutputError
        When ``out_dir`` cannot be written.
    """
    _validate_arguments(n_images, seed, modality, stain, size_px, anomaly_fraction, n_workers)
    class_names, anomaly_kinds, source = vocabulary_names(labels)
    class_names, anomaly_kinds = check_names(class_names, anomaly_kinds)
    out_dir = Path(out_dir)
    jobs = [
        (
            out_dir,
            int(seed),
            index,
            image_modality(modality, index),
            stain,
            int(size_px),
            float(anomaly_fraction),
            class_names,
            anomaly_kinds,
        )
        for index in range(n_images)
    ]
    try:
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
        (out_dir / "truth").mkdir(parents=True, exist_ok=True)
        tables = _run_jobs(jobs, n_workers, progress)
        annotations = pd.concat(tables, ignore_index=True)
        with atomic_path(out_dir / "annotations.csv") as tmp:
            annotations.to_csv(tmp, index=False)
        write_text(out_dir / "synth.json", _manifest(jobs, modality, source, annotations))
    except OSError as exc:
        raise OutputError(
            f"cannot write to {out_dir}: {exc.strerror or exc}; choose a writable folder with --out"
        ) from exc
    log.info("wrote %d images and %d annotated tiles to %s", n_images, len(annotations), out_dir)
    return annotations


def _run_jobs(jobs, n_workers: int, progress) -> list[pd.DataFrame]:
    tables = []
    if n_workers == 1 or len(jobs) == 1:
        for job in jobs:
            tables.append(render_and_write(*job))
            if progress:
                progress(len(tables))
        return tables
    with ProcessPoolExecutor(max_workers=n_workers) as executor:
        for table in executor.map(render_and_write, *zip(*jobs)):
            tables.append(table)
            if progress:
                progress(len(tables))
    return tables


def _manifest(jobs, modality: str, source, annotations: pd.DataFrame) -> str:
    """Return synth.json: the arguments, the vocabulary and the image ids, without timestamps."""
    _, seed, _, _, stain, size_px, anomaly_fraction, class_names, anomaly_kinds = jobs[0]
    manifest = {
        "generator": "vlm_micro.synth",
        "version": __version__,
        "seed": seed,
        "n_images": len(jobs),
        "modality": modality,
        "stain": stain,
        "size_px": size_px,
        "anomaly_fraction": anomaly_fraction,
        "pixel_size_um": PIXEL_SIZE_UM,
        "block_px": BLOCK_PX,
        "labels": source,
        "class_names": list(class_names),
        "anomaly_kinds": list(anomaly_kinds),
        "n_annotations": int(len(annotations)),
        "image_ids": [
            image_id_for(seed, index, job_modality, image_stain(job_modality, stain))
            for _, _, index, job_modality, *_ in jobs
        ],
    }
    return json.dumps(manifest, indent=2) + "\n"
