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
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import yaml

from vlm_micro.atomic import write_text
from vlm_micro.config import WORKFLOW_DIR
from vlm_micro.errors import OutputError, VlmMicroError

log = logging.getLogger(__name__)

LOCK_NAME = ".vlm-micro.lock"
RUN_CONFIG_NAME = "run_config.yaml"  # written below OUT/logs, passed to snakemake
WORKFLOW_ERROR_NAME = "workflow_error.txt"  # below OUT/logs, see record_workflow_error
SNAKEFILE = WORKFLOW_DIR / "Snakefile"
PROFILE_DIR = WORKFLOW_DIR / "profiles"
SNAKEMAKE_LOG_DIR = Path(".snakemake") / "log"  # below OUT, one *.snakemake.log per run
MAX_ERROR_LINE = 300  # characters of a snakemake log line quoted in an error message

# Signals that stop a run the way Ctrl-C does. SIGHUP arrives when the terminal or ssh
# session of the run closes. Windows has no SIGHUP.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@dataclass
class RunResult:
    """Outcome of a workflow run."""

    returncode: int  # exit status of snakemake
    n_images: int  # rows of images.tsv (0 when it was not written)
    n_failed: int  # rows with status failed
    index: Path  # OUT/index.html
    job_error: str = ""  # first error line of a failed job's log, when snakemake failed
    workflow_error: str = ""  # error of a workflow input function (no job ran), when snakemake failed
    snakemake_error: str = ""  # error line of snakemake's log, when snakemake failed and the two above are empty
    snakemake_log: Path | None = None  # snakemake's log file of this run, when one was written


class StoppedBySignal(KeyboardInterrupt):
    """Raised by :func:`run_workflow` after SIGTERM or SIGHUP stopped snakemake and its jobs.

    It derives from KeyboardInterrupt because the run stops as on Ctrl-C, and so that
    ``except Exception`` does not catch it. ``signum`` is the number of the signal.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# --------------------------------------------------------------------------- checks and lock


def check_writable(out: Path) -> None:
    """Create ``out`` if needed and check that a file can be written and removed there.

    Raises
    ------
    OutputError
        When the folder cannot be created or written (read-only, full disk, no permission).
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"results folder {out} is a file, not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"0" * 4096)
        finally:
            # A full disk fails the write after the file was created; remove it either way.
            with contextlib.suppress(FileNotFoundError):
                probe.unlink()
    except OSError as exc:
        raise OutputError(f"results folder {out} is not writable: {exc.strerror or exc}; choose another --out or fix its permissions") from exc


def _process_alive(pid: int, start: int | None = None) -> bool:
    """Return True when process ``pid`` runs and, if ``start`` is given, started at that time.

    ``start`` is the value of :func:`process_start` when the lock was written. A pid that
    the system gave to a new process after the run died has another start time.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields is None:
        return True  # without /proc (not Linux) only the pid can be checked
    # A killed snakemake whose parent died too stays a zombie until init reaps it, which
    # a container without an init process never does; a zombie runs nothing.
    if fields[0] == "Z":
        return False
    return start is None or int(fields[19]) == start


def process_start(pid: int) -> int | None:
    """Return the start time of ``pid`` in clock ticks since boot (Linux), None when unknown."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields is not None else None


