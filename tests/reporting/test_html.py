"""Per-image reports and the run index as files: self-contained, escaped, PDF one page."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from fabricate import FAILED_ERROR, MARKUP_FILE, MARKUP_ID, MARKUP_REPLICATE


class TagCollector(HTMLParser):
    """Collect every start tag with its attributes, and the text of script elements."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def parse(path) -> TagCollector:
    collector = TagCollector()
    collector.feed(path.read_text(encoding="utf-8"))
    return collector


def test_report_is_self_contained(reported_run):
    _, _, image_paths, _ = reported_run
    page = parse(image_paths["tissue_a"]["html"])
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) >= 3  # overlay, heat map, composition, gallery tiles
    for attrs in images:
        assert attrs["src"].startswith("data:image/png;base64,")
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            assert not re.match(r"^[a-z]+://", attrs.get(name) or ""), f"{tag} loads {attrs[name]}"
        assert tag != "link", "no external style sheets"
    assert page.scripts == []


def test_report_sets_content_security_policy(reported_run):
    _, _, image_paths, _ = reported_run
    page = parse(image_paths["tissue_a"]["html"])
    policies = [attrs["content"] for tag, attrs in page.tags
                if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"]
    assert policies == ["default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'"]


def test_report_has_every_section(reported_run):
    _, _, image_paths, _ = reported_run
    text = image_paths["tissue_a"]["html"].read_text(encoding="utf-8")
    for heading in ("Image", "Composition", "Anomalies", "Examples per cell type", "Quality control",
                    "Provenance", "Files"):
        assert f"<h2>{heading}</h2>" in text
    assert "predictions of the model vlm-micro-demo" in text
    assert "not been validated on real tissue" in text
    assert "0.5 µm per pixel" in text
    assert "ab" * 32 in text  # model checksum
    assert "cd" * 32 in text  # config checksum


def test_report_uncalibrated_notice(reported_run):
    _, _, image_paths, _ = reported_run
    text = image_paths["tissue_b"]["html"].read_text(encoding="utf-8")
    assert "Uncalibrated image." in text
    assert "uncalibrated (not stated in the file)" in text


def test_report_cells_placement_counts_cells(reported_run):
    _, _, image_paths, _ = reported_run
    text = image_paths["cells_c"]["html"].read_text(encoding="utf-8")
    assert "24 nuclei were detected" in text
    assert "Each disk marks one detected nucleus" in text


def test_markup_file_name_escaped_in_report(reported_run):
    _, _, image_paths, _ = reported_run
    text = image_paths[MARKUP_ID]["html"].read_text(encoding="utf-8")
    assert MARKUP_FILE not in text
    assert MARKUP_REPLICATE not in text
    assert html.escape(MARKUP_FILE) in text
    assert html.escape(MARKUP_REPLICATE) in text
    tags = [tag for tag, _ in parse(image_paths[MARKUP_ID]["html"]).tags]
    assert "script" not in tags
    assert all("onerror" not in attrs for _, attrs in parse(image_paths[MARKUP_ID]["html"]).tags)


def test_markup_file_name_escaped_in_index(reported_run):
    _, _, _, run_paths = reported_run
    text = run_paths["index"].read_text(encoding="utf-8")
    assert MARKUP_ID not in text
    assert MARKUP_REPLICATE not in text
    assert html.escape(MARKUP_ID) in text
    assert "<b>bad magic</b>" not in text  # the failed image's error
    links = [attrs["href"] for tag, attrs in parse(run_paths["index"]).tags if tag == "a"]
    assert "reports/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.html" in links


def test_index_links_every_report(reported_run):
    out, statuses, _, run_paths = reported_run
    from urllib.parse import unquote

    links = {unquote(attrs["href"]) for tag, attrs in parse(run_paths["index"]).tags if tag == "a"}
    for image_id in statuses:
        assert f"reports/{image_id}.html" in links
        assert (out / "reports" / f"{image_id}.html").is_file()


def test_index_highlights_failure(reported_run):
    _, _, _, run_paths = reported_run
    text = run_paths["index"].read_text(encoding="utf-8")
    assert '<tr class="failed">' in text
    assert html.escape(FAILED_ERROR) in text
    assert "1 image failed" in text


def test_index_script_allowed_by_hash(reported_run):
    import base64
    import hashlib

    _, _, _, run_paths = reported_run
    page = parse(run_paths["index"])
    assert len(page.scripts) == 1
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode("utf-8")).digest()).decode()
    policy = next(attrs["content"] for tag, attrs in page.tags if attrs.get("http-equiv") == "Content-Security-Policy")
    assert f"script-src 'sha256-{digest}'" in policy


def test_failed_report_states_error(reported_run):
    _, _, image_paths, _ = reported_run
    text = image_paths["broken"]["html"].read_text(encoding="utf-8")
    assert "This image could not be processed." in text
    assert html.escape(FAILED_ERROR) in text
    assert "<b>bad magic</b>" not in text


def count_pdf_pages(path) -> int:
    """Count pages with pdfinfo (poppler-utils) when installed, else count /Type /Page objects."""
    if shutil.which("pdfinfo"):
        output = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
        return int(re.search(r"^Pages:\s+(\d+)", output, flags=re.M).group(1))
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", path.read_bytes()))


