"""The workflow runner: results folder checks, run lock and the snakemake command line."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vlm_micro.errors import OutputError, VlmMicroError
from vlm_micro.pipeline.run import (
    LOCK_NAME,
    MAX_ERROR_LINE,
    check_writable,
    count_failed,
    first_job_error,
    first_snakemake_error,
    process_start,
    profile_path,
    read_workflow_error,
    record_workflow_error,
    run_lock,
    run_workflow,
    snakemake_command,
    snakemake_log_since,
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
    command = snakemake_command(config_file, tmp_path, 2, profile_path("default"), ["--dry-run"])
    assert command[:3] == [sys.executable, "-m", "snakemake"]
    assert command[command.index("--configfile") + 1] == str(config_file)
    assert command[command.index("--cores") + 1] == "2"
    assert command[-1] == "--dry-run"
    assert "--rerun-incomplete" in command


def test_unknown_profile_rejected():
    with pytest.raises(VlmMicroError, match="profile 'nope' not found; .*slurm"):
        profile_path("nope")


def test_profile_folder_without_config_rejected(tmp_path):
    (tmp_path / "notes.txt").write_text("not a profile")
    expected = f"profile folder {re.escape(str(tmp_path.resolve()))} has no config.yaml; .*profiles/slurm/config.yaml"
    with pytest.raises(VlmMicroError, match=expected) as info:
        profile_path(str(tmp_path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["config.yaml", "profile.yaml", "config.v8+.yaml"])
def test_profile_folder_settings_names_accepted(tmp_path, name):
    (tmp_path / name).write_text("cores: 1\n")
    assert profile_path(str(tmp_path)) == tmp_path.resolve()


def test_profile_for_newer_snakemake_rejected(tmp_path):
    (tmp_path / "config.v99+.yaml").write_text("cores: 1\n")
    with pytest.raises(VlmMicroError, match="has no config.yaml"):
        profile_path(str(tmp_path))


def test_profile_checked_before_out_created(tmp_path):
    profile = tmp_path / "my-profile"
    profile.mkdir()
    out = tmp_path / "results"
    with pytest.raises(VlmMicroError, match="has no config.yaml"):
        run_workflow({"out": str(out)}, profile=str(profile))
    assert not out.exists()


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


SBATCH_FAILURE_LOG = """\
Select jobs to execute...
No account was given, not able to get a SLURM account via sacct: sacct: fatal: Could not establish a configuration source

Unable to guess SLURM account. Trying to proceed without.
[Sat Dec  5 01:30:36 2026]
Error in rule label_shard:
    message: SLURM sbatch failed. The error message was 'sbatch: error: Batch job submission failed: Invalid account'.
    sbatch call:
        sbatch --parsable --job-name 1b50 -p debug --wrap="python -m snakemake --nolock"
For further error details see the cluster/cloud log and the log files of the involved rule(s).
    jobid: 6
    log: /out/logs/label/shard_0002.log (check log file(s) for error details)
Exiting because a job execution failed. Look above for error messages
WorkflowError:
At least one job did not complete successfully.
"""

KILLED_JOB_LOG = """\
Select jobs to execute...
RuleException:
RuntimeError in file "/repo/workflow/rules/common.smk", line 100:
vlm-micro process-shard failed with exit status -9; see /out/logs/label/shard_0002.log
  File "/repo/workflow/rules/label.smk", line 72, in __rule_label_shard
[Sat Dec  5 01:31:33 2026]
Error in rule label_shard:
    message: None
    jobid: 6
