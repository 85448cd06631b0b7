"""Fixtures: a results folder with fabricated pipeline output, reported once per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fabricate import fabricate_run  # noqa: E402  (test helper module beside this file)


@pytest.fixture(scope="session")
def reported_run(tmp_path_factory):
    """Return (results folder, status records, per-image output paths, run output paths)."""
    from vlm_micro.reporting import write_image_report, write_run_summary

    out = tmp_path_factory.mktemp("run") / "results"
    statuses = fabricate_run(out)
    config = {"report": {"csv": True, "gallery_per_class": 2, "top_anomalies": 4}}
    image_paths = {image_id: write_image_report(out, image_id, config) for image_id in statuses}
    run_paths = write_run_summary(out, config)
    return out, statuses, image_paths, run_paths
