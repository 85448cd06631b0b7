"""An invalid config or sample sheet stops `vlm-micro run` before any work starts.

Each case goes through the command's entry point, ``vlm_micro.cli.main``, and must
exit with status 1, print exactly one line naming the key or sheet row, the value and
the fix, and leave the results folder uncreated. One case runs the real console
command in a subprocess to check the same from the outside.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from vlm_micro.cli import main

from .conftest import LABELS, REPO_ROOT


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(folder / name, np.full((32, 32), 100, np.uint8))
    return folder


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> Path:
    return tiny_model_dir


def labels_with(tmp_path: Path, change) -> str:
    vocabulary = yaml.safe_load(LABELS.read_text(encoding="utf-8"))
    change(vocabulary)
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump(vocabulary), encoding="utf-8")
    return str(path)


def run_cli(capsys, tmp_path: Path, config_text: str, *arguments: str) -> tuple[int, str, Path]:
    """Run `vlm-micro run` in-process with a config file; return (status, stderr, out)."""
    config = tmp_path / "config.yaml"
    config.write_text(config_text, encoding="utf-8")
    out = tmp_path / "results"
    argv = ["run", "--config", str(config), *arguments]
    if "--out" not in arguments and "out:" not in config_text:
        argv += ["--out", str(out)]
    capsys.readouterr()
    status = main(argv)
    return status, capsys.readouterr().err, out


def assert_config_error(status: int, stderr: str, out: Path, *phrases: str) -> None:
    lines = stderr.strip().splitlines()
    assert status == 1
    assert len(lines) == 1, stderr
    assert lines[0].startswith("vlm-micro run: error: ")
    for phrase in phrases:
        assert phrase in lines[0]
    assert not out.exists(), "the results folder was created before the config was checked"


def base_config(model_dir: Path, image_folder: Path, **changes) -> dict:
    values = {"images": str(image_folder), "labels": str(LABELS), "model": {"spec": f"local-dir:{model_dir}", "device": "cpu"}}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


# (case id, config changes, phrases the error line must contain)
CONFIG_CASES = [
    ("unknown top-level key", {"modle": {"spec": "x"}}, ("unknown key 'modle'", "allowed keys", "Fix the spelling")),
    ("unknown nested key", {"model": {"devcie": "cpu"}}, ("unknown key 'model.devcie'", "device")),
    ("unknown read key", {"read": {"serie": 0}}, ("unknown key 'read.serie'", "series")),
    ("batch size text", {"model": {"batch_size": "sixty"}}, ("'model.batch_size'", '"sixty"', "integer")),
    ("batch size zero", {"model": {"batch_size": 0}}, ("'model.batch_size'", "0", "minimum")),
    ("negative overlap", {"tiling": {"overlap_px": -3}}, ("'tiling.overlap_px'", "-3")),
    ("pdf not boolean", {"report": {"pdf": "maybe"}}, ("'report.pdf'", '"maybe"', "boolean")),
    ("shard size zero", {"workflow": {"shard_size": 0}}, ("'workflow.shard_size'", "0")),
    ("probability above 1", {"labeling": {"uncertain_probability": 1.5}}, ("'labeling.uncertain_probability'", "1.5")),
    ("percentiles reversed", {"read": {"percentiles": [99, 1]}}, ("config.yaml: read.percentiles", "[99, 1]", "low < high")),
    ("unknown placement", {"tiling": {"placement": "hexagonal"}}, ("'tiling.placement'", '"hexagonal"', '"grid"')),
    ("unknown device", {"model": {"device": "tpu"}}, ("'model.device'", '"tpu"', "use auto, cpu, cuda, cuda:N")),
    ("unknown precision", {"model": {"precision": "fp8"}}, ("'model.precision'", '"fp8"', '"bf16"')),
    ("images not text", {"images": 5}, ("'images'", "5")),
    ("labels file missing", {"labels": "/nonexistent/labels.yaml"}, ("labels file not found", "/nonexistent/labels.yaml")),
    ("sample sheet missing", {"sample_sheet": "/nonexistent/images.tsv"}, ("sample_sheet", "/nonexistent/images.tsv")),
    ("model folder missing", {"model": {"spec": "local-dir:/nonexistent/model"}}, ("model.spec", "/nonexistent/model", "fix the path")),
    ("checkpoint missing", {"model": {"spec": "ViT-B-32@/nonexistent/weights.pt"}}, ("checkpoint file not found", "/nonexistent/weights.pt")),
    ("builtin model missing", {"model": {"spec": "builtin:nonexistent"}}, ("'builtin:nonexistent'", "not installed")),
    ("reference image missing", {"labeling": {"normal_references": ["/nonexistent/ref.tif"]}},
     ("labeling.normal_references", "/nonexistent/ref.tif")),
    ("images folder missing", {"images": "/nonexistent/images"}, ("images", "/nonexistent/images")),
    ("glob matches nothing", {"images": "/nonexistent/*.tif"}, ("no image files found", "/nonexistent/*.tif")),
    ("overlap not below tile size", {"tiling": {"overlap_px": 10000}},
     ("tiling.overlap_px: 10000 must be smaller than the tile size", "lower it")),
    ("braces in out", {"out": "/tmp/results_{x}"}, ("results folder '/tmp/results_{x}'", "wildcard", "without braces")),
]


@pytest.mark.parametrize("changes, phrases", [case[1:] for case in CONFIG_CASES], ids=[case[0] for case in CONFIG_CASES])
def test_run_rejects_config(capsys, tmp_path, model_dir, image_folder, changes, phrases):
    config_text = yaml.safe_dump(base_config(model_dir, image_folder, **changes))
    status, stderr, out = run_cli(capsys, tmp_path, config_text)
    assert_config_error(status, stderr, out, *phrases)


def test_run_rejects_invalid_yaml(capsys, tmp_path):
    status, stderr, out = run_cli(capsys, tmp_path, "model: {spec: [unclosed\n")
    assert_config_error(status, stderr, out, "invalid YAML", "line 1")


def test_run_rejects_repeated_key(capsys, tmp_path):
    status, stderr, out = run_cli(capsys, tmp_path, "images: a\nout: one\nout: two\n")
    assert_config_error(status, stderr, out, "invalid YAML", "key 'out' appears twice", "line 3")


def test_run_rejects_config_not_utf8(capsys, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_bytes("images: contrôle\n".encode("latin-1"))
    out = tmp_path / "results"
    status = main(["run", "--config", str(config), "--out", str(out)])
    assert_config_error(status, capsys.readouterr().err, out, "not UTF-8 text", "save the file as UTF-8")


def test_run_rejects_sheet_not_utf8(capsys, tmp_path, model_dir, image_folder):
    sheet = tmp_path / "images.tsv"
    sheet.write_bytes(f"path\tcondition\n{image_folder / 'a.tif'}\tcontrôle\n".encode("latin-1"))
    config_text = yaml.safe_dump(base_config(model_dir, image_folder))
    status, stderr, out = run_cli(capsys, tmp_path, config_text, "--sample-sheet", str(sheet))
    assert_config_error(status, stderr, out, str(sheet), "not UTF-8 text", "tabs between the columns")


def test_run_rejects_labels_not_utf8(capsys, tmp_path, model_dir, image_folder):
    labels = tmp_path / "labels.yaml"
    labels.write_bytes(LABELS.read_bytes() + "# café\n".encode("latin-1"))
    config_text = yaml.safe_dump(base_config(model_dir, image_folder, labels=str(labels)))
    status, stderr, out = run_cli(capsys, tmp_path, config_text)
    assert_config_error(status, stderr, out, str(labels), "not UTF-8 text", "save the file as UTF-8")


def test_run_rejects_labels_repeated_key(capsys, tmp_path, model_dir, image_folder):
    labels = tmp_path / "labels.yaml"
    text = LABELS.read_text(encoding="utf-8")
    first_color = text.index("color:")
    labels.write_text(text[:first_color] + 'color: "#000000"\n    ' + text[first_color:], encoding="utf-8")
    config_text = yaml.safe_dump(base_config(model_dir, image_folder, labels=str(labels)))
    status, stderr, out = run_cli(capsys, tmp_path, config_text)
    assert_config_error(status, stderr, out, str(labels), "key 'color' appears twice")


def test_run_rejects_empty_labels(capsys, tmp_path, model_dir, image_folder):
    labels = tmp_path / "labels.yaml"
    labels.write_text("# nothing yet\n", encoding="utf-8")
    config_text = yaml.safe_dump(base_config(model_dir, image_folder, labels=str(labels)))
    status, stderr, out = run_cli(capsys, tmp_path, config_text)
    assert_config_error(status, stderr, out, str(labels), "labels file is empty", "config/labels.yaml")


def test_run_rejects_list_config(capsys, tmp_path):
    status, stderr, out = run_cli(capsys, tmp_path, "- images\n- out\n")
    assert_config_error(status, stderr, out, "expected a mapping", "list")


def test_run_rejects_missing_config_file(capsys, tmp_path):
    out = tmp_path / "results"
    status = main(["run", "--config", str(tmp_path / "nonexistent.yaml"), "--out", str(out)])
    assert_config_error(status, capsys.readouterr().err, out, "config file not found", "nonexistent.yaml")


def test_run_rejects_empty_image_folder(capsys, tmp_path, model_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    config_text = yaml.safe_dump(base_config(model_dir, empty))
    status, stderr, out = run_cli(capsys, tmp_path, config_text)
    assert_config_error(status, stderr, out, "no image files found", str(empty), ".tif")


VOCABULARY_CASES = [
    ("no cell types", lambda v: v.__setitem__("cell_types", []), ("'cell_types' must be a non-empty list",)),
    ("no anomaly kinds", lambda v: v["anomaly"].__setitem__("kinds", []), ("'anomaly.kinds' must be a non-empty list",)),
    ("no templates", lambda v: v["templates"].__setitem__("default", []), ("templates.default",)),
    ("duplicate class", lambda v: v["cell_types"].append(dict(v["cell_types"][0])), ("duplicate name 'lymphocyte'",)),
    ("class equals kind", lambda v: v["cell_types"][0].__setitem__("name", v["anomaly"]["kinds"][0]["name"]),
     ("both a cell type and an anomaly kind",)),
    ("unknown vocabulary key", lambda v: v.__setitem__("cell_typs", []), ("unknown key 'cell_typs'",)),
]


@pytest.mark.parametrize("change, phrases", [case[1:] for case in VOCABULARY_CASES], ids=[case[0] for case in VOCABULARY_CASES])
def test_run_rejects_vocabulary(capsys, tmp_path, model_dir, image_folder, change, phrases):
    labels = labels_with(tmp_path, change)
    config_text = yaml.safe_dump(base_config(model_dir, image_folder, labels=labels))
    status, stderr, out = run_cli(capsys, tmp_path, config_text)
    assert_config_error(status, stderr, out, labels, *phrases)


def sheet_cases(image_folder: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    a, b = image_folder / "a.tif", image_folder / "b.tif"
    return [
        ("duplicate image id", f"path\timage_id\n{a}\tx1\n{b}\tX1\n", ("line 3", "'X1'", "line 2", "unique")),
        ("duplicate file", f"path\n{a}\n{a}\n", ("line 3", str(a), "line 2")),
        ("no path column", f"file\timage_id\n{a}\tx1\n", ("no 'path' column", "name the column of image paths 'path'")),
        ("path column capitalised", f"Path\tcondition\n{a}\tx\n", ("column 'Path' must be named 'path'", "case-sensitive")),
        ("comma separated", f"path,condition\n{a},x\n", ("'path,condition'", "not tab-separated", "TSV")),
        ("image missing", f"path\n{a}\n/nonexistent/c.tif\n", ("line 3", "/nonexistent/c.tif", "not found")),
        ("pixel size text", f"path\tpixel_size_um\n{a}\tabc\n", ("line 2", "'abc'", "not a number")),
        ("pixel size negative", f"path\tpixel_size_um\n{a}\t-1\n", ("line 2", "pixel_size_um", "-1")),
        ("pixel size infinite", f"path\tpixel_size_um\n{a}\tinf\n", ("line 2", "not finite")),
        ("unsafe image id", f"path\timage_id\n{a}\t../evil\n",
         ("line 2", "../evil", "image_id", "start with a letter or digit", "at most 100 characters")),
        ("extra cell", f"path\tcondition\n{a}\tx\textra\n", ("line 2", "3 columns", "header has 2")),
        ("duplicate column", f"path\tpath\n{a}\t{b}\n", ("'path' appears twice",)),
        ("header only", "path\timage_id\n", ("lists no images",)),
        ("folder as image", f"path\n{image_folder}\n", ("line 2", "is a folder", "one image file per row")),
        ("empty sheet", "", ("sample sheet is empty",)),
    ]


CASE_IDS = [case[0] for case in sheet_cases(Path("x"))]


@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_run_rejects_sample_sheet(capsys, tmp_path, model_dir, image_folder, index):
    _, text, phrases = sheet_cases(image_folder)[index]
    sheet = tmp_path / "images.tsv"
    sheet.write_text(text, encoding="utf-8")
    config_text = yaml.safe_dump(base_config(model_dir, image_folder))
    status, stderr, out = run_cli(capsys, tmp_path, config_text, "--sample-sheet", str(sheet))
    assert_config_error(status, stderr, out, str(sheet), *phrases)


def test_run_rejects_missing_model_option(capsys, tmp_path, model_dir, image_folder):
    config_text = yaml.safe_dump(base_config(model_dir, image_folder))
    status, stderr, out = run_cli(capsys, tmp_path, config_text, "--model", "local-dir:/nonexistent/model")
    assert_config_error(status, stderr, out, "model folder not found", "/nonexistent/model")


def test_run_rejects_empty_model_option(capsys, tmp_path, model_dir, image_folder):
    config_text = yaml.safe_dump(base_config(model_dir, image_folder))
    status, stderr, out = run_cli(capsys, tmp_path, config_text, "--model", "")
    assert_config_error(status, stderr, out, "--model", "'model.spec'", "non-empty")


def test_run_rejects_folder_without_model(capsys, tmp_path, image_folder):
    not_a_model = tmp_path / "models"
    not_a_model.mkdir()
    config_text = yaml.safe_dump(base_config(not_a_model, image_folder))
    status, stderr, out = run_cli(capsys, tmp_path, config_text)
    assert_config_error(status, stderr, out, str(not_a_model), "open_clip_config.json", "not an open_clip model folder")


def test_console_command_config_error(tmp_path, model_dir, image_folder):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(base_config(model_dir, image_folder, tiling={"overlap_px": "a lot"})), encoding="utf-8")
    out = tmp_path / "results"
    command = [sys.executable, "-m", "vlm_micro", "run", "--config", str(config), "--out", str(out)]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                               env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert completed.returncode == 1
    assert completed.stdout == ""
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "'tiling.overlap_px'" in lines[0]
    assert '"a lot"' in lines[0]
    assert not out.exists()
