"""The report and summarize subcommands, through the vlm-micro command line."""

from __future__ import annotations

import json
import subprocess
import sys

import fabricate
import pandas as pd
import pytest

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


def read_image_ids(out) -> list[str]:
    lines = (out / "images.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines[1:]]


def test_summarize_image_list_leaves_out_other_images(tmp_path, capsys):
    out = tmp_path / "results"
    fabricate.write_image(out, "a", seed=10)
    fabricate.write_image(out, "old", seed=11)  # left by an earlier run with another image list
    fabricate.write_failed(out, "b", "b.tif: unreadable")
    image_list = tmp_path / "images.json"
    image_list.write_text(json.dumps(["b", "a"]), encoding="utf-8")
    assert main(["summarize", "--results", str(out), "--image-list", str(image_list)]) == 0
    assert read_image_ids(out) == ["b", "a"]
    merged = pd.read_parquet(out / "tables" / "tiles.parquet")
    assert set(merged["image_id"]) == {"a"}


def test_summarize_reads_shard_manifests(tmp_path, capsys):
    out = tmp_path / "results"
    for name, seed in (("a", 12), ("b", 13), ("old", 14)):
        fabricate.write_image(out, name, seed=seed)
    manifests = []
    for shard, ids in (("shard_0000", ["b"]), ("shard_0001", ["a", "b"])):
        path = tmp_path / f"{shard}.manifest.json"
        path.write_text(json.dumps({"shard": shard, "images": [{"image_id": i, "status": "ok"} for i in ids]}),
                        encoding="utf-8")
        manifests.append(str(path))
    assert main(["summarize", "--results", str(out), "--image-list", *manifests]) == 0
    assert read_image_ids(out) == ["b", "a"]  # in list order, each image once


def test_summarize_listed_image_without_status_is_failed(tmp_path, capsys):
    out = tmp_path / "results"
    fabricate.write_image(out, "a", seed=15)
    assert main(["summarize", "--results", str(out), "--image-id", "a", "missing"]) == 0
    rows = pd.read_csv(out / "images.tsv", sep="\t", keep_default_na=False)
    assert list(rows["image_id"]) == ["a", "missing"]
    assert list(rows["status"]) == ["ok", "failed"]
    assert "status file not found" in rows.loc[1, "error"]


@pytest.mark.parametrize("content, message", [
    ('{"images": "a"}', "expected a JSON list of image ids"),
    ('[{"path": "a.tif"}]', "entry 0 has no image id"),
    ("not json", "cannot read image list"),
])
def test_summarize_rejects_invalid_image_list(tmp_path, capsys, content, message):
    out = tmp_path / "results"
    fabricate.write_image(out, "a", seed=16)
    image_list = tmp_path / "images.json"
    image_list.write_text(content, encoding="utf-8")
    assert main(["summarize", "--results", str(out), "--image-list", str(image_list)]) == 1
    error = capsys.readouterr().err
    assert message in error
    assert str(image_list) in error


def test_report_command_imports_no_torch(tmp_path):
    out = tmp_path / "results"
    fabricate.write_image(out, "a", seed=17)
    script = ("import sys; from vlm_micro.cli import main; "
              f"status = main(['report', '--results', {str(out)!r}, '--image-id', 'a']); "
              "print(status, 'torch' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split()[-2:] == ["0", "False"]


def test_summarize_repeated_image_id_listed_once(tmp_path, capsys):
    out = tmp_path / "results"
    fabricate.write_image(out, "a")
    assert main(["summarize", "--results", str(out), "--image-id", "a", "a"]) == 0
    images = pd.read_csv(out / "images.tsv", sep="\t")
    tiles = pd.read_parquet(out / "tables" / "tiles.parquet")
    assert images["image_id"].tolist() == ["a"]
    assert len(tiles) == len(pd.read_parquet(out / "tables" / "tiles" / "a.parquet"))
