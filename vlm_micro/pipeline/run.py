"""Run the Snakemake workflow on a results folder: checks, lock, subprocess, exit status.

The library never imports Snakemake: the workflow runs as ``python -m snakemake`` in a
subprocess started with an argument list (no shell), with the results folder as its
working directory and the effective configuration as its config file.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from vlm_micro.atomic import write_text
from vlm_micro.config import WORKFLOW_DIR
from vlm_micro.errors import OutputError, VlmMicroError

log = logging.getLogger(__name__)

LOCK_NAME = ".vlm-micro.lock"
RUN_CONFIG_NAME = "run_config.yaml"  # written below OUT/logs, passed to snakemake
SNAKEFILE = WORKFLOW_DIR / "Snakefile"
PROFILE_DIR = WORKFLOW_DIR / "profiles"


@dataclass
class RunResult:
    """Outcome of a workflow run."""

    returncode: int  # exit status of snakemake
    n_images: int  # rows of images.tsv (0 when it was not written)
    n_failed: int  # rows with status failed
    index: Path  # OUT/index.html


# --------------------------------------------------------------------------- checks and lock


def check_writable(out: Path) -> None:
    """Create ``out`` if needed and check that a file can be written and removed there.

    Raises
    ------
    OutputError
        When the folder cannot be created or written (read-only, full disk, no permission).
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"results folder {out} is not writable: {exc.strerror or exc}; choose another --out or fix its permissions") from exc


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_lock(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold ``OUT/.vlm-micro.lock`` (pid, host, start time) for the duration of a run.

    A lock left by a process that no longer runs on this host is stale and is replaced.

    Raises
    ------
    OutputError
        When another live run holds the lock, or it was taken on another host.
    """
    path = out / LOCK_NAME
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            _handle_existing_lock(path)
            continue
        except OSError as exc:
            raise OutputError(f"cannot create the run lock {path}: {exc.strerror}; check the results folder") from exc
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(info, handle)
        break
    else:
        raise OutputError(f"cannot take the run lock {path}; another run started at the same moment, try again")
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            if _read_lock(path).get("pid") == info["pid"]:
                path.unlink()


def _handle_existing_lock(path: Path) -> None:
    """Remove a stale lock, or raise OutputError when it belongs to a live or remote run."""
    holder = _read_lock(path)
    pid, host = holder.get("pid"), holder.get("host")
    if host and host != socket.gethostname():
        raise OutputError(
            f"results folder {path.parent} is used by a run on host {host} (pid {pid}, started {holder.get('started')}); "
            f"wait for it, or delete {path} if that run is gone"
        )
    if isinstance(pid, int) and _process_alive(pid):
        raise OutputError(
            f"results folder {path.parent} is used by another vlm-micro run (pid {pid}, started {holder.get('started')}); "
            "wait for it to finish or choose another --out"
        )
    log.warning("removing stale run lock %s left by pid %s", path, pid)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


# --------------------------------------------------------------------------- snakemake


def profile_path(name: str | None) -> Path | None:
    """Return the folder of a workflow profile given by name (default, slurm) or path."""
    if not name:
        return None
    candidate = Path(name)
    if candidate.is_dir():
        return candidate.resolve()
    bundled = PROFILE_DIR / name
    if bundled.is_dir():
        return bundled
    available = sorted(p.name for p in PROFILE_DIR.iterdir() if p.is_dir()) if PROFILE_DIR.is_dir() else []
    raise VlmMicroError(f"profile {name!r} not found; use a folder with config.yaml or one of: {', '.join(available)}")


def snakemake_command(config_file: Path, out: Path, cores: int | None, profile: str | None, extra: list[str]) -> list[str]:
    """Return the argument list that runs the workflow on ``out``."""
    if not SNAKEFILE.is_file():
        raise VlmMicroError(f"workflow not found: {SNAKEFILE}; vlm-micro needs its source tree (pip install -e . from a checkout)")
    command = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(SNAKEFILE),
        "--directory", str(out),
        "--configfile", str(config_file),
        "--rerun-incomplete",
        "--keep-going",
    ]
    workflow_profile = profile_path(profile)
    if workflow_profile is not None:
        command += ["--workflow-profile", str(workflow_profile)]
    command += ["--cores", str(cores) if cores else "all"]
    return command + list(extra)


def write_run_config(config: dict, out: Path) -> Path:
    """Write the effective configuration for snakemake below ``OUT/logs``; return its path."""
    path = out / "logs" / RUN_CONFIG_NAME
    text = "# Effective configuration of the last `vlm-micro run` on this folder.\n" + yaml.safe_dump(config, sort_keys=False)
    write_text(path, text)
    return path


def count_failed(images_tsv: Path) -> tuple[int, int]:
    """Return (rows, rows with status failed) of an images.tsv; (0, 0) when it is missing."""
    if not images_tsv.is_file():
        return 0, 0
    with open(images_tsv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return len(rows), sum(1 for row in rows if row.get("status") != "ok")


def run_workflow(config: dict, *, cores: int | None = None, profile: str | None = None, extra: list[str] | None = None) -> RunResult:
    """Run the workflow for a validated config whose paths are absolute.

    Parameters
    ----------
    config : dict
        Output of :func:`vlm_micro.config.load_config` with ``base_dir`` set.
    cores : int, optional
        ``--cores`` of snakemake; all cores when omitted.
    profile : str, optional
        Workflow profile name (``default``, ``slurm``) or folder.
    extra : list of str, optional
        Further snakemake arguments, passed unchanged.

    Raises
    ------
    OutputError
        When the results folder is not writable or another run holds it.
    """
    out = Path(config["out"])
    check_writable(out)
    with run_lock(out):
        config_file = write_run_config(config, out)
        command = snakemake_command(config_file, out, cores, profile, extra or [])
        log.info("running: %s", " ".join(command))
        try:
            completed = subprocess.run(command, cwd=out, check=False)
        except OSError as exc:
            raise VlmMicroError(f"cannot start snakemake with {sys.executable}: {exc.strerror}") from exc
    n_images, n_failed = count_failed(out / "images.tsv")
    return RunResult(completed.returncode, n_images, n_failed, out / "index.html")