Removing output files of failed job label_shard since they might be corrupted:
Exiting because a job execution failed. Look above for error messages
WorkflowError:
At least one job did not complete successfully.
"""

LOCKED_LOG = """\
Building DAG of jobs...
LockException:
Error: Directory cannot be locked. Please make sure that no other Snakemake process is trying to create the same files.
/out
"""


@pytest.mark.parametrize(("text", "expected"), [
    (SBATCH_FAILURE_LOG, "SLURM sbatch failed. The error message was 'sbatch: error: Batch job submission failed: Invalid account'"),
    (KILLED_JOB_LOG, "vlm-micro process-shard failed with exit status -9; see /out/logs/label/shard_0002.log"),
    (LOCKED_LOG, "Error: Directory cannot be locked. Please make sure that no other Snakemake process is trying to create the same files"),
    ("Building DAG of jobs...\nsinfo: fatal: Could not establish a configuration source\n",
     "sinfo: fatal: Could not establish a configuration source"),
    ("Exiting because a job execution failed. Look above for error messages\nWorkflowError:\n"
     "At least one job did not complete successfully.\n", ""),
], ids=["sbatch", "killed-job", "locked", "tool-error", "generic-only"])
def test_snakemake_log_error_line(tmp_path, text, expected):
    path = tmp_path / "2026-12-05T013036.snakemake.log"
    path.write_text(text)
    assert first_snakemake_error(path) == expected


def test_snakemake_log_long_line_cut(tmp_path):
    path = tmp_path / "run.snakemake.log"
    path.write_text("sbatch: error: " + "x" * 1000 + "\n")
    line = first_snakemake_error(path)
    assert len(line) == MAX_ERROR_LINE
    assert line.startswith("sbatch: error: xxx")
    assert line.endswith("...")


def test_snakemake_log_missing_file(tmp_path):
    assert first_snakemake_error(tmp_path / "gone.snakemake.log") == ""


def test_snakemake_log_of_this_run_chosen(tmp_path):
    assert snakemake_log_since(tmp_path, 0.0) is None
    folder = tmp_path / ".snakemake" / "log"
    folder.mkdir(parents=True)
    earlier, current = folder / "a.snakemake.log", folder / "b.snakemake.log"
    earlier.write_text("x")
    current.write_text("x")
    os.utime(earlier, (1000.0, 1000.0))
    os.utime(current, (2000.0, 2000.0))
    assert snakemake_log_since(tmp_path, 1500.0) == current
    assert snakemake_log_since(tmp_path, 2500.0) is None


def test_failure_message_quotes_snakemake_log(tmp_path):
    from vlm_micro.pipeline.cli import _raise_workflow_failure
    from vlm_micro.pipeline.run import _run_result

    log_path = tmp_path / ".snakemake" / "log" / "2026-12-05T013036.snakemake.log"
    log_path.parent.mkdir(parents=True)
    log_path.write_text(SBATCH_FAILURE_LOG)
    (tmp_path / "logs" / "label").mkdir(parents=True)
    (tmp_path / "logs" / "label" / "shard_0000.log").write_text("")  # sbatch failed, so the job wrote nothing
    result = _run_result(tmp_path, 1, 0.0)
    with pytest.raises(VlmMicroError) as info:
        _raise_workflow_failure(result, tmp_path)
    message = str(info.value)
    assert message.startswith("the workflow failed (snakemake exit status 1); snakemake: SLURM sbatch failed.")
    assert message.endswith(f"; see the messages above and snakemake's log {log_path}")
    assert "\n" not in message


def test_job_error_preferred_over_snakemake_log(tmp_path):
    from vlm_micro.pipeline.run import _run_result

    log_path = tmp_path / ".snakemake" / "log" / "x.snakemake.log"
    log_path.parent.mkdir(parents=True)
    log_path.write_text(KILLED_JOB_LOG)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "summary.log").write_text("vlm-micro summarize: error: cannot write x; check free space\n")
    result = _run_result(tmp_path, 1, 0.0)
    assert result.job_error == "vlm-micro summarize: error: cannot write x; check free space"
    assert result.snakemake_error == ""


def test_images_and_sample_sheet_exclusive(tmp_path, monkeypatch, capsys):
    from vlm_micro.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--images", "a.tif", "--sample-sheet", "sheet.tsv", "--out", "results"])
    assert exit_info.value.code == 2
    assert "argument --sample-sheet: not allowed with argument --images" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
