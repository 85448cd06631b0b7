"""The `vlm-micro inspect` command: JSON contract, summary text, one-line errors."""

import json
from pathlib import Path

import numpy as np
import tifffile

from vlm_micro.cli import main

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def run_inspect(capsys, *args):
    status = main(["inspect", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_inspect_json_contract(capsys):
    status, out, _ = run_inspect(capsys, "--json", DATA_DIR / "nuclei_img2d.tif")
    info = json.loads(out)
    assert status == 0
    assert info["axes"] == "YX"
    assert info["shape"] == [512, 512]
    assert info["dtype"] == "uint16"
    assert info["series"] == 1
    assert info["pixel_size_um"] is None
    for key in ("channels", "levels", "series_list", "reader_choice"):
        assert key in info


def test_inspect_json_svs(capsys):
    status, out, _ = run_inspect(capsys, "--json", DATA_DIR / "cmu_small_region.svs")
    info = json.loads(out)
    assert status == 0
    assert info["pixel_size_um"] == 0.499
    assert info["shape"] == [2967, 2220, 3]
    assert info["reader_choice"]["series"] == [0]
    assert [s["role"] for s in info["series_list"]] == ["image", "thumbnail", "label", "macro"]


def test_inspect_json_hyperstack(capsys, tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((2, 3, 2, 8, 8), np.uint16), imagej=True,
                     resolution=(2.0, 2.0), metadata={"axes": "TZCYX", "unit": "um"})
    _, out, _ = run_inspect(capsys, "--json", path)
    info = json.loads(out)
    choice = info["reader_choice"]["per_series"][0]
    assert info["pixel_size_um"] == 0.5
    assert choice["frames"] == [0, 1]
    assert choice["projection"] == "max"
    assert info["reader_choice"]["views"] == 2


def test_inspect_summary_text(capsys):
    status, out, _ = run_inspect(capsys, DATA_DIR / "cmu_small_region.svs")
    assert status == 0
    assert "Aperio SVS" in out
    assert "pixel size 0.499 um/px (SVS description)" in out
    assert "'Label': label" in out
    assert "reader uses: series [0], 1 view(s)" in out


def test_inspect_series_option(capsys, tmp_path):
    path = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as writer:
        writer.write(np.zeros((8, 8), np.uint8), metadata={"Name": "a"})
        writer.write(np.zeros((4, 4), np.uint8), metadata={"Name": "b"})
    _, out, _ = run_inspect(capsys, "--json", "--series", "1", path)
    info = json.loads(out)
    assert info["reader_choice"]["series"] == [1]
    assert info["shape"] == [4, 4]


def test_inspect_config_read_section(capsys, tmp_path):
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), imagej=True, metadata={"axes": "ZYX"})
    config = tmp_path / "config.yaml"
    config.write_text("read:\n  z_projection: middle\n")
    _, out, _ = run_inspect(capsys, "--json", "--config", config, path)
    assert json.loads(out)["reader_choice"]["per_series"][0]["projection"] == "middle"


def test_inspect_error_one_line(capsys, tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 12)
    status, out, err = run_inspect(capsys, "--json", path)
    errors = [line for line in err.splitlines() if line.startswith("vlm-micro inspect: error:")]
    assert status == 1
    assert out == ""
    assert len(errors) == 1
    assert str(path) in errors[0]
    assert "Traceback" not in err


def test_inspect_invalid_config_value(capsys, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("read:\n  z_projection: sum\n")
    status, _, err = run_inspect(capsys, "--config", config, DATA_DIR / "nuclei_img2d.tif")
    assert status == 1
    assert "read.z_projection" in err


def truncated_ome_tiff(tmp_path: Path, tile: tuple | None = None) -> Path:
    """Write a 512 x 512 uint16 OME-TIFF with zlib compression and cut it to 60 % of its bytes."""
    path = tmp_path / "cut.ome.tif"
    pixels = np.random.default_rng(0).integers(0, 4000, (512, 512), dtype=np.uint16)
    tifffile.imwrite(path, pixels, compression="zlib", ome=True, tile=tile, metadata={"axes": "YX"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def test_inspect_json_truncated_tiff(capsys, tmp_path):
    for tile in (None, (128, 128)):
        path = truncated_ome_tiff(tmp_path, tile)
        status, out, _ = run_inspect(capsys, "--json", path)
        info = json.loads(out)
        problem = info["series_list"][0]["problem"]
        assert status == 0
        assert problem is not None
        assert problem.startswith("file is truncated: image data ends at byte ")
        assert problem.endswith(f"but the file has {path.stat().st_size} bytes; copy or export the image again")
        assert info["reader_choice"]["views"] == 0
        assert info["reader_choice"]["per_series"] == [{"series": 0, "problem": problem}]


def test_inspect_summary_truncated_tiff(capsys, tmp_path):
    path = truncated_ome_tiff(tmp_path)
    status, out, _ = run_inspect(capsys, path)
    assert status == 0
    assert "      cannot be read: file is truncated: image data ends at byte " in out
    assert "reader uses: series [0], 0 view(s)" in out


def test_inspect_complete_tiff_has_no_problem(capsys, tmp_path):
    path = tmp_path / "whole.ome.tif"
    tifffile.imwrite(path, np.ones((512, 512), np.uint16), compression="zlib", ome=True, metadata={"axes": "YX"})
    _, out, _ = run_inspect(capsys, "--json", path)
    info = json.loads(out)
    assert info["series_list"][0]["problem"] is None
    assert info["reader_choice"]["views"] == 1
