"""A real `vlm-micro run` over broken and hostile files next to good ones.

One run labels a folder with part of the hostile-input corpus and two good synthetic
images. While it runs, a second run on the same results folder must be rejected. The
checks: every bad file gets its own failed row with a one-line reason, the good images
complete, the exit status is 3, no file name reaches a shell, and file names with
markup are escaped in the HTML.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .conftest import finish_run, read_images_tsv, start_run, wait_for, write_config
from .corpus import CASES, SHELL_NAME, Fails, build_case, text_file

pytestmark = pytest.mark.slow

RUN_CASES = [case for case in CASES if case.run_level]
GOOD_MARKUP_NAME = "<img src=x onerror=alert(1)> 細胞 été.ome.tif"
BAD_MARKUP_NAME = "<script>alert(1)<script>.tif"
MARKUP = ("<img src=x onerror=alert(1)>", "<script>alert(1)<script>")


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, synthetic_images, tiny_model_dir):
    """Run the corpus folder once; start a second run on the same folder while it runs."""
    root = tmp_path_factory.mktemp("corpus-run")
    images = root / "images"
    images.mkdir()
    for case in RUN_CASES:
        build_case(case, images)
    text_file(images / BAD_MARKUP_NAME)
    good = sorted(synthetic_images.glob("*.ome.tif"))[:2]
    shutil.copyfile(good[0], images / good[0].name)
    shutil.copyfile(good[1], images / GOOD_MARKUP_NAME)
    workdir = root / "workdir"  # current directory of the runs, where `touch pwned` would land
    workdir.mkdir()
    out = root / "results"
    config = write_config(root / "config.yaml", tiny_model_dir)

    first = start_run(images, out, config, cwd=workdir)
    lock = out / ".vlm-micro.lock"

    def snakemake_started() -> bool:
        try:
            return "child_pid" in json.loads(lock.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False

    wait_for(snakemake_started, first, 300, "snakemake start")
    second = finish_run(start_run(images, out, config, cwd=workdir), timeout=300)
    first_result = finish_run(first)
    return {"root": root, "images": images, "out": out, "workdir": workdir, "good": [good[0].name, GOOD_MARKUP_NAME],
            "first": first_result, "second": second, "first_pid": first.pid}


def rows_by_file(out: Path) -> dict[str, dict]:
    table = read_images_tsv(out)
    return {Path(row["path"]).name: row for row in table.to_dict("records")}


def test_second_run_rejected(corpus_run):
    returncode, stdout, stderr = corpus_run["second"]
    lines = stderr.strip().splitlines()
    assert returncode == 1
    assert stdout == ""
    assert len(lines) == 1, stderr
    assert f"results folder {corpus_run['out']} is used by another vlm-micro run" in lines[0]
    assert f"pid {corpus_run['first_pid']}" in lines[0]
    assert "wait for it to finish or choose another --out" in lines[0]


def test_corpus_run_exit_status_3(corpus_run):
    returncode, stdout, stderr = corpus_run["first"]
    n_bad = sum(isinstance(case.expect, Fails) for case in RUN_CASES) + 1
    n_all = len(RUN_CASES) + 1 + 2
    assert returncode == 3, stderr[-3000:]
    assert f"{n_bad} of {n_all} image(s) failed" in stderr
    assert stdout.strip() == str(corpus_run["out"] / "index.html")


def test_corpus_run_one_row_per_file(corpus_run):
    rows = rows_by_file(corpus_run["out"])
    expected = sorted([case.name for case in RUN_CASES] + [BAD_MARKUP_NAME] + corpus_run["good"])
    assert sorted(rows) == expected


@pytest.mark.parametrize("case", [case for case in RUN_CASES if isinstance(case.expect, Fails)],
                         ids=lambda case: case.name)
def test_corpus_run_bad_file_row(corpus_run, case):
    row = rows_by_file(corpus_run["out"])[case.name]
    path = str(corpus_run["images"] / case.name)
    assert row["status"] == "failed"
    assert "\n" not in row["error"]
    assert path in row["error"] or repr(path) in row["error"]
    for phrase in case.expect.phrases:
        assert phrase in row["error"]


def test_corpus_run_odd_files_complete(corpus_run):
    rows = rows_by_file(corpus_run["out"])
    for case in RUN_CASES:
        if isinstance(case.expect, Fails):
            continue
        assert rows[case.name]["status"] == "ok", rows[case.name]["error"]
        assert rows[case.name]["error"] == ""
    black = rows["nan_only.tif"]
    assert black["n_tiles"] == "0"
    assert "no tile reaches the minimum foreground fraction" in black["qc_warnings"]


def test_corpus_run_good_images_labelled(corpus_run):
    out = corpus_run["out"]
    rows = rows_by_file(out)
    for name in corpus_run["good"]:
        row = rows[name]
        assert row["status"] == "ok", row["error"]
        assert int(row["n_tiles"]) > 0
        assert (out / "tables" / "tiles" / f"{row['image_id']}.parquet").is_file()
        assert (out / "reports" / f"{row['image_id']}.html").is_file()


def test_corpus_run_no_shell_injection(corpus_run):
    assert (corpus_run["images"] / SHELL_NAME).is_file()
    created = sorted(str(path) for path in corpus_run["root"].rglob("pwned"))
    assert created == []
    assert not (Path.cwd() / "pwned").exists()


def test_corpus_run_html_escapes_file_names(corpus_run):
    out = corpus_run["out"]
    rows = rows_by_file(out)
    pages = {"index.html": (out / "index.html").read_text(encoding="utf-8")}
    for name in (GOOD_MARKUP_NAME, BAD_MARKUP_NAME):
        report = out / "reports" / f"{rows[name]['image_id']}.html"
        pages[report.name] = report.read_text(encoding="utf-8")
    for page, text in pages.items():
        for markup in MARKUP:
            assert markup not in text, f"unescaped file name in {page}"
    assert "&lt;script&gt;alert(1)&lt;script&gt;" in pages["index.html"]
    good_report = pages[f"{rows[GOOD_MARKUP_NAME]['image_id']}.html"]
    assert "&lt;img src=x onerror=alert(1)&gt; 細胞 été" in good_report
