"""Every file of the hostile-input corpus reads, or fails with a one-line ImageReadError.

Besides the expected outcome, each case is checked for bounded time and memory: a file
that claims a huge size must fail fast or read lazily, and a named pipe must not block.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from vlm_micro.errors import ImageReadError
from vlm_micro.io import inspect_image, open_views

from .corpus import CASES, SHELL_NAME, Fails, Reads, build_case

MAX_SECONDS = 30.0  # per file, on a loaded 2-core machine
MAX_TRACED_MB = 200  # peak Python and NumPy allocations while reading one file
READ_SIDE_PX = 512  # largest region read from a view, so a lazy reader stays lazy


def read_everything(path: Path) -> dict:
    """Inspect and open ``path`` and read the first and last views; return what was seen.

    Returns ``{"error": message}`` for an ImageReadError, else the shape, view count,
    pixel size and whether the first view is black.
    """
    try:
        info = inspect_image(path)
        views = open_views(path)
        first_black = None
        # The first views and the last one: enough to find a plane that cannot be read.
        for index, view in enumerate(views[:3] + views[3:][-1:]):
            rows, cols = view.shape
            region = view.read_region(0, 0, min(rows, READ_SIDE_PX), min(cols, READ_SIDE_PX))
            assert region.dtype == np.uint8
            assert region.shape == (min(rows, READ_SIDE_PX), min(cols, READ_SIDE_PX), 3)
            if index == 0:
                first_black = not region.any()
                thumbnail = view.thumbnail(64)
                assert thumbnail.dtype == np.uint8
        return {"info": info, "shape": views[0].shape, "n_views": len(views),
                "pixel_size_um": views[0].pixel_size_um, "black": first_black}
    except ImageReadError as exc:
        return {"error": str(exc)}


def read_with_timeout(path: Path, timeout: float = MAX_SECONDS) -> dict:
    """Run :func:`read_everything` in a thread; fail the test when it blocks."""
    result: dict = {}

    def target():
        try:
            result.update(read_everything(path))
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            result["unexpected"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"reading {path.name!r} did not finish within {timeout} s"
    if "unexpected" in result:
        raise result["unexpected"]
    return result


def names_file(message: str, path: Path) -> bool:
    return str(path) in message or repr(str(path)) in message


def check_outcome(result: dict, expect, path: Path) -> None:
    if isinstance(expect, Fails):
        assert "error" in result, f"expected an ImageReadError for {path.name!r}, got {result}"
        message = result["error"]
        assert "\n" not in message
        assert names_file(message, path), message
        for phrase in expect.phrases:
            assert phrase in message
        return
    assert "error" not in result, result.get("error")
    if expect.shape is not None:
        assert result["shape"] == expect.shape
    if expect.n_views is not None:
        assert result["n_views"] == expect.n_views
    if expect.pixel_size_um != "any":
        assert result["pixel_size_um"] == expect.pixel_size_um
    if expect.all_black:
        assert result["black"]


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    return folder


def test_corpus_has_25_cases():
    assert len(CASES) >= 25
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[repr(case.name)[1:-1] for case in CASES])
def test_corpus_case_outcome(case, corpus_dir, monkeypatch):
    monkeypatch.chdir(corpus_dir)
    path = build_case(case, corpus_dir)
    tracemalloc.start()
    start = time.monotonic()
    try:
        result = read_with_timeout(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - start < MAX_SECONDS
    assert peak < MAX_TRACED_MB * 2**20, f"reading {case.name!r} allocated {peak / 2**20:.0f} MB"
    check_outcome(result, case.expect, path)
    assert not (corpus_dir / "pwned").exists()


def test_corpus_shell_name_runs_nothing(corpus_dir, monkeypatch):
    monkeypatch.chdir(corpus_dir)
    path = corpus_dir / SHELL_NAME
    tifffile.imwrite(path, np.full((16, 16), 50, np.uint8))
    views = open_views(path)
    assert views[0].shape == (16, 16)
    assert inspect_image(path)["shape"]
    assert sorted(p.name for p in corpus_dir.iterdir()) == [SHELL_NAME]


def _read_as_nobody(path: Path) -> dict:
    """Read ``path`` in a forked child running as the unprivileged user 65534 (``nobody``); return its result."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        status = 0
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            payload = pickle.dumps(read_everything(path))
        except BaseException as exc:  # noqa: BLE001 - the parent reports it
            payload = pickle.dumps({"unexpected": f"{type(exc).__name__}: {exc}"})
            status = 1
        with os.fdopen(write_end, "wb") as handle:
            handle.write(payload)
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as handle:
        data = handle.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)


def test_corpus_unreadable_permission():
    # Root reads any file whatever its mode, so for root the read runs in a child
    # process without privileges. Other users get the plain chmod case.
    folder = Path(tempfile.mkdtemp(prefix="vlm-micro-perm-"))
    try:
        folder.chmod(0o755)
        path = folder / "secret.tif"
        tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
        path.chmod(0)
        result = _read_as_nobody(path) if os.geteuid() == 0 else read_everything(path)
        assert "unexpected" not in result, result
        check_outcome(result, Fails(("cannot be opened", "permission")), path)
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()
