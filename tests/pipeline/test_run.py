"""The workflow runner: results folder checks, run lock and the snakemake command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vlm_micro.errors import OutputError, VlmMicroError
from vlm_micro.pipeline.run import (
    LOCK_NAME,
    check_writable,
    count_failed,
    first_job_error,
    process_start,
    profile_path,
    read_workflow_error,
    record_workflow_error,
    run_lock,
    snakemake_command,
)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_writable_creates_folder(tmp_path):
    check_writable(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []


def test_unwritable_folder_rejected(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is not writable") as info:
        check_writable(blocker / "out")
    assert "\n" not in str(info.value)


def test_results_path_that_is_file_rejected(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_writable(blocker)


def test_lock_written_and_released(tmp_path):
    with run_lock(tmp_path) as lock:
        content = json.loads((tmp_path / LOCK_NAME).read_text())
        assert content["pid"] == os.getpid()
        lock.record_child(12345)
        assert json.loads((tmp_path / LOCK_NAME).read_text())["child_pid"] == 12345
    assert not (tmp_path / LOCK_NAME).exists()


def test_second_run_rejected(tmp_path):
    with run_lock(tmp_path):
        with pytest.raises(OutputError, match="used by another vlm-micro run"):
            with run_lock(tmp_path):
                pass
        assert (tmp_path / LOCK_NAME).exists()


def test_live_child_keeps_lock(tmp_path):
    holder = {"pid": dead_pid(), "child_pid": os.getpid(), "host": socket.gethostname()}
    (tmp_path / LOCK_NAME).write_text(json.dumps(holder))
    with pytest.raises(OutputError, match="used by another vlm-micro run"):
        with run_lock(tmp_path):
            pass


def test_stale_lock_replaced(tmp_path):
    holder = {"pid": dead_pid(), "host": socket.gethostname(), "started": "earlier"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(holder))
    with run_lock(tmp_path) as lock:
        assert lock.stale_holder["started"] == "earlier"
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from Linux's /proc")
def test_lock_of_reused_pid_replaced(tmp_path):
    """A lock whose pid now belongs to a process that started later is stale."""
    start = process_start(os.getpid())
    holder = {"pid": os.getpid(), "pid_start": start - 1, "host": socket.gethostname(), "started": "earlier"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(holder))
    with run_lock(tmp_path) as lock:
        assert lock.stale_holder["started"] == "earlier"
        content = json.loads((tmp_path / LOCK_NAME).read_text())
        assert content["pid_start"] == start


def test_lock_of_other_host_rejected(tmp_path):
    holder = {"pid": 1, "host": "other-node-17", "started": "earlier"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(holder))
    with pytest.raises(OutputError, match="run on host other-node-17"):
        with run_lock(tmp_path):
            pass


def test_command_is_argument_list(tmp_path):
    config_file = tmp_path / "my config; rm -rf x.yaml"
    command = snakemake_command(config_file, tmp_path, 2, "default", ["--dry-run"])
    assert command[:3] == [sys.executable, "-m", "snakemake"]
    assert command[command.index("--configfile") + 1] == str(config_file)
    assert command[command.index("--cores") + 1] == "2"
    assert command[-1] == "--dry-run"
    assert "--rerun-incomplete" in command


def test_unknown_profile_rejected():
    with pytest.raises(VlmMicroError, match="profile 'nope' not found; .*slurm"):
        profile_path("nope")


def test_bundled_profiles_found():
    assert (profile_path("slurm") / "config.yaml").is_file()
    assert (profile_path("default") / "config.yaml").is_file()


def test_count_failed(tmp_path):
    path = tmp_path / "images.tsv"
    assert count_failed(path) == (0, 0)
    path.write_text("image_id\tstatus\terror\na\tok\t\nb\tfailed\tb.tif: broken\n")
    assert count_failed(path) == (2, 1)


def test_first_job_error(tmp_path):
    logs = tmp_path / "logs" / "label"
    logs.mkdir(parents=True)
    (logs / "shard_0000.log").write_text("INFO x\nvlm-micro process-shard: error: model folder not found: /m\n")
    assert first_job_error(tmp_path, 0.0) == "vlm-micro process-shard: error: model folder not found: /m"


def test_workflow_error_stored_and_read(tmp_path):
    assert read_workflow_error(tmp_path) == ""
    record_workflow_error(tmp_path, "finetune.annotations not found: /a.csv; fix the path in the config")
    assert read_workflow_error(tmp_path) == "finetune.annotations not found: /a.csv; fix the path in the config"


def test_unwritable_workflow_error_skipped(tmp_path):
    (tmp_path / "logs").write_text("a file where the logs folder should be")
    record_workflow_error(tmp_path, "finetune.annotations not found: /a.csv")
    assert read_workflow_error(tmp_path) == ""


@pytest.mark.parametrize(("arguments", "message"), [
    (["run", "--cores", "0"], "argument --cores: 0 is less than 1; give 1 or more"),
    (["run", "--cores", "two"], "argument --cores: 'two' is not a whole number"),
    (["process-shard", "shard.json", "--manifest", "m.json", "--threads", "-1"],
     "argument --threads: -1 is less than 1"),
])
def test_core_counts_below_one_rejected(arguments, message, capsys):
    from vlm_micro.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("arguments", [
    ["run", "images", "--out", "results"],
    ["demo", "results"],
])
def test_word_before_separator_rejected(arguments, tmp_path, monkeypatch, capsys):
    from vlm_micro.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert f"vlm-micro {arguments[0]}: error: unexpected argument {arguments[1]!r}: give images with --images PATH" in err
    assert not (tmp_path / "results").exists()


def test_snakemake_args_after_separator_accepted():
    from vlm_micro.cli import build_parser, misplaced_snakemake_args

    argv = ["run", "--images", "a.tif", "b.tif", "--out", "x", "--", "--dry-run", "all"]
    args = build_parser().parse_args(argv)
    assert args.snakemake_args == ["--dry-run", "all"]
    assert misplaced_snakemake_args(args, argv) == ""
