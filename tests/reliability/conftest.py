"""Fixtures of the reliability tests: a tiny model, small synthetic images, run helpers.

The run-level tests start real ``vlm-micro run`` processes. Each is started in its own
session (process group), so a test can SIGKILL the run with every snakemake job it
started, as a cluster scheduler that preempts a job would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_model import write_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[2]
LABELS = REPO_ROOT / "config" / "labels.yaml"
SYNTH_SEED = 11

# images.tsv columns that hold timings and so differ between runs.
TIMING_COLUMNS = ("elapsed_s",)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny", "tiny-reliability")


@pytest.fixture(scope="session")
def synthetic_images(tmp_path_factory) -> Path:
    """Folder with three 128 px synthetic OME-TIFF images (fluorescence and brightfield)."""
    from vlm_micro.synth import generate_dataset

    dataset = tmp_path_factory.mktemp("synth")
    generate_dataset(dataset, 3, SYNTH_SEED, modality="mixed", size_px=128)
    folder = tmp_path_factory.mktemp("images")
    for path in sorted((dataset / "images").glob("*.ome.tif")):
        shutil.copyfile(path, folder / path.name)
    return folder


def write_config(path: Path, model_dir: Path, **sections) -> Path:
    """Write a run config for the tiny model, without PDF pages, updated by ``sections``."""
    values = {
        "labels": str(LABELS),
        "model": {"spec": f"local-dir:{model_dir}", "device": "cpu"},
        "labeling": {"text_cache": None},
        "report": {"pdf": False},
        "workflow": {"threads": 1},
    }
    for name, section in sections.items():
        if isinstance(section, dict) and isinstance(values.get(name), dict):
            values[name] = {**values[name], **section}
        else:
            values[name] = section
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def run_command(images: Path, out: Path, config: Path, cores: int = 2) -> list[str]:
    return [sys.executable, "-m", "vlm_micro", "run", "--images", str(images), "--out", str(out),
            "--config", str(config), "--cores", str(cores)]


def start_run(images: Path, out: Path, config: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``vlm-micro run`` in a new session; stdout and stderr are captured."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(run_command(images, out, config), cwd=cwd or REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def finish_run(process: subprocess.Popen, timeout: float = 900) -> tuple[int, str, str]:
    """Wait for a run; kill its process group when it exceeds ``timeout`` seconds."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        stdout, stderr = process.communicate()
        pytest.fail(f"vlm-micro run did not finish within {timeout} s: {stderr[-3000:]}")
    return process.returncode, stdout, stderr


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the run and every process of its session."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for(predicate, process: subprocess.Popen, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until it is true; fail when the run ends first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"the run ended (exit status {process.returncode}) before {what}: {stderr[-3000:]}")
        if time.monotonic() > deadline:
            kill_group(process)
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.05)


def read_images_tsv(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "images.tsv", sep="\t", keep_default_na=False, dtype=str)


def assert_same_tables(actual: Path, expected: Path) -> None:
    """Compare every run table of two results folders: labels, scores and summaries."""
    expected_tiles = sorted(p.name for p in (expected / "tables" / "tiles").glob("*.parquet"))
    assert sorted(p.name for p in (actual / "tables" / "tiles").glob("*.parquet")) == expected_tiles
    for name in expected_tiles:
        pd.testing.assert_frame_equal(pd.read_parquet(actual / "tables" / "tiles" / name),
                                      pd.read_parquet(expected / "tables" / "tiles" / name), check_exact=True)
    for name in sorted(p.name for p in (expected / "tables" / "cells").glob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(actual / "tables" / "cells" / name),
                                      pd.read_parquet(expected / "tables" / "cells" / name), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(actual / "tables" / "tiles.parquet"),
                                  pd.read_parquet(expected / "tables" / "tiles.parquet"), check_exact=True)
    pd.testing.assert_frame_equal(read_images_tsv(actual).drop(columns=list(TIMING_COLUMNS)),
                                  read_images_tsv(expected).drop(columns=list(TIMING_COLUMNS)))
    assert (actual / "conditions.tsv").read_text(encoding="utf-8") == (expected / "conditions.tsv").read_text(encoding="utf-8")
