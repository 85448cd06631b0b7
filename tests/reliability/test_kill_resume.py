"""A run killed with SIGKILL and started again ends with the tables of an uninterrupted run.

The runs label three synthetic images in shards of one image, so the workflow has
several labelling and reporting jobs and a kill lands between or inside them. The kill
goes to the whole process group: `vlm-micro run`, snakemake and every job. Images
labelled again after a kill must match the reference run exactly, which also checks
that labelling gives the same scores in another process.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from .conftest import assert_same_tables, finish_run, kill_group, start_run, wait_for, write_config

pytestmark = pytest.mark.slow

PHASE_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def resume_config(tmp_path_factory, tiny_model_dir) -> Path:
    return write_config(tmp_path_factory.mktemp("config") / "config.yaml", tiny_model_dir, workflow={"shard_size": 1})


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, synthetic_images, resume_config) -> Path:
    """An uninterrupted run of the same images and config."""
    out = tmp_path_factory.mktemp("reference") / "results"
    returncode, _, stderr = finish_run(start_run(synthetic_images, out, resume_config))
    assert returncode == 0, stderr[-3000:]
    return out


def first_file(folder: Path, pattern: str):
    """Return a predicate that is true once ``folder`` contains a file matching ``pattern``."""
    return lambda: folder.is_dir() and any(folder.glob(pattern))


def finished_outputs(out: Path) -> dict[str, int]:
    """Return the modification times (ns) of the status files and shard manifests in ``out``."""
    paths = [*out.glob("status/*.json"), *out.glob("shards/*.manifest.json")]
    return {str(path.relative_to(out)): path.stat().st_mtime_ns for path in paths}


def kill_when_file_appears(images: Path, out: Path, config: Path, folder: Path, pattern: str, description: str) -> tuple[str, dict]:
    """Start a run and SIGKILL its process group once ``folder/pattern`` appears.

    Returns the run's stderr and :func:`finished_outputs` as they were after the kill.
    """
    process = start_run(images, out, config)
    wait_for(first_file(folder, pattern), process, PHASE_TIMEOUT_S, description)
    kill_group(process)
    _, stderr = process.communicate()
    assert not (out / "index.html").exists(), f"the run finished before the kill at the {description}"
    return stderr, finished_outputs(out)


def assert_finished_work_kept(out: Path, finished_before: dict, phase: str) -> None:
    """Check that images and shards finished before a kill were not labelled again."""
    after = finished_outputs(out)
    redone = sorted(name for name, mtime in finished_before.items() if after.get(name) != mtime)
    assert redone == [], f"finished before the kill in {phase}, then redone"


def test_killed_twice_resumes_same_tables(tmp_path, synthetic_images, resume_config, reference_run):
    # Two kills hit one results folder: the first run dies in labelling, the rerun dies
    # in reporting, and a third run finishes. Chaining the kills saves one full run.
    out = tmp_path / "results"
    _, after_labelling_kill = kill_when_file_appears(
        synthetic_images, out, resume_config, out / "tables" / "tiles", "*.parquet", "first per-image tile table")

    stderr, after_reporting_kill = kill_when_file_appears(
        synthetic_images, out, resume_config, out / "reports", "*.html", "first report")
    assert "stale run lock" in stderr
    assert after_reporting_kill, "no image had finished labelling when its report appeared"
    assert_finished_work_kept(out, after_labelling_kill, "labelling")

    returncode, stdout, stderr = finish_run(start_run(synthetic_images, out, resume_config))
    assert returncode == 0, stderr[-3000:]
    assert stdout.strip() == str(out / "index.html")
    assert "stale run lock" in stderr
    assert_finished_work_kept(out, after_reporting_kill, "reporting")
    assert_same_tables(out, reference_run)
    assert len(list((out / "shards").glob("*.manifest.json"))) == 3
    for image_id in pd.read_csv(out / "images.tsv", sep="\t")["image_id"]:
        report = out / "reports" / f"{image_id}.html"
        assert report.read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert not (out / ".vlm-micro.lock").exists()
