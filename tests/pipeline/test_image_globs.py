"""Image paths whose names contain glob characters are taken literally when they exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_micro.config import expand_images, list_images
from vlm_micro.errors import ConfigError

from .test_images import touch




@pytest.mark.parametrize("name", ["a[1].tif", "b]x.tif", "c*.tif", "d?.tif", "e[!x].tif", "[f].tif"])
def test_existing_file_with_glob_characters(tmp_path, name):
    # Each name, read as a pattern, would also match (or only match) the plain files.
    (path,) = touch(tmp_path, name)
    touch(tmp_path, "a1.tif", "bx.tif", "c1.tif", "d1.tif", "e1.tif", "f.tif")
    assert expand_images(str(path)) == [path.absolute()]


def test_existing_folder_with_glob_characters(tmp_path):
    literal = tmp_path / "plate[1]"
    touch(literal, "x.tif")
    touch(tmp_path / "plate1", "y.tif")
    assert [p.name for p in expand_images(str(literal))] == ["x.tif"]


@pytest.mark.parametrize("pattern", ["plate[1]/*.tif", "plate[1]/?.tif", "plate[1]/**/*.tif"])
def test_pattern_below_literal_folder(tmp_path, pattern):
    touch(tmp_path / "plate[1]", "x.tif")
    touch(tmp_path / "plate1", "y.tif")
    assert [p.name for p in expand_images(str(tmp_path / pattern))] == ["x.tif"]


def test_missing_path_is_still_a_glob(tmp_path):
    touch(tmp_path, "a1.tif", "a2.tif", "a[1].tif")
    found = [p.name for p in expand_images(str(tmp_path / "a[12].tif"))]
    assert found == ["a1.tif", "a2.tif"]
    found = [p.name for p in expand_images(str(tmp_path / "a?.tif"))]
    assert found == ["a1.tif", "a2.tif"]


def test_star_file_and_pattern_in_one_list(tmp_path):
    touch(tmp_path, "a*.tif", "a1.tif", "b.tif")
    entries = list_images({"images": [str(tmp_path / "a*.tif"), str(tmp_path / "b*.tif")], "sample_sheet": None})
    assert sorted(Path(entry.path).name for entry in entries) == ["a*.tif", "b.tif"]


def test_glob_below_missing_folder_names_pattern(tmp_path):
    pattern = str(tmp_path / "plate[2]" / "*.tif")
    with pytest.raises(ConfigError, match="no image files found") as info:
        expand_images(pattern)
    assert pattern in str(info.value)


def test_recursive_glob_leaves_out_results_folder(tmp_path):
    images = touch(tmp_path, "a.tif", "plate/b.tif", "results/exports/a_labels.ome.tif")
    config = {"images": str(tmp_path / "**" / "*.tif"), "sample_sheet": None, "out": str(tmp_path / "results")}
    listed = [Path(entry.path) for entry in list_images(config)]
    assert listed == images[:2]
