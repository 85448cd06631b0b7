"""The report and summarize subcommands, through the vlm-micro command line."""

from __future__ import annotations

import fabricate
from vlm_micro.cli import main


def test_report_subcommand_writes_outputs(tmp_path, capsys):
    out = tmp_path / "results"
    fabricate.write_image(out, "a", seed=7)
    fabricate.write_failed(out, "b", "b.tif: unreadable")
    assert main(["report", "--results", str(out), "--image-id", "a", "b"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "reports" / "a.html"), str(out / "reports" / "b.html")]
    for name in ("reports/a.html", "reports/a.pdf", "exports/a.geojson", "exports/a_labels.ome.tif",
                 "exports/a_labels.json", "reports/b.html", "exports/b.geojson"):
        assert (out / name).is_file(), name


def test_report_subcommand_defaults_to_every_image(tmp_path, capsys):
    out = tmp_path / "results"
    fabricate.write_failed(out, "x", "x.tif: unreadable")
    fabricate.write_failed(out, "y", "y.tif: unreadable")
    assert main(["report", "--results", str(out)]) == 0
    assert len(capsys.readouterr().out.split()) == 2


def test_report_unknown_image_fails_with_one_line(tmp_path, capsys):
    out = tmp_path / "results"
    fabricate.write_failed(out, "x", "x.tif: unreadable")
    assert main(["report", "--results", str(out), "--image-id", "nope"]) == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert "status file not found" in error
    assert "nope.json" in error


def test_report_without_status_folder_fails(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path)]) == 1
    assert "no status folder" in capsys.readouterr().err


def test_summarize_subcommand_with_config(tmp_path, capsys):
    out = tmp_path / "results"
    fabricate.write_image(out, "a", seed=8, metadata={"condition": "c1"})
    config = tmp_path / "config.yaml"
    config.write_text("report:\n  csv: true\n  pdf: false\n", encoding="utf-8")
    assert main(["summarize", "--results", str(out), "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    for name in ("images.tsv", "conditions.tsv", "tables/tiles.parquet", "tables/tiles.csv", "index.html"):
        assert (out / name).is_file(), name


def test_summarize_rejects_invalid_config(tmp_path, capsys):
    out = tmp_path / "results"
    fabricate.write_image(out, "a", seed=9)
    config = tmp_path / "config.yaml"
    config.write_text("report:\n  pdf: maybe\n", encoding="utf-8")
    assert main(["summarize", "--results", str(out), "--config", str(config)]) == 1
    assert "pdf" in capsys.readouterr().err