@pytest.mark.parametrize("image_id", ["tissue_a", "cells_c", "broken", MARKUP_ID])
def test_pdf_has_exactly_one_page(reported_run, image_id):
    _, _, image_paths, _ = reported_run
    path = image_paths[image_id]["pdf"]
    assert path.read_bytes().startswith(b"%PDF-")
    assert count_pdf_pages(path) == 1
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", path.read_bytes())) == 1


@pytest.mark.skipif(not shutil.which("pdftoppm"), reason="pdftoppm (poppler-utils) is not installed")
def test_pdf_renders_as_a4(reported_run, tmp_path):
    from PIL import Image

    _, _, image_paths, _ = reported_run
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(image_paths["tissue_a"]["pdf"]), str(tmp_path / "page")],
                   check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == 1
    width, height = Image.open(pages[0]).size
    assert height / width == pytest.approx(297 / 210, rel=0.02)


@pytest.mark.skipif(not shutil.which("pdfimages"), reason="pdfimages (poppler-utils) is not installed")
def test_pdf_embeds_the_html_figures_losslessly(reported_run, tmp_path):
    """The PDF places the pixels of the HTML figures, deflated at a fast level but not altered."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    _, _, image_paths, _ = reported_run
    overlay_alt = "Image with tiles coloured by predicted cell type"
    (uri,) = [attrs["src"] for tag, attrs in parse(image_paths["tissue_a"]["html"]).tags
              if tag == "img" and attrs.get("alt") == overlay_alt]
    html_overlay = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))
    subprocess.run(["pdfimages", "-png", str(image_paths["tissue_a"]["pdf"]), str(tmp_path / "image")], check=True)
    # matplotlib stores image rows bottom-up and flips them back with the placement matrix.
    extracted = [np.flipud(np.asarray(Image.open(path).convert("RGB"))) for path in sorted(tmp_path.glob("image-*.png"))]
    assert any(image.shape == html_overlay.shape and np.array_equal(image, html_overlay) for image in extracted)


@pytest.mark.skipif(not shutil.which("pdftotext"), reason="pdftotext (poppler-utils) is not installed")
def test_pdf_footer_keeps_file_name_and_checksums(tmp_path):
    """A long source path loses its start, never the file name, and no checksum is cut off."""
    import fabricate
    from vlm_micro.reporting import write_image_report

    out = tmp_path / "results"
    file_name = "/".join(["a_very_long_folder_name_from_the_microscope_pc"] * 3) + "/plate7_well_B03_field_0042.png"
    status = fabricate.write_image(out, "deep", file_name=file_name)
    paths = write_image_report(out, "deep", {})
    text = subprocess.run(["pdftotext", "-layout", str(paths["pdf"]), "-"], capture_output=True, text=True,
                          check=True).stdout
    footer = text.strip().splitlines()[-3:]
    assert footer[0].endswith("plate7_well_B03_field_0042.png")
    assert "…" in footer[0]
    assert f"vocabulary {status['vocabulary']['checksum'][:16]}" in footer[1]
    assert f"model {status['model']['checksum'][:16]}" in footer[1]


def test_pdf_disabled_by_config(tmp_path):
    import fabricate
    from vlm_micro.reporting import write_image_report

    out = tmp_path / "results"
    fabricate.write_image(out, "a")
    paths = write_image_report(out, "a", {"report": {"pdf": False}})
    assert "pdf" not in paths
    assert not (out / "reports" / "a.pdf").exists()
    assert "One-page PDF" not in paths["html"].read_text(encoding="utf-8")


def test_report_image_without_tiles(tmp_path):
    import pandas as pd

    import fabricate
    from vlm_micro.reporting import write_image_report, write_run_summary

    out = tmp_path / "results"
    fabricate.write_image(out, "empty")
    tiles_path = out / "tables" / "tiles" / "empty.parquet"
    pd.read_parquet(tiles_path).iloc[0:0].to_parquet(tiles_path, index=False)
    paths = write_image_report(out, "empty", {})
    text = paths["html"].read_text(encoding="utf-8")
    assert "Nothing was labelled." in text
    assert count_pdf_pages(paths["pdf"]) == 1
    document = json.loads(paths["geojson"].read_text(encoding="utf-8"))
    assert document["features"] == []
    write_run_summary(out, {})
    images = pd.read_csv(out / "images.tsv", sep="\t")
    assert images.loc[0, "n_tiles"] == 0
    assert pd.isna(images.loc[0, "anomaly_rate"])


def test_report_several_frames_shows_first(tmp_path):
    import pandas as pd

    import fabricate
    from vlm_micro.reporting import write_image_report

    out = tmp_path / "results"
    fabricate.write_image(out, "movie")
    tiles_path = out / "tables" / "tiles" / "movie.parquet"
    first = pd.read_parquet(tiles_path)
    first["frame"] = pd.array([0] * len(first), dtype="Int64")
    second = first.copy()
    second["frame"] = pd.array([1] * len(second), dtype="Int64")
    second["cell_type"] = "tumor"
    pd.concat([first, second], ignore_index=True).to_parquet(tiles_path, index=False)
    paths = write_image_report(out, "movie", {})
    text = paths["html"].read_text(encoding="utf-8")
    assert "Counts cover all 2 planes of the file." in text
    assert f"{2 * len(first)} tiles labelled" in text
    features = json.loads(paths["geojson"].read_text(encoding="utf-8"))["features"]
    assert len(features) == len(first)  # exports cover the first plane only
    assert [f["properties"]["classification"]["name"] for f in features] == first["cell_type"].tolist()