def _proc_stat(pid: int) -> list[str] | None:
    """Return the fields of Linux's /proc/PID/stat after the command name, from the state on."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces, so split after the last one.
    # Field 3 of proc(5), the state, comes first, so field 22, the start time, is at index 19.
    return stat[stat.rfind(")") + 2:].split()


def descendant_pids(pid: int) -> list[int]:
    """Return the pids of the children of ``pid``, their children and so on, from Linux's /proc.

    Returns an empty list where /proc does not exist.
    """
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    children: dict[int, list[int]] = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        fields = _proc_stat(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))  # fields[1] is the parent pid
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _read_lock(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class RunLock:
    """The run lock file ``OUT/.vlm-micro.lock``: pid, host, start time and snakemake's pid.

    ``stale_holder`` is the content of a lock left by a run that died; its snakemake
    lock may still be in place and needs ``snakemake --unlock``.
    """

    def __init__(self, out: Path):
        self.path = out / LOCK_NAME
        self.info = {"pid": os.getpid(), "pid_start": process_start(os.getpid()), "host": socket.gethostname(),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.stale_holder: dict | None = None

    def acquire(self) -> None:
        """Create the lock file, replacing a stale one; raise OutputError when a live run holds it."""
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self.stale_holder = _check_existing_lock(self.path)
                continue
            except OSError as exc:
                raise OutputError(f"cannot create the run lock {self.path}: {exc.strerror}; check the results folder") from exc
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.info, handle)
            return
        raise OutputError(f"cannot take the run lock {self.path}; another run started at the same moment, try again")

    def record_child(self, pid: int) -> None:
        """Store the pid of the snakemake process, so a later run can tell whether it still runs."""
        self.info["child_pid"] = pid
        self.info["child_pid_start"] = process_start(pid)
        write_text(self.path, json.dumps(self.info))

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if _read_lock(self.path).get("pid") == self.info["pid"]:
                self.path.unlink()


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold the run lock of ``out`` for the duration of a run; yield the :class:`RunLock`.

    Raises
    ------
    OutputError
        When another live run holds the lock, or it was taken on another host.
    """
    lock = RunLock(out)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


def _check_existing_lock(path: Path) -> dict:
    """Remove a stale lock and return its content; raise OutputError when its run is alive or remote."""
    holder = _read_lock(path)
    pid, host = holder.get("pid"), holder.get("host")
    started = holder.get("started")
    if host and host != socket.gethostname():
        raise OutputError(
            f"results folder {path.parent} is used by a run on host {host} (pid {pid}, started {started}); "
            f"wait for it, or delete {path} if that run is gone"
        )
    for key in ("pid", "child_pid"):
        value, start = holder.get(key), holder.get(f"{key}_start")
        if isinstance(value, int) and _process_alive(value, start if isinstance(start, int) else None):
            raise OutputError(
                f"results folder {path.parent} is used by another vlm-micro run (pid {value}, started {started}); "
                "wait for it to finish or choose another --out"
            )
    log.warning("removing the stale run lock %s left by pid %s, which no longer runs (or its pid now belongs to "
                "another process)", path, pid)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return holder


# --------------------------------------------------------------------------- snakemake


# Settings files that snakemake 9 reads from a profile folder: profile.yaml or config.yaml,
# or a variant for snakemake N and later such as config.v8+.yaml (get_profile_dir in
# snakemake/cli.py).
_PROFILE_FILE = re.compile(r"(?:profile|config)(?:\.v(?P<min_major>\d+)\+)?\.yaml")


def profile_path(name: str | os.PathLike | None) -> Path | None:
    """Return the folder of a workflow profile given by name (default, slurm) or path.

    Raises
    ------
    VlmMicroError
        When no such profile exists, or the folder has no settings file for snakemake.
    """
    if not name:
        return None
    candidate = Path(name)
    if candidate.is_dir():
        folder = candidate.resolve()
        if not _has_profile_settings(folder):
            raise VlmMicroError(
                f"profile folder {folder} has no config.yaml; put the snakemake settings there "
                f"(copy {PROFILE_DIR / 'slurm' / 'config.yaml'} and adapt it) or pass --profile default or --profile slurm"
            )
        return folder
    bundled = PROFILE_DIR / name
    if bundled.is_dir():
        return bundled
    available = sorted(p.name for p in PROFILE_DIR.iterdir() if p.is_dir()) if PROFILE_DIR.is_dir() else []
    raise VlmMicroError(f"profile {name!r} not found; use a folder with config.yaml or one of: {', '.join(available)}")


