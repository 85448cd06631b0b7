"""End-to-end runs of `vlm-micro run` through the real Snakemake workflow (slow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vlm_micro.model.loading import BUILTIN_DIR, CONFIG_FILE

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_spec(request) -> str:
    """The bundled demo model when it is installed, else the tiny test model."""
    if (BUILTIN_DIR / "demo" / CONFIG_FILE).is_file():
        return "builtin:demo"
    return f"local-dir:{request.getfixturevalue('tiny_model_dir')}"


@pytest.fixture(scope="module")
def run_config(tmp_path_factory, model_spec) -> Path:
    """A config without PDF pages and with one shard per image, to keep the run short."""
    values = {
        "labels": str(REPO_ROOT / "config" / "labels.yaml"),
        "model": {"spec": model_spec, "device": "cpu"},
        "labeling": {"text_cache": None},
        "report": {"pdf": False},
        "workflow": {"shard_size": 1, "threads": 1},
    }
    path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def vlm_micro_run(images: Path, out: Path, config: Path, *extra: str, **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "vlm_micro", "run", "--images", str(images), "--out", str(out),
               "--config", str(config), "--cores", "2", *extra]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_images, run_config):
    out = tmp_path_factory.mktemp("run") / "results"
    process = vlm_micro_run(small_images, out, run_config)
    stdout, stderr = process.communicate(timeout=900)
    return out, process.returncode, stdout, stderr


def read_images_tsv(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "images.tsv", sep="\t", keep_default_na=False)


def read_status(out: Path, image_id: str) -> dict:
    return json.loads((out / "status" / f"{image_id}.json").read_text(encoding="utf-8"))


def test_run_exits_3_for_broken_file(finished_run):
    out, returncode, stdout, stderr = finished_run
    assert returncode == 3, stderr[-3000:]
    assert "1 of 3 image(s) failed" in stderr
    assert stdout.strip() == str(out / "index.html")


def test_images_tsv_rows(finished_run):
    out, *_ = finished_run
    table = read_images_tsv(out)
    assert list(table.columns[:4]) == ["image_id", "path", "status", "error"]
    statuses = dict(zip(table["image_id"], table["status"]))
    assert statuses.pop("broken") == "failed"
    assert sorted(statuses.values()) == ["ok", "ok"]
    error = table.loc[table["image_id"] == "broken", "error"].item()
    assert "broken.tif" in error
    assert (table.loc[table["status"] == "ok", "error"] == "").all()


def test_reports_and_index(finished_run):
    out, *_ = finished_run
    table = read_images_tsv(out)
    for image_id in table.loc[table["status"] == "ok", "image_id"]:
        assert (out / "reports" / f"{image_id}.html").is_file()
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "reports/" in index
    assert (out / "tables" / "tiles.parquet").is_file()
    assert (out / "conditions.tsv").is_file()


def test_effective_config_written(finished_run):
    out, *_ = finished_run
    config = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert config["out"] == str(out)
    assert config["workflow"]["shard_size"] == 1
    assert not (out / ".vlm-micro.lock").exists()


def test_rerun_reuses_everything(finished_run, small_images, run_config):
    out, *_ = finished_run
    process = vlm_micro_run(small_images, out, run_config)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 3, stderr[-3000:]
    assert "Nothing to be done" in stderr


def test_summary_leaves_out_images_of_earlier_runs(finished_run, small_images, run_config):
    out, *_ = finished_run
    status = json.loads((out / "status" / "broken.json").read_text(encoding="utf-8"))
    stale = out / "status" / "from_earlier_run.json"
    stale.write_text(json.dumps(dict(status, image_id="from_earlier_run")), encoding="utf-8")
    try:
        process = vlm_micro_run(small_images, out, run_config, "--", "--forcerun", "summary")
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 3, stderr[-3000:]
        image_ids = read_images_tsv(out)["image_id"].tolist()
        assert "from_earlier_run" not in image_ids
        assert len(image_ids) == 3
    finally:
        stale.unlink()


def test_snakemake_report(finished_run, tmp_path):
    out, *_ = finished_run
    report = tmp_path / "report.html"
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "workflow" / "Snakefile"),
               "--directory", str(out), "--configfile", str(out / "logs" / "run_config.yaml"), "--report", str(report)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert report.stat().st_size > 10_000


def test_fixed_and_replaced_files_labelled_again(small_images, run_config, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(small_images, images)
    out = tmp_path / "results"
    process = vlm_micro_run(images, out, run_config)
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 3, stderr[-3000:]
    good = sorted(images.glob("*.ome.tif"))
    # Fix the broken file as its error message advises (copy the image again), and replace a labelled one.
    shutil.copyfile(good[0], images / "broken.tif")
    shutil.copyfile(good[0], good[1])
    process = vlm_micro_run(images, out, run_config)
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]
    table = read_images_tsv(out).set_index("image_id")
    assert (table["status"] == "ok").all()
    # The replaced file had another size, so its status was written by a new labelling.
    replaced = read_status(out, good[1].name.split(".")[0])
    assert replaced["source"] == {"size": good[1].stat().st_size, "mtime_ns": good[1].stat().st_mtime_ns}
    assert read_status(out, "broken")["source"]["size"] == good[0].stat().st_size


def test_rerun_after_summarize_finishes_and_rewrites_summary(small_images, run_config, tmp_path):
    from vlm_micro.cli import main

    out = tmp_path / "results"
    process = vlm_micro_run(small_images, out, run_config)
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 3, stderr[-3000:]
    all_ids = sorted(read_images_tsv(out)["image_id"])
    # An unfinished run: one shard lost its manifest and its image, then the user summarised what was there.
    manifest = sorted((out / "shards").glob("*.manifest.json"))[0]
    undone = json.loads(manifest.read_text(encoding="utf-8"))["images"][0]["image_id"]
    manifest.unlink()
    (out / "status" / f"{undone}.json").unlink()
    assert main(["summarize", "--results", str(out)]) == 0
    process = vlm_micro_run(small_images, out, run_config)
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 3, stderr[-3000:]
    assert manifest.is_file()
    assert sorted(read_images_tsv(out)["image_id"]) == all_ids
    # A summary of part of the run is replaced by the run's own.
    assert main(["summarize", "--results", str(out), "--image-id", all_ids[0]]) == 0
    process = vlm_micro_run(small_images, out, run_config)
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 3, stderr[-3000:]
    assert "lists other images than this run" in stderr
    assert sorted(read_images_tsv(out)["image_id"]) == all_ids
