"""SIGTERM and SIGHUP stop `vlm-micro run` like Ctrl-C: snakemake and its jobs stop, the lock goes.

The fast tests run the signal forwarder on a small tree of Python processes. The slow
test stops a real workflow run while its labelling jobs run, then runs it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from vlm_micro.pipeline.run import (
    LOCK_NAME,
    StopSignalForwarder,
    StoppedBySignal,
    _process_alive,
    _start,
    descendant_pids,
    process_start,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the jobs are found through Linux's /proc")

REPO_ROOT = Path(__file__).resolve().parents[2]

# A parent that starts a sleeping child, prints the child's pid once the child runs, and
# on Ctrl-C waits for the child and exits with 130. Without SIGINT the child sleeps 60 s.
PARENT_SCRIPT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdout.write('x'); sys.stdout.flush(); time.sleep(60)"],
                         stdout=subprocess.PIPE)
child.stdout.read(1)
try:
    # Printed inside the try block, so that a SIGINT sent as soon as the pid is read
    # cannot arrive before the handler is in place.
    print(child.pid, flush=True)
    child.wait()
except KeyboardInterrupt:
    child.wait()
    sys.exit(130)
"""


def start_process_tree() -> tuple[subprocess.Popen, int]:
    """Start PARENT_SCRIPT; return the parent and the pid of its running child."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT_SCRIPT], stdout=subprocess.PIPE, text=True)
    return parent, int(parent.stdout.readline())


def test_sigterm_interrupts_process_tree():
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    parent, child_pid = start_process_tree()
    child_start = process_start(child_pid)
    try:
        with StopSignalForwarder() as stop:
            stop.attach(parent)
            # Guard: the signal would end the test process if the handler were missing.
            assert signal.getsignal(signal.SIGTERM) == stop._handle
            os.kill(os.getpid(), signal.SIGTERM)
            returncode = parent.wait(timeout=20)
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()
    assert stop.signum == signal.SIGTERM
    assert returncode == 130
    assert not _process_alive(child_pid, child_start)
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_signal_before_start_interrupts_at_attach():
    parent, child_pid = start_process_tree()
    try:
        with StopSignalForwarder() as stop:
            assert signal.getsignal(signal.SIGHUP) == stop._handle
            os.kill(os.getpid(), signal.SIGHUP)
            assert stop.signum == signal.SIGHUP
            stop.attach(parent)
            returncode = parent.wait(timeout=20)
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()
    assert returncode == 130


def test_forwarder_outside_main_thread_sets_no_handler():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def enter_forwarder():
        with StopSignalForwarder():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=enter_forwarder)
    thread.start()
    thread.join()
    assert seen == [before]


def test_snakemake_gets_sigint_when_ignored(tmp_path, capfd):
    # A background job of a shell script starts with SIGINT ignored. Snakemake must not
    # inherit that, or the SIGINT that SIGTERM and SIGHUP turn into would do nothing.
    probe = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = _start(probe, tmp_path)
        child.wait(timeout=30)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capfd.readouterr().out.strip() == "False"


def test_stopped_by_signal_exit_status(monkeypatch, capsys):
    from vlm_micro import cli
    from vlm_micro.pipeline import cli as pipeline_cli

    def stopped_run(args):
        raise StoppedBySignal(signal.SIGTERM)

    monkeypatch.setattr(pipeline_cli, "handle_run", stopped_run)
    assert cli.main(["run", "--out", "results"]) == 143
    assert capsys.readouterr().err == "vlm-micro run: stopped by SIGTERM\n"


# --------------------------------------------------------------------------- real run


def start_run(images: Path, out: Path, config: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "vlm_micro", "run", "--images", str(images), "--out", str(out),
               "--config", str(config), "--cores", "2"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_for_labelling_job(process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before a labelling job started"
        if any("process-shard" in command_line(pid) for pid in descendant_pids(process.pid)):
            return
        time.sleep(0.1)
    pytest.fail(f"no labelling job started within {timeout_s} s")


@pytest.mark.slow
def test_sigterm_stops_run_and_resumes(tmp_path, small_images, tiny_model_dir):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "labels": str(REPO_ROOT / "config" / "labels.yaml"),
        "model": {"spec": f"local-dir:{tiny_model_dir}", "device": "cpu"},
        "labeling": {"text_cache": None},
        "report": {"pdf": False},
        "workflow": {"shard_size": 1, "threads": 1},
    }))
    out = tmp_path / "results"
    process = start_run(small_images, out, config)
    wait_for_labelling_job(process, timeout_s=60)
    lock = json.loads((out / LOCK_NAME).read_text())
    started = {pid: process_start(pid) for pid in descendant_pids(process.pid)}
    assert lock["child_pid"] in started

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 143, stderr[-3000:]
    assert stderr.rstrip().splitlines()[-1] == "vlm-micro run: stopped by SIGTERM"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_process_alive(pid, start) for pid, start in started.items()):
        time.sleep(0.1)
    alive = [command_line(pid) for pid, start in started.items() if _process_alive(pid, start)]
    assert alive == []
    assert not (out / LOCK_NAME).exists()
    assert not (out / "index.html").exists(), "the run finished before SIGTERM arrived"

    rerun = start_run(small_images, out, config)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 3, stderr[-3000:]  # small_images has one broken file
    assert (out / "index.html").is_file()
