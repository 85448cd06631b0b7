"""Environment faults give a clear one-line error before work is lost.

A read-only or full file system is made with a small tmpfs mount, which needs root
(CAP_SYS_ADMIN). Without it, the read-only case falls back to folder permissions, and
the full-disk cases are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from vlm_micro.cli import main
from vlm_micro.errors import OutputError
from vlm_micro.pipeline.outputs import write_parquet

from .conftest import finish_run, start_run, write_config


@contextlib.contextmanager
def tmpfs(folder: Path, size: str, read_only: bool = False):
    """Mount a tmpfs of ``size`` on ``folder`` for the duration of the block."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    completed = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                               capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({completed.stderr.strip() or 'mount failed'}); needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_disk(folder: Path, leave_bytes: int = 0) -> None:
    """Write into ``folder`` until its file system has at most ``leave_bytes`` free."""
    with open(folder / "filler", "wb") as handle:
        while True:
            free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
            chunk = min(4096, max(free - leave_bytes, 0))
            if chunk == 0:
                break
            try:
                handle.write(b"\0" * chunk)
                handle.flush()
            except OSError:
                break


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", np.full((32, 32), 100, np.uint8))
    return folder


@pytest.fixture
def config(tmp_path, tiny_model_dir) -> Path:
    return write_config(tmp_path / "config.yaml", tiny_model_dir)


def run_cli(capsys, images: Path, out: Path, config: Path) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["run", "--images", str(images), "--out", str(out), "--config", str(config)])
    return status, capsys.readouterr().err


def assert_one_error_line(stderr: str, *phrases: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("vlm-micro run: error: ")
    for phrase in phrases:
        assert phrase in lines[0]


def test_read_only_results_parent(capsys, tmp_path, images, config):
    mount_point = tmp_path / "read-only"
    out = mount_point / "results"
    if os.geteuid() == 0:
        context = tmpfs(mount_point, "1m", read_only=True)
        reason = "Read-only file system"
    else:
        mount_point.mkdir()
        mount_point.chmod(0o555)
        context = contextlib.nullcontext()
        reason = "Permission denied"
    with context:
        status, stderr = run_cli(capsys, images, out, config)
    assert status == 1
    assert_one_error_line(stderr, str(out), "is not writable", reason, "choose another --out")


def test_read_only_existing_results(capsys, tmp_path, images, config):
    out = tmp_path / "results"
    if os.geteuid() != 0:
        pytest.skip("a read-only mount needs root; the permission case is covered by test_read_only_results_parent")
    with tmpfs(out, "1m", read_only=True):
        status, stderr = run_cli(capsys, images, out, config)
    assert status == 1
    assert_one_error_line(stderr, str(out), "Read-only file system")


def test_full_disk_before_start(capsys, tmp_path, images, config):
    out = tmp_path / "full"
    with tmpfs(out, "64k"):
        fill_disk(out)
        status, stderr = run_cli(capsys, images, out, config)
        assert sorted(p.name for p in out.iterdir()) == ["filler"], "the failed start left files behind"
    assert status == 1
    assert_one_error_line(stderr, str(out), "No space left on device")


def test_disk_full_while_writing_keeps_old_table(tmp_path):
    folder = tmp_path / "full"
    old = pd.DataFrame({"tile_id": [0, 1], "cell_type": ["tumor", "lymphocyte"]})
    new = pd.DataFrame({"tile_id": np.arange(20000), "score": np.random.default_rng(0).random(20000)})
    with tmpfs(folder, "128k"):
        target = folder / "tables" / "tiles" / "a.parquet"
        write_parquet(target, old)
        fill_disk(folder, leave_bytes=8192)
        with pytest.raises(OutputError) as excinfo:
            write_parquet(target, new)
        leftovers = sorted(p.name for p in target.parent.iterdir())
        kept_table = pd.read_parquet(target)
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(target) in message
    assert "No space left on device" in message
    assert leftovers == ["a.parquet"], "a temporary file was left behind"
    pd.testing.assert_frame_equal(kept_table, old)


@pytest.mark.slow
def test_cuda_request_without_gpu_fails_clearly(tmp_path, images, tiny_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device, so a cuda request is valid")
    config = write_config(tmp_path / "config.yaml", tiny_model_dir, model={"device": "cuda"})
    out = tmp_path / "results"
    returncode, stdout, stderr = finish_run(start_run(images, out, config), timeout=600)
    assert returncode == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("vlm-micro run: error: the workflow failed")
    assert "model device 'cuda' requested but torch.cuda.is_available() is False" in last
    assert "use device 'auto' or 'cpu'" in last
    tiles = out / "tables" / "tiles"
    assert not tiles.exists() or not any(tiles.glob("*.parquet"))
    assert not (out / "images.tsv").exists()


def test_closed_output_pipe_exits_without_traceback(monkeypatch, capfd):
    """`vlm-micro search ... | head` closes the pipe early: exit 1, no BrokenPipeError traceback."""
    import argparse

    from vlm_micro import cli

    def write_to_closed_pipe(args):
        raise BrokenPipeError(32, "Broken pipe")

    parser = argparse.ArgumentParser(prog="vlm-micro")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_subparsers(dest="command").add_parser("flood").set_defaults(func=write_to_closed_pipe)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main(["flood"]) == 1
    assert "Traceback" not in capfd.readouterr().err
