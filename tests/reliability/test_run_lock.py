"""The run lock of a results folder: live runs block, dead and zombie runs do not."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlm_micro.errors import OutputError
from vlm_micro.pipeline.run import LOCK_NAME, RunLock

# Above Linux's largest pid_max (2**22), so no process has it.
DEAD_PID = 2**22 + 1


def process_state(pid: int) -> str:
    """Return the state letter of ``pid`` from /proc (R, S, Z, ...)."""
    return Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]


def write_lock(out, **holder) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "started": "earlier", **holder}), encoding="utf-8")


def test_lock_live_holder_rejected(tmp_path):
    write_lock(tmp_path, pid=os.getpid())
    with pytest.raises(OutputError) as excinfo:
        RunLock(tmp_path).acquire()
    assert f"is used by another vlm-micro run (pid {os.getpid()}" in str(excinfo.value)


def test_lock_live_child_rejected(tmp_path):
    # The vlm-micro process died but its snakemake still runs.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_lock(tmp_path, pid=DEAD_PID, child_pid=child.pid)
        with pytest.raises(OutputError) as excinfo:
            RunLock(tmp_path).acquire()
    finally:
        child.kill()
        child.wait()
    assert f"pid {child.pid}" in str(excinfo.value)


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="zombie detection reads Linux's /proc")
def test_lock_zombie_holder_stale(tmp_path):
    # A killed run's processes stay zombies until reaped; they run nothing.
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while process_state(zombie.pid) != "Z":
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.05)
    try:
        write_lock(tmp_path, pid=zombie.pid, child_pid=zombie.pid)
        lock = RunLock(tmp_path)
        lock.acquire()
        assert lock.stale_holder["pid"] == zombie.pid
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        lock.release()
    finally:
        zombie.wait()
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_other_host_rejected(tmp_path):
    write_lock(tmp_path, pid=1, host="another-node")
    with pytest.raises(OutputError) as excinfo:
        RunLock(tmp_path).acquire()
    assert "is used by a run on host another-node" in str(excinfo.value)
    assert str(tmp_path / LOCK_NAME) in str(excinfo.value)
