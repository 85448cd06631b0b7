"""Process one shard: a list of images labelled by one job with one model load.

The workflow writes a shard file (JSON) per shard with the results folder, the
labelling settings, the report settings and the images. :func:`process_shard` labels
the images one by one and hands each finished image to a background process that
writes its report. It writes the shard manifest last, atomically, as the job's
declared output.

An image whose status file records ``ok`` with the same settings checksum, path and
model weights checksum is reused without reading it again, so a rerun after a killed
job only labels what is missing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from vlm_micro import __version__
from vlm_micro.config import ImageEntry, config_checksum
from vlm_micro.errors import ConfigError
from vlm_micro.pipeline.image import process_image, utc_now
from vlm_micro.pipeline.outputs import ImageOutputs, file_signature, read_json, write_json

log = logging.getLogger(__name__)

SHARD_FILE_VERSION = 1


@dataclass
class ShardContext:
    """Settings, vocabulary and model shared by every image of a shard.

    The model is loaded on the first call of :meth:`labeler`, so a shard whose images are
    all reused never loads it.
    """

    out: Path
    settings: dict  # labels path plus the model, read, tiling and labeling sections
    read_settings: object
    tile_settings: object
    label_settings: object
    vocabulary: object
    checksum: str
    threads: int | None = None
    log_hint: str = ""
    model_load_s: float = 0.0
    _model: object = field(default=None, repr=False)
    _labeler: object = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, out: str | Path, settings: dict, threads: int | None = None, log_hint: str = "") -> "ShardContext":
        """Validate the settings sections with each part's settings class and load the vocabulary."""
        from vlm_micro.io import ReadSettings
        from vlm_micro.labeling import LabelSettings
        from vlm_micro.labeling.vocabulary import load_vocabulary
        from vlm_micro.tiling import TileSettings

        labeling = dict(settings["labeling"], batch_size=settings["model"]["batch_size"], threads=threads)
        vocabulary = load_vocabulary(settings["labels"])
        return cls(
            out=Path(out),
            settings=settings,
            read_settings=ReadSettings.from_dict(settings["read"]),
            tile_settings=TileSettings.from_dict(settings["tiling"]),
            label_settings=LabelSettings.from_dict(labeling),
            vocabulary=vocabulary,
            checksum=config_checksum(settings, vocabulary.checksum()),
            threads=threads,
            log_hint=log_hint,
        )

    @property
    def batch_size(self) -> int:
        return int(self.settings["model"]["batch_size"])

    @property
    def target_pixel_size_um(self) -> float | None:
        """Pixel size (um/px) tiles are resampled to: the config's value, else the model's."""
        value = self.settings["model"].get("pixel_size_um")
        return float(value) if value else self.model().pixel_size_um

    @property
    def tile_size_px(self) -> int:
        """Tile side in pixels at the target scale: the config's, the model's, else its input size."""
        value = self.settings["model"].get("tile_size_px")
        model = self.model()
        return int(value or model.tile_size_px or model.image_size)

    def model(self):
        """Return the loaded model, loading it on first use."""
        if self._model is None:
            from vlm_micro.model import load_model

            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            model_settings = self.settings["model"]
            start = time.perf_counter()
            self._model = load_model(model_settings["spec"], model_settings["device"], model_settings["precision"])
            self.model_load_s = time.perf_counter() - start
            log.info("model %s loaded in %.1f s", self._model.name, self.model_load_s)
        return self._model

    def labeler(self):
        """Return the Labeler of the shard, building it (and loading the model) on first use."""
        if self._labeler is None:
            from vlm_micro.labeling import Labeler

            self._labeler = Labeler(
                self.model(), self.vocabulary, self.label_settings,
                threads=self.threads, read_settings=self.read_settings, tile_settings=self.tile_settings,
                target_pixel_size_um=self.target_pixel_size_um,
            )
        return self._labeler

    def model_info(self) -> dict:
        """Return spec, name and checksum of the model; name and checksum are None before loading."""
        spec = self.settings["model"]["spec"]
        if self._model is None:
            return {"spec": spec, "name": None, "checksum": None}
        return {"spec": spec, "name": self._model.name, "checksum": self._model.checksum}


def shard_payload(shard_id: str, out: str, settings: dict, entries: list[ImageEntry], log_path: str = "",
                  report: dict | None = None) -> dict:
    """Return the content of a shard file (see :func:`process_shard`)."""
    return {
        "version": SHARD_FILE_VERSION,
        "shard": shard_id,
        "out": str(out),
        "log": str(log_path),
        "settings": settings,
        "report": report,
        "images": [entry.to_dict() for entry in entries],
    }