def _has_profile_settings(folder: Path) -> bool:
    """Return True when ``folder`` contains a settings file that the installed snakemake reads."""
    try:
        names = [path.name for path in folder.iterdir() if path.is_file()]
    except OSError as exc:
        raise VlmMicroError(f"cannot read profile folder {folder}: {exc.strerror or exc}; check its permissions") from exc
    try:
        major = int(metadata.version("snakemake").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        major = None  # accept every versioned name, and snakemake checks it when the run starts
    for name in names:
        match = _PROFILE_FILE.fullmatch(name)
        if match and (major is None or int(match["min_major"] or 0) <= major):
            return True
    return False


def snakemake_command(config_file: Path, out: Path, cores: int | None, profile_folder: Path | None,
                      extra: list[str]) -> list[str]:
    """Return the argument list that runs the workflow on ``out``.

    ``profile_folder`` is the workflow profile folder that :func:`profile_path` returns, or None.
    """
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
    if profile_folder is not None:
        command += ["--workflow-profile", str(profile_folder)]
    command += ["--cores", str(cores) if cores else "all"]
    if not log.isEnabledFor(logging.INFO):
        # Without -v, leave out the inputs, outputs and resources that snakemake prints for
        # every job (a screen per shard). Progress, errors and the log hint stay. Arguments
        # after -- come later, so -- --quiet progress replaces this.
        command += ["--quiet", "rules", "host"]
    return command + list(extra)


def write_run_config(config: dict, out: Path) -> Path:
    """Write the effective configuration for snakemake below ``OUT/logs``; return its path."""
    path = out / "logs" / RUN_CONFIG_NAME
    text = "# Effective configuration of the last `vlm-micro run` on this folder.\n" + yaml.safe_dump(config, sort_keys=False)
    write_text(path, text)
    return path


def summary_lists_other_images(images_tsv: Path, image_ids: list[str]) -> bool:
    """Return True when an existing images.tsv does not list exactly ``image_ids``, in any order."""
    if not images_tsv.is_file():
        return False
    try:
        with open(images_tsv, newline="", encoding="utf-8") as handle:
            listed = [row.get("image_id") for row in csv.DictReader(handle, delimiter="\t")]
    except (OSError, UnicodeDecodeError, csv.Error):
        return True
    return sorted(listed) != sorted(image_ids)


def count_failed(images_tsv: Path) -> tuple[int, int]:
    """Return (rows, rows with status failed) of an images.tsv; (0, 0) when it is missing."""
    if not images_tsv.is_file():
        return 0, 0
    with open(images_tsv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return len(rows), sum(1 for row in rows if row.get("status") != "ok")


def _start(command: list[str], out: Path) -> subprocess.Popen:
    """Start snakemake with SIGINT at its default action, even where this process ignores it.

    A shell script that starts a command in the background (``vlm-micro run ... &``)
    makes it ignore SIGINT, and an ignored signal stays ignored across exec. Snakemake
    and its jobs would then ignore the SIGINT by which SIGTERM and SIGHUP stop them.
    A handled signal is reset to its default action by exec, so a handler set for the
    moment of the start gives snakemake the default.
    """
    ignored = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(command, cwd=out)
    except OSError as exc:
        raise VlmMicroError(f"cannot start snakemake with {sys.executable}: {exc.strerror}") from exc
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _wait(process: subprocess.Popen) -> int:
    """Wait for snakemake; on Ctrl-C wait again while it stops its jobs, then re-raise."""
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.wait()
        raise


class StopSignalForwarder:
    """Context manager that turns SIGTERM and SIGHUP to this process into a Ctrl-C of snakemake's process tree.

    On SIGTERM, snakemake 9 starts no new jobs but lets the running ones go on to the
    end. On SIGINT it cancels the run, but its local executor still waits for the
    running jobs. Ctrl-C in a terminal stops them because the terminal sends SIGINT to
    the whole process group, so the handler sends SIGINT to snakemake and to each of
    its descendants. The handlers are set on entry and the previous ones restored on
    exit. Python sets signal handlers only in the main thread, so elsewhere this does
    nothing. ``signum`` is the stop signal received, None until one arrives.
    """

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.signum: int | None = None
        self._interrupted: set[tuple[int, int | None]] = set()  # (pid, start time) already sent SIGINT
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignalForwarder:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        else:
            log.debug("not in the main thread, so SIGTERM and SIGHUP stop only this process, not snakemake")
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def attach(self, process: subprocess.Popen) -> None:
        """Forward later stop signals to ``process``, and stop it at once when one came while it started."""
        self.process = process
        if self.signum is not None:
            self.interrupt()

    def _handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
        if self.process is not None:
            self.interrupt()

    def interrupt(self) -> None:
        """Send SIGINT to snakemake and to each of its descendants that has not received it yet.

        A repeated stop signal therefore reaches only processes started since the last
        one, so snakemake's own cleanup after the first SIGINT is not interrupted.
        """
        if self.process is None or self.process.returncode is not None:
            return
        # NOTE: without /proc (macOS) only snakemake receives SIGINT, so its local jobs
        # run to their end before it exits.
        for pid in [self.process.pid, *descendant_pids(self.process.pid)]:
            key = (pid, process_start(pid))
            if key in self._interrupted:
                continue
            self._interrupted.add(key)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGINT)


def unlock_workdir(command: list[str], out: Path) -> None:
    """Remove the snakemake lock that a killed run left in ``OUT/.snakemake``."""
    locks = out / ".snakemake" / "locks"
    if not (locks.is_dir() and any(locks.iterdir())):
        return
    log.warning("removing the snakemake lock left by the killed run in %s", out)
    completed = subprocess.run([*command, "--unlock"], cwd=out, check=False, capture_output=True, text=True)
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no error output"])[-1]
        raise VlmMicroError(f"snakemake --unlock failed in {out}: {last_line}; remove {locks} by hand if no run uses {out}")


def first_job_error(out: Path, since: float) -> str:
    """Return the first ``vlm-micro ...: error:`` line of job logs written after ``since``, or ''."""
    logs = sorted((path for path in (out / "logs").rglob("*.log") if path.stat().st_mtime >= since), key=lambda p: p.stat().st_mtime)
    for path in logs:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("vlm-micro ") and ": error: " in line:
                    return line.strip()
    return ""


def workflow_error_path(out: str | os.PathLike) -> Path:
    """Return the file in which the workflow stores an error raised while it builds its jobs."""
    return Path(out) / "logs" / WORKFLOW_ERROR_NAME


def record_workflow_error(out: str | os.PathLike, message: str) -> None:
    """Store ``message`` for :func:`run_workflow`, which reports it as the cause of the failure.

    The workflow calls this before it raises an error in an input function. Snakemake
    prints such an error in the middle of its output and only exits with status 1, so
    without the file the user would see no cause in the final line. A file that cannot
    be written is skipped, because the error is raised either way.
    """
    path = workflow_error_path(out)
    try:
        write_text(path, message + "\n")
    except OSError as exc:
        log.warning("cannot store the workflow error in %s (%s); the error is raised anyway", path, exc)


def read_workflow_error(out: Path) -> str:
    """Return the error that the workflow stored with :func:`record_workflow_error`, or ''."""
    try:
        return workflow_error_path(out).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def snakemake_log_since(out: Path, since: float) -> Path | None:
    """Return the newest snakemake log file in ``OUT/.snakemake/log`` written at or after ``since``, or None."""
    newest, newest_mtime = None, since
    for path in (out / SNAKEMAKE_LOG_DIR).glob("*.snakemake.log"):
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        if mtime >= newest_mtime:
            newest, newest_mtime = path, mtime
    return newest


# Lines of snakemake's log that contain "failed" or "error" but never name a cause.
_GENERIC_SNAKEMAKE_LINES = (
    "At least one job did not complete successfully",
    "Exiting because a job execution failed",
    "For further error details see",
    "Removing output files of failed job",
    "Complete log(s):",
)
# The line before an exception message, such as "LockException:" or
# 'RuntimeError in file "/x/common.smk", line 100:'.
_EXCEPTION_HEADER = re.compile(r"\w*(?:Error|Exception)(?: in .*)?:")
# Error lines of command-line tools and snakemake ("sbatch: error: ...", "sinfo: fatal: ...").
_ERROR_WORDS = re.compile(r"\b(?:error|fatal):|\bfailed\b", re.IGNORECASE)


def first_snakemake_error(path: Path) -> str:
    """Return the line of a snakemake log that most likely names the cause of a failure, or ''.

    The most specific line wins. First comes the ``message:`` line of the first "Error
    in rule" block, which quotes sbatch's and sinfo's errors when a SLURM submission
    failed. Next is the message of the first exception that snakemake printed, and last
    the first other line with "error:", "fatal:" or "failed". Lines longer than
    MAX_ERROR_LINE are cut.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle]
    except OSError:
        return ""
    found: dict[int, str] = {}  # preference (0 best) -> first line of that kind
    in_job_error = False
    for index, line in enumerate(lines):
        if not line or line.startswith("["):  # a timestamp starts the next block
            in_job_error = False
        if line.startswith("Error in rule "):
            in_job_error = True
        elif line.startswith(_GENERIC_SNAKEMAKE_LINES):
            continue
        elif in_job_error and line.startswith("message:"):
            message = line.removeprefix("message:").strip()
            if message and message != "None":
                found.setdefault(0, message)
        elif _EXCEPTION_HEADER.fullmatch(line):
            message = _exception_message(lines, index + 1)
            if message:
                found.setdefault(1, message)
        elif _ERROR_WORDS.search(line):
            found.setdefault(2, line)
    if not found:
        return ""
    # The line ends up between semicolons of a one-line message, so a final full stop goes.
    line = found[min(found)].rstrip(".")
    return line if len(line) <= MAX_ERROR_LINE else line[:MAX_ERROR_LINE - 3] + "..."


def _exception_message(lines: list[str], start: int) -> str:
    """Return the message that follows an exception header at ``lines[start - 1]``, or '' for a generic one."""
    for line in lines[start:start + 5]:
        if _EXCEPTION_HEADER.fullmatch(line) or line.startswith("File "):
            continue  # a nested header ("RuleException:" then "RuntimeError in file ...:") or a traceback line
        return "" if line.startswith(_GENERIC_SNAKEMAKE_LINES) else line
    return ""


def run_workflow(config: dict, *, cores: int | None = None, profile: str | None = None, extra: list[str] | None = None,
                 image_ids: list[str] | None = None) -> RunResult:
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
    image_ids : list of str, optional
        The image ids of the run. When the results folder's images.tsv lists other
        images (written by ``vlm-micro summarize`` for part of a run, say), the summary
        is written again.

    Raises
    ------
    OutputError
        When the results folder is not writable or another run has locked it.
    VlmMicroError
        When the profile does not exist or has no config.yaml, checked before the
        results folder is created.
    StoppedBySignal
        When SIGTERM or SIGHUP stopped the run. Snakemake and its jobs have stopped
        and the run lock is released by then.
    """
    out = Path(config["out"])
    workflow_profile = profile_path(profile)
    check_writable(out)
    started = time.time()
    with run_lock(out) as lock:
        config_file = write_run_config(config, out)
        if image_ids is not None and summary_lists_other_images(out / "images.tsv", image_ids):
            # Snakemake judges the run tables by their age only, so tables that `vlm-micro
            # summarize` wrote for other images would count as up to date.
            log.warning("%s lists other images than this run; the run summary is written again", out / "images.tsv")
            extra = ["--forcerun", "summary", *(extra or [])]
        command = snakemake_command(config_file, out, cores, workflow_profile, extra or [])
        # An error stored by an earlier run must not be reported as the cause of this one.
        workflow_error_path(out).unlink(missing_ok=True)
        if lock.stale_holder is not None:
            unlock_workdir(command, out)
        log.info("running: %s", " ".join(command))
        with StopSignalForwarder() as stop:
            process = _start(command, out)
            stop.attach(process)
            lock.record_child(process.pid)
            returncode = _wait(process)
        if returncode < 0:
            # A signal sent to snakemake itself killed it before it removed its lock: SIGKILL,
            # or the SIGHUP that a closing terminal sends to its whole foreground process group.
            unlock_workdir(command, out)
        if stop.signum is not None:
            log.info("snakemake stopped after %s (exit status %d)", signal.Signals(stop.signum).name, returncode)
            raise StoppedBySignal(stop.signum)
    return _run_result(out, returncode, started)


def _run_result(out: Path, returncode: int, started: float) -> RunResult:
    """Collect the image counts and, for a failed run, the error lines that explain it."""
    n_images, n_failed = count_failed(out / "images.tsv")
    result = RunResult(returncode, n_images, n_failed, out / "index.html")
    if returncode == 0:
        return result
    result.job_error = first_job_error(out, started)
    result.workflow_error = read_workflow_error(out)
    result.snakemake_log = snakemake_log_since(out, started)
    if result.snakemake_log is not None and not (result.job_error or result.workflow_error):
        result.snakemake_error = first_snakemake_error(result.snakemake_log)
    return result
