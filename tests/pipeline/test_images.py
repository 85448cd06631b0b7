"""Image lists: folders, globs, sample sheets, image ids and shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_micro.config import (
    ImageEntry,
    derive_image_ids,
    expand_images,
    list_images,
    load_sample_sheet,
    safe_image_id,
    shard_images,
)
from vlm_micro.errors import ConfigError

HEADER = "path\timage_id\tcondition\treplicate\tpixel_size_um\n"


def touch(folder: Path, *names: str) -> list[Path]:
    paths = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        paths.append(path)
    return paths


def write_sheet(folder: Path, text: str) -> Path:
    path = folder / "images.tsv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "name, expected",
    [
        ("plate1_A01.ome.tif", "plate1_A01"),
        ("plate1_A01.OME.TIFF", "plate1_A01"),
        ("slide.svs", "slide"),
        ("field 3 (copy).png", "field_3_copy"),
        ("Zelle_ä_ß.jpg", "Zelle_a"),
        ("<img src=x onerror=alert(1)>.tif", "img_src_x_onerror_alert_1"),
        ("...hidden.tif", "hidden"),
        ("###.tif", "image"),
        ("notes.txt", "notes"),
        ("a" * 150 + ".tif", "a" * 100),
    ],
)
def test_safe_image_id_cases(name, expected):
    assert safe_image_id(name) == expected


def test_derive_ids_unique_and_stable(tmp_path):
    paths = touch(tmp_path, "a/x.tif", "b/x.tif", "c/X.tif", "y.png")
    ids = derive_image_ids(paths)
    assert len({i.lower() for i in ids}) == 4
    assert ids[3] == "y"
    assert all(i.startswith(("x_", "X_")) for i in ids[:3])
    assert derive_image_ids(paths) == ids


def test_derive_ids_independent_of_root(tmp_path):
    first = touch(tmp_path / "one", "a/x.tif", "b/x.tif")
    second = touch(tmp_path / "two" / "deeper", "a/x.tif", "b/x.tif")
    assert derive_image_ids(first) == derive_image_ids(second)


def test_derive_ids_avoid_reserved(tmp_path):
    paths = touch(tmp_path, "x.tif")
    assert derive_image_ids(paths, reserved={"X"}) != ["x"]


def test_expand_folder_keeps_supported(tmp_path):
    touch(tmp_path, "b.ome.tif", "a.png", "notes.txt", ".hidden.tif", "sub/c.tif")
    assert [p.name for p in expand_images(tmp_path)] == ["a.png", "b.ome.tif"]


def test_expand_glob_keeps_every_match(tmp_path):
    touch(tmp_path, "a.tif", "b.txt", "sub/c.tif")
    assert [p.name for p in expand_images(str(tmp_path / "*"))] == ["a.tif", "b.txt"]
    assert [p.name for p in expand_images(str(tmp_path / "**" / "*.tif"))] == ["a.tif", "c.tif"]


def test_expand_single_file(tmp_path):
    (path,) = touch(tmp_path, "one.tif")
    assert expand_images(path) == [path.absolute()]


def test_expand_nothing_found(tmp_path):
    touch(tmp_path, "notes.txt")
    with pytest.raises(ConfigError, match="no image files found"):
        expand_images(tmp_path)
    with pytest.raises(ConfigError, match="no image files found"):
        expand_images(str(tmp_path / "*.tif"))
    with pytest.raises(ConfigError, match="neither a folder"):
        expand_images(tmp_path / "missing")


def test_list_images_from_folder(tmp_path):
    touch(tmp_path, "b.tif", "a.tif")
    entries = list_images({"images": str(tmp_path), "sample_sheet": None})
    assert [e.image_id for e in entries] == ["a", "b"]
    assert entries[0].path == str((tmp_path / "a.tif").absolute())


def test_sample_sheet_valid(tmp_path):
    touch(tmp_path, "img/a.tif", "img/b.png")
    sheet = write_sheet(tmp_path, HEADER + "img/a.tif\t\tcontrol\t1\t0.5\nimg/b.png\tB-1\ttreated\t2\t\n")
    entries = load_sample_sheet(sheet)
    assert [e.image_id for e in entries] == ["a", "B-1"]
    assert entries[0].pixel_size_um == 0.5
    assert entries[1].pixel_size_um is None
    assert entries[0].metadata == {"condition": "control", "replicate": "1"}
    assert entries[1].path == str((tmp_path / "img" / "b.png").absolute())


def test_sample_sheet_extra_columns_are_metadata(tmp_path):
    touch(tmp_path, "a.tif")
    sheet = write_sheet(tmp_path, "path\twell\tplate\na.tif\tA01\tP1\n")
    (entry,) = load_sample_sheet(sheet)
    assert entry.metadata == {"well": "A01", "plate": "P1"}


def test_sample_sheet_metadata_order_kept(tmp_path):
    import json

    touch(tmp_path, "a.tif", "b.tif")
    sheet = write_sheet(tmp_path, "path\tzeta\timage_id\tcondition\talpha\na.tif\tz\t\tc\t\nb.tif\t\t\t\tx\n")
    first, second = load_sample_sheet(sheet)
    assert first.metadata_columns == ["zeta", "condition", "alpha"]
    assert second.metadata_columns == ["zeta", "condition", "alpha"]
    assert first.metadata == {"zeta": "z", "condition": "c"}
    assert second.metadata == {"alpha": "x"}
    # Shard files are written with sorted keys; the column list survives that.
    restored = ImageEntry.from_dict(json.loads(json.dumps(first.to_dict(), sort_keys=True)))
    assert restored.metadata_columns == ["zeta", "condition", "alpha"]
    assert restored == first


def test_sample_sheet_only_path_column(tmp_path):
    touch(tmp_path, "a.tif")
    sheet = write_sheet(tmp_path, "path\na.tif\n\n")
    assert [e.image_id for e in load_sample_sheet(sheet)] == ["a"]


@pytest.mark.parametrize(
    "rows, expected",
    [
        ("a.tif\t\t\t\t0\n", "pixel_size_um"),
        ("a.tif\t\t\t\t-0.5\n", "pixel_size_um"),
        ("a.tif\t\t\t\tabc\n", "is not a number"),
        ("a.tif\t\t\t\tnan\n", "is not finite"),
        ("a.tif\t\t\t\t1000\n", "pixel_size_um"),
        ("missing.tif\t\t\t\t\n", "image file not found"),
        ("a.tif\tbad id\t\t\t\n", "'image_id'"),
        ("a.tif\tX\t\t\t\nb.tif\tx\t\t\t\n", "image_id 'x' is already used on line 2"),
        ("a.tif\t\t\t\t\na.tif\t\t\t\t\n", "already listed on line 2"),
        ("a.tif\t\t\n", "has 3 columns but the header has 5"),
    ],
)
def test_sample_sheet_invalid_rows(tmp_path, rows, expected):
    touch(tmp_path, "a.tif", "b.tif")
    sheet = write_sheet(tmp_path, HEADER + rows)
    with pytest.raises(ConfigError, match=expected) as info:
        load_sample_sheet(sheet)
    message = str(info.value)
    assert "\n" not in message
    assert "images.tsv line" in message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "sample sheet is empty"),
        ("image\tcondition\na.tif\tx\n", "no 'path' column"),
        ("path,condition\na.tif,x\n", "not tab-separated"),
        ("path;condition\na.tif;x\n", "not tab-separated"),
        ("path condition\na.tif x\n", "not tab-separated"),
        ("Path\tcondition\na.tif\tx\n", "column 'Path' must be named 'path'"),
        ("path\tCondition\na.tif\tx\n", "column 'Condition' must be named 'condition'"),
        ("path\tpath\na.tif\ta.tif\n", "appears twice"),
        ("path\n", "lists no images"),
    ],
)
def test_sample_sheet_invalid_layout(tmp_path, text, expected):
    touch(tmp_path, "a.tif")
    with pytest.raises(ConfigError, match=expected):
        load_sample_sheet(write_sheet(tmp_path, text))


@pytest.mark.parametrize("header", ["Path\tcondition", "file\tcondition", "file", "image file", "PATH"])
def test_tab_hint_only_for_csv_header(tmp_path, header):
    touch(tmp_path, "a.tif")
    with pytest.raises(ConfigError) as info:
        load_sample_sheet(write_sheet(tmp_path, f"{header}\na.tif\tx\n"))
    message = str(info.value)
    assert "separated" not in message
    assert "'path'" in message


def test_invalid_image_id_rule_in_words(tmp_path):
    touch(tmp_path, "a.tif")
    with pytest.raises(ConfigError) as info:
        load_sample_sheet(write_sheet(tmp_path, "path\timage_id\na.tif\t_a b\n"))
    message = str(info.value)
    assert "images.tsv line 2: invalid value \"_a b\" for 'image_id'" in message
    assert "it must start with a letter or digit and contain only letters, digits, '.', '_' and '-'" in message
    assert "at most 100 characters" in message
    assert "^[" not in message


def test_sample_sheet_missing(tmp_path):
    with pytest.raises(ConfigError, match="sample sheet not found"):
        load_sample_sheet(tmp_path / "images.tsv")


def test_example_sheet_lists_demo_images():
    sheet = Path(__file__).resolve().parents[2] / "config" / "images.tsv"
    lines = sheet.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["path", "image_id", "condition", "replicate", "pixel_size_um"]
    assert any(line.startswith("../demo_data/images/cell.png\tcell\t") and line.endswith("\t0.107") for line in lines)


def test_shards_split_in_order():
    entries = [ImageEntry(f"i{n}", f"/x/{n}.tif") for n in range(45)]
    shards = shard_images(entries, 20)
    assert list(shards) == ["shard_0000", "shard_0001", "shard_0002"]
    assert [len(v) for v in shards.values()] == [20, 20, 5]
    assert shards["shard_0002"][0].image_id == "i40"


def test_shards_reject_zero_size():
    with pytest.raises(ConfigError, match="shard_size"):
        shard_images([], 0)


def test_list_images_from_several_specs(tmp_path):
    # A glob that the shell expanded arrives as several file names.
    for name in ("a.tif", "b.tif", "c.png"):
        (tmp_path / name).write_bytes(b"")
    config = {"sample_sheet": None, "images": [str(tmp_path / "a.tif"), str(tmp_path / "*.png"), str(tmp_path / "a.tif")]}
    entries = list_images(config)
    assert [Path(entry.path).name for entry in entries] == ["a.tif", "c.png"]