def write_shard_file(path: str | Path, shard_id: str, out: str, settings: dict, entries: list, log_path: str = "",
                     report: dict | None = None) -> None:
    """Write the shard file that ``vlm-micro process-shard`` reads, atomically.

    ``entries`` contains :class:`ImageEntry` objects or their ``to_dict()`` form.
    ``report`` is the ``report`` section of the configuration. With it, the shard also
    writes the report and exports of each image. Without it, the shard writes no reports.
    """
    entries = [entry if isinstance(entry, ImageEntry) else ImageEntry.from_dict(entry) for entry in entries]
    write_json(Path(path), shard_payload(shard_id, out, settings, entries, log_path, report))


def read_shard_file(path: str | Path) -> dict:
    """Read and check a shard file; raise ConfigError naming the file when it is invalid."""
    payload = read_json(Path(path))
    if payload is None:
        raise ConfigError(f"shard file {path} is missing or not a JSON object; rerun the workflow to recreate it")
    missing = [key for key in ("shard", "out", "settings", "images") if key not in payload]
    if missing:
        raise ConfigError(f"shard file {path} has no {missing[0]!r} key; rerun the workflow to recreate it")
    if payload.get("version") != SHARD_FILE_VERSION:
        raise ConfigError(f"shard file {path} has version {payload.get('version')!r}, expected {SHARD_FILE_VERSION}; rerun the workflow")
    return payload


def weights_checksum(spec: str) -> str | None:
    """Return the SHA-256 of a model's weights file without loading it.

    This is the checksum that loading the model records. Returns None for specs
    whose weights file cannot be found without loading (hf-hub) or that are invalid.
    """
    from vlm_micro.model.loading import BUILTIN_DIR, FOLDER_WEIGHTS_FILES, file_sha256

    if spec.startswith(("builtin:", "local-dir:")):
        name = spec.split(":", 1)[1]
        folder = BUILTIN_DIR / name if spec.startswith("builtin:") else Path(name).expanduser()
        weights = next((folder / f for f in FOLDER_WEIGHTS_FILES if (folder / f).is_file()), None)
    elif "@" in spec and not spec.startswith("hf-hub:"):
        weights = Path(spec.split("@", 1)[1]).expanduser()
    else:
        weights = None
    return file_sha256(weights) if weights is not None and weights.is_file() else None


def reusable_status(out: Path, entry: ImageEntry, checksum: str, model_checksum: str | None = None) -> dict | None:
    """Return the status of an image finished earlier with the same settings, model and file, else None.

    The file counts as the same while its size and modification time are (see
    :func:`vlm_micro.pipeline.outputs.file_signature`). A status without them, written
    by an older version, is not reused.
    """
    outputs = ImageOutputs(out, entry.image_id)
    status = read_json(outputs.status)
    if not status or status.get("status") != "ok":
        return None
    if status.get("config_checksum") != checksum or status.get("path") != entry.path:
        return None
    if status.get("source") is None or status["source"] != file_signature(entry.path):
        return None
    if model_checksum is not None and (status.get("model") or {}).get("checksum") != model_checksum:
        return None
    if not (outputs.tiles.is_file() and outputs.thumbnail.is_file()):
        return None
    return status


