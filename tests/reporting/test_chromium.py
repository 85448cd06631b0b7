"""Render the run index and reports in real headless Chromium.

Checks that pages log no console errors (including Content-Security-Policy violations,
which would reveal an unescaped script or a network request) and that every figure
decoded. Screenshots go to /tmp/report_shots/ for a human to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdp import Chromium, find_chromium
from fabricate import MARKUP_ID

pytestmark = pytest.mark.chromium

SHOTS = Path("/tmp/report_shots")
CHROMIUM = find_chromium()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed; `make system-deps` (as root) installs Debian's chromium")
    folder = tmp_path_factory.mktemp("chromium")
    with Chromium(CHROMIUM, folder / "profile", folder / "chromium.log") as instance:
        yield instance


def _check_page(browser, path: Path, shot_name: str):
    page = browser.load(path.resolve().as_uri())
    assert page.errors() == []
    images = page.images()
    assert images, f"{path.name} has no images"
    for image in images:
        assert image["complete"], f"image {image['alt']!r} did not load"
        assert image["width"] > 0, f"image {image['alt']!r} has no pixels"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(SHOTS / shot_name)
    return page


def test_index_renders_without_errors(reported_run, browser):
    _, _, _, run_paths = reported_run
    page = _check_page(browser, run_paths["index"], "index.png")
    assert page.evaluate("document.querySelectorAll('#images tbody tr').length") == 5
    assert page.evaluate("document.querySelectorAll('tr.failed').length") == 1


def test_index_table_sorts_on_click(reported_run, browser):
    _, _, _, run_paths = reported_run
    page = browser.load(run_paths["index"].resolve().as_uri())
    tiles_column = "Array.from(document.querySelectorAll('#images thead th')).findIndex(th => th.textContent === 'tiles')"
    column = page.evaluate(tiles_column)
    assert column > 0
    read = (f"Array.from(document.querySelectorAll('#images tbody tr')).map(r => r.cells[{column}].textContent)")
    page.evaluate(f"document.querySelectorAll('#images thead th')[{column}].click()")
    ascending = page.evaluate(read)
    page.evaluate(f"document.querySelectorAll('#images thead th')[{column}].click()")
    descending = page.evaluate(read)
    numbers = [int(value) for value in ascending if value != "–"]
    assert numbers == sorted(numbers)
    assert ascending[-1] == "–"  # the failed image has no tiles and sorts last
    assert [int(value) for value in descending if value != "–"] == sorted(numbers, reverse=True)
    assert page.errors() == []


@pytest.mark.parametrize("image_id, shot", [("tissue_a", "report_grid.png"), ("cells_c", "report_cells.png"),
                                            ("tissue_b", "report_uncalibrated.png"), ("broken", "report_failed.png"),
                                            (MARKUP_ID, "report_markup_name.png")])
def test_report_renders_without_errors(reported_run, browser, image_id, shot):
    _, _, image_paths, _ = reported_run
    if image_id == "broken":
        page = browser.load(image_paths[image_id]["html"].resolve().as_uri())
        assert page.errors() == []
        assert page.images() == []
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(SHOTS / shot)
        return
    page = _check_page(browser, image_paths[image_id]["html"], shot)
    title = page.evaluate("document.querySelector('h1').textContent")
    assert title.startswith("Cell types and anomalies: ")
    if image_id == MARKUP_ID:
        assert title.endswith(MARKUP_ID + ".png")  # shown as text, not turned into an element
