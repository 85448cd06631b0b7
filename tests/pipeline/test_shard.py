"""process_shard on two small synthetic images and one broken file, with a tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from vlm_micro.config import labelling_settings, list_images, validate_config
from vlm_micro.errors import ModelLoadError, VlmMicroError
from vlm_micro.pipeline.shard import labelling_threads, process_shard, reusable_status, write_shard_file

STATUS_KEYS = {
    "image_id", "path", "status", "error", "info", "plane", "qc", "summary", "pixel_size_um",
    "uncalibrated", "tile_size_um", "model", "config_checksum", "vocabulary", "vlm_micro_version",
    "started", "finished", "elapsed_s", "metadata", "n_views",
}


def make_config(images: Path, out: Path, model_dir: Path, labels: Path, **sections) -> dict:
    values = {"images": str(images), "out": str(out), "labels": str(labels), "model": {"spec": f"local-dir:{model_dir}", "device": "cpu"}}
    values["labeling"] = {"text_cache": None}
    values.update(sections)
    return validate_config(values, source="test")


def run_shard(config: dict, name: str = "shard_0000", report: dict | None = None, threads: int = 1) -> dict:
    out = Path(config["out"])
    shard_file = out / "shards" / f"{name}.images.json"
    write_shard_file(shard_file, name, str(out), labelling_settings(config), list_images(config),
                     str(out / "label.log"), report)
    return process_shard(shard_file, out / "shards" / f"{name}.manifest.json", threads=threads)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, small_images, tiny_model_dir):
    labels = Path(__file__).resolve().parents[2] / "config" / "labels.yaml"
    out = tmp_path_factory.mktemp("results")
    config = make_config(small_images, out, tiny_model_dir, labels)
    return config, run_shard(config)


def read_status(out: Path, image_id: str) -> dict:
    return json.loads((out / "status" / f"{image_id}.json").read_text(encoding="utf-8"))


def test_manifest_counts(first_run):
    _, manifest = first_run
    assert manifest["n_images"] == 3
    assert manifest["n_ok"] == 2
    assert manifest["n_failed"] == 1
    assert manifest["n_reused"] == 0
    assert manifest["model"]["name"] == "tiny-test"
    assert manifest["labelling_s"] > 0


def test_manifest_written_to_declared_path(first_run):
    config, manifest = first_run
    on_disk = json.loads((Path(config["out"]) / "shards" / "shard_0000.manifest.json").read_text(encoding="utf-8"))
    assert on_disk["images"] == manifest["images"]


def test_broken_file_fails_alone(first_run):
    config, _ = first_run
    status = read_status(Path(config["out"]), "broken")
    assert status["status"] == "failed"
    assert "broken.tif" in status["error"]
    assert "\n" not in status["error"]
    assert not (Path(config["out"]) / "tables" / "tiles" / "broken.parquet").exists()


def test_status_contract(first_run):
    config, manifest = first_run
    out = Path(config["out"])
    for item in manifest["images"]:
        status = read_status(out, item["image_id"])
        assert STATUS_KEYS <= set(status)
        assert status["vocabulary"]["classes"][0] == "lymphocyte"
    ok = read_status(out, next(i["image_id"] for i in manifest["images"] if i["status"] == "ok"))
    assert ok["error"] == ""
    assert ok["pixel_size_um"] == 0.5
    assert ok["uncalibrated"] is False
    assert ok["tile_size_um"] == 32.0
    assert ok["plane"]["series"] == 0
    assert ok["n_views"] == 1
    assert {"n_tiles", "n_skipped_background", "warnings"} <= set(ok["qc"])
    assert ok["model"]["checksum"]


def test_tile_table_columns(first_run):
    config, manifest = first_run
    out = Path(config["out"])
    image_id = next(i["image_id"] for i in manifest["images"] if i["status"] == "ok")
    tiles = pd.read_parquet(out / "tables" / "tiles" / f"{image_id}.parquet")
    assert list(tiles.columns[:4]) == ["image_id", "series", "frame", "projection"]
    for column in ("tile_id", "y", "x", "height", "width", "qc_flags", "cell_type", "cell_type_prob", "anomaly_score", "embedding"):
        assert column in tiles.columns
    assert (tiles["image_id"] == image_id).all()
    assert len(tiles) == read_status(out, image_id)["qc"]["n_tiles"]
    assert (out / "thumbs" / f"{image_id}.png").is_file()


def test_rerun_reuses_finished_images(first_run, tmp_path):
    config, _ = first_run
    out = tmp_path / "copy"
    shutil.copytree(config["out"], out)
    moved = dict(config, out=str(out))
    manifest = run_shard(moved)
    assert manifest["n_reused"] == 2
    assert manifest["n_failed"] == 1


def test_edited_file_not_reused(first_run, tmp_path):
    import os

    config, manifest = first_run
    out = Path(config["out"])
    image_id = next(i["image_id"] for i in manifest["images"] if i["status"] == "ok")
    status = read_status(out, image_id)
    entry = next(e for e in list_images(config) if e.image_id == image_id)
    copy = tmp_path / "results"
    shutil.copytree(out, copy)
    assert reusable_status(copy, entry, status["config_checksum"]) is not None
    image = Path(entry.path)
    stat = image.stat()
    try:
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert reusable_status(copy, entry, status["config_checksum"]) is None
    finally:
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_status_without_source_not_reused(first_run, tmp_path):
    config, manifest = first_run
    out = tmp_path / "results"
    shutil.copytree(config["out"], out)
    image_id = next(i["image_id"] for i in manifest["images"] if i["status"] == "ok")
    path = out / "status" / f"{image_id}.json"
    status = json.loads(path.read_text(encoding="utf-8"))
    del status["source"]  # as written by versions before the file signature
    path.write_text(json.dumps(status), encoding="utf-8")
    entry = next(e for e in list_images(config) if e.image_id == image_id)
    assert reusable_status(out, entry, status["config_checksum"]) is None


def test_reuse_updates_sheet_metadata(first_run, tmp_path):
    config, _ = first_run
    out = tmp_path / "copy"
    shutil.copytree(config["out"], out)
    entries = list_images(dict(config, out=str(out)))
    for entry in entries:
        entry.metadata = {"condition": "treated"}
        entry.metadata_columns = ["replicate", "condition"]
    shard_file = out / "shards" / "shard_0000.images.json"
    write_shard_file(shard_file, "shard_0000", str(out), labelling_settings(config), entries, str(out / "label.log"))
    manifest = process_shard(shard_file, out / "shards" / "shard_0000.manifest.json", threads=1)
    assert manifest["n_reused"] == 2
    for item in manifest["images"]:
        status = read_status(out, item["image_id"])
        assert status["metadata"] == {"condition": "treated"}
        assert status["metadata_columns"] == ["replicate", "condition"]


@pytest.mark.parametrize("threads", [1, 2])  # one report process, or two
def test_shard_writes_report_of_every_image(first_run, tmp_path, threads):
    config, _ = first_run
    out = tmp_path / "copy"
    shutil.copytree(config["out"], out)
    manifest = run_shard(dict(config, out=str(out)), report={"pdf": False}, threads=threads)
    assert manifest["n_reused"] == 2
    assert manifest["n_reports"] == 3
    assert manifest["report_s"] > 0
    for item in manifest["images"]:
        assert (out / "reports" / f"{item['image_id']}.html").is_file(), item["image_id"]
        assert (out / "exports" / f"{item['image_id']}.geojson").is_file(), item["image_id"]
    assert not list((out / "reports").glob("*.pdf"))  # the report section reaches the worker


def test_failed_report_fails_shard(first_run, tmp_path):
    config, manifest = first_run
    out = tmp_path / "copy"
    shutil.copytree(config["out"], out)
    (out / "shards" / "shard_0000.manifest.json").unlink()
    image_id = next(i["image_id"] for i in manifest["images"] if i["status"] == "ok")
    (out / "tables" / "tiles" / f"{image_id}.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(VlmMicroError, match=f"could not be written, first '{image_id}'"):
        run_shard(dict(config, out=str(out)), report={"pdf": False})
    assert not (out / "shards" / "shard_0000.manifest.json").exists()
    others = [i["image_id"] for i in manifest["images"] if i["image_id"] != image_id]
    for other in others:
        assert (out / "reports" / f"{other}.html").is_file(), other


def test_changed_settings_relabel(first_run, tmp_path, small_images, tiny_model_dir, labels_file):
    config, _ = first_run
    out = tmp_path / "copy"
    shutil.copytree(config["out"], out)
    changed = make_config(small_images, out, tiny_model_dir, labels_file, tiling={"min_foreground": 0.2})
    manifest = run_shard(changed)
    assert manifest["n_reused"] == 0
    assert manifest["n_ok"] == 2


def test_unexpected_error_fails_one_image(tmp_path, small_images, tiny_model_dir, labels_file, monkeypatch, caplog):
    import vlm_micro.tiling

    original = vlm_micro.tiling.plan_tiles

    def plan_tiles(view, *args, **kwargs):
        if "fluorescence" in view.path:
            raise ZeroDivisionError("division by zero")
        return original(view, *args, **kwargs)

    monkeypatch.setattr(vlm_micro.tiling, "plan_tiles", plan_tiles)
    manifest = run_shard(make_config(small_images, tmp_path / "out", tiny_model_dir, labels_file))
    failed = {i["image_id"]: i["error"] for i in manifest["images"] if i["status"] == "failed"}
    (fluorescence,) = [image_id for image_id in failed if "fluorescence" in image_id]
    assert "unexpected ZeroDivisionError: division by zero" in failed[fluorescence]
    assert "label.log" in failed[fluorescence]
    assert manifest["n_ok"] == 1
    assert "Traceback" in caplog.text or any(record.exc_info for record in caplog.records)


def test_model_load_error_fails_shard(tmp_path, small_images, tiny_model_dir, labels_file):
    config = make_config(small_images, tmp_path / "out", tiny_model_dir, labels_file)
    config["model"]["spec"] = f"local-dir:{tmp_path / 'gone'}"
    with pytest.raises(ModelLoadError, match="model folder not found"):
        run_shard(config)
    assert not (tmp_path / "out" / "status").exists()


def test_few_tiles_get_sample_size_warning():
    from vlm_micro.pipeline.image import with_sample_size_warning

    warned = with_sample_size_warning({"n_tiles": 1, "warnings": ["pixel size unknown"]})
    assert warned["warnings"][0] == "pixel size unknown"
    assert warned["warnings"][1].startswith("only 1 tile labelled")
    assert with_sample_size_warning({"n_tiles": 40, "warnings": []})["warnings"] == []
    assert with_sample_size_warning({"n_tiles": 0, "warnings": []})["warnings"] == []


def test_report_worker_imports_no_torch():
    import subprocess
    import sys

    script = ("import sys; import vlm_micro.pipeline.reports as reports; reports._import_reporting(); "
              "import vlm_micro.reporting.pdf_report; print('torch' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("threads", "report", "expected"),
    [(2, {}, 1), (4, {"pdf": True}, 3), (1, {}, 1), (2, None, 2), (None, {}, None)],
)
def test_labelling_threads_leave_one_core(threads, report, expected):
    assert labelling_threads(threads, report) == expected


@pytest.mark.parametrize(("cores", "workers"), [(None, 1), (1, 1), (2, 2), (3, 3), (16, 4)])
def test_report_workers_per_core(cores, workers):
    from vlm_micro.pipeline.reports import report_workers

    assert report_workers(cores) == workers