def process_shard(shard_file: str | Path, manifest_path: str | Path, threads: int | None = None) -> dict:
    """Label every image of a shard file, write their reports and write the shard manifest.

    Parameters
    ----------
    shard_file : path-like
        JSON written by :func:`write_shard_file`: ``shard`` (id), ``out`` (results
        folder), ``settings`` (labels path and the model, read, tiling and labeling
        sections of the config), ``report`` (the report section, or null for no
        reports) and ``images`` (image_id, path, pixel_size_um, metadata).
    manifest_path : path-like
        Where the manifest goes; written after every image and report is done.
    threads : int, optional
        CPU cores of the shard. Labelling uses one torch thread less when reports
        are written (see :func:`labelling_threads`).

    Returns
    -------
    dict
        The manifest: one entry per image with its status and error, counts, the model,
        the settings checksum and timings. ``labelling_s`` sums the per-image times,
        ``report_s`` is the time the background process spent writing reports and
        ``report_wait_s`` the time the shard waited for it after the last image.

    Raises
    ------
    VlmMicroError
        When the shard file or the settings are invalid, the model cannot be loaded,
        an output cannot be written or a report fails. Any other failure of an image
        is written to that image's status file, and the shard goes on.

    Notes
    -----
    Reports are written in a background process (see
    :class:`vlm_micro.pipeline.reports.ReportWriter`) while the next images are
    labelled. Failed and reused images get a report too. The settings checksum that
    decides reuse does not cover the report section, so changing it rewrites the
    reports without labelling again.
    """
    payload = read_shard_file(shard_file)
    started, start = utc_now(), time.perf_counter()
    report = payload.get("report")
    context = ShardContext.from_settings(payload["out"], payload["settings"], labelling_threads(threads, report),
                                         payload.get("log", ""))
    model_checksum = weights_checksum(context.settings["model"]["spec"])
    with contextlib.ExitStack() as stack:
        writer = None
        if report is not None:
            from vlm_micro.pipeline.reports import ReportWriter, report_config, report_workers

            writer = stack.enter_context(ReportWriter(context.out, report_config(report, context.settings),
                                                      report_workers(threads)))
        images = [_process_entry(entry, context, model_checksum, writer) for entry in
                  (ImageEntry.from_dict(item) for item in payload["images"])]
        if writer is not None:
            writer.wait()
    manifest = shard_manifest(payload["shard"], images, context, started, time.perf_counter() - start, writer)
    write_json(Path(manifest_path), manifest)
    return manifest


def labelling_threads(threads: int | None, report: dict | None) -> int | None:
    """Return the torch threads of a shard that has ``threads`` cores.

    The report processes keep a core busy while the shard labels, so labelling gets
    one thread less when reports are written. With the demo model on 2 idle cores,
    labelling 50 images with one torch thread beside one report process took 0.18 s
    per image, against 0.26 s with two threads that competed with it. (The shard now
    starts one report process per core, see
    :func:`vlm_micro.pipeline.reports.report_workers`.)
    """
    if threads and threads > 1 and report is not None:
        return threads - 1
    return threads


def refresh_sheet_metadata(out: Path, entry: ImageEntry, status: dict) -> None:
    """Store the current sample-sheet metadata in a reused image's status file.

    The metadata do not change labels, so an edited condition or replicate column
    reuses the image. Without this update, images.tsv and the reports would show the
    values of the run that labelled it.
    """
    current = {"metadata": dict(entry.metadata), "metadata_columns": list(entry.metadata_columns)}
    if all(status.get(key) == value for key, value in current.items()):
        return
    status.update(current)
    write_json(ImageOutputs(out, entry.image_id).status, status)


def _process_entry(entry: ImageEntry, context: ShardContext, model_checksum: str | None, writer) -> dict:
    """Label one image of the shard, or reuse its earlier result, and queue its report."""
    status = reusable_status(context.out, entry, context.checksum, model_checksum)
    reused = status is not None
    if reused:
        log.info("image %s: reusing the result of an earlier run", entry.image_id)
        refresh_sheet_metadata(context.out, entry, status)
    else:
        # Loaded here, outside the per-image error handling, so that a model that
        # cannot be loaded fails the job instead of every image.
        context.labeler()
        status = process_image(entry, context)
    if writer is not None:
        writer.submit(entry.image_id)
    return {"image_id": entry.image_id, "status": status["status"], "error": status["error"],
            "reused": reused, "elapsed_s": status.get("elapsed_s")}


def shard_manifest(shard_id: str, images: list[dict], context: ShardContext, started: str, elapsed_s: float,
                   writer=None) -> dict:
    """Return the manifest written at the end of a shard; ``writer`` is its ReportWriter, if any."""
    labelled = [image for image in images if not image["reused"]]
    return {
        "shard": shard_id,
        "n_images": len(images),
        "n_ok": sum(image["status"] == "ok" for image in images),
        "n_failed": sum(image["status"] == "failed" for image in images),
        "n_reused": len(images) - len(labelled),
        "images": images,
        "model": context.model_info(),
        "config_checksum": context.checksum,
        "vlm_micro_version": __version__,
        "started": started,
        "finished": utc_now(),
        "elapsed_s": round(elapsed_s, 3),
        "model_load_s": round(context.model_load_s, 3),
        "labelling_s": round(sum(image["elapsed_s"] or 0.0 for image in labelled), 3),
        "n_reports": writer.n_written if writer is not None else 0,
        "report_s": round(writer.report_s, 3) if writer is not None else 0.0,
        "report_wait_s": round(writer.wait_s, 3) if writer is not None else 0.0,
    }
