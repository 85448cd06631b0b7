"""The Snakemake workflow: catalog lint, formatting, schema, DAG shape and resources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = REPO_ROOT / "workflow"
SNAKEFILE = WORKFLOW / "Snakefile"


def run_snakemake(*arguments: str, cwd: Path = REPO_ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), *arguments]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def many_images(tmp_path) -> Path:
    """A config file for 45 placeholder images and a placeholder model folder.

    Neither is ever read: the tests only lint and dry-run the workflow.
    """
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "open_clip_config.json").write_text("{}", encoding="utf-8")
    (model_dir / "open_clip_model.safetensors").write_bytes(b"")
    images = tmp_path / "images"
    images.mkdir()
    for index in range(45):
        (images / f"img_{index:03d}.tif").write_bytes(b"")
    config = {
        "images": str(images),
        "sample_sheet": None,
        "out": str(tmp_path / "out"),
        "labels": str(REPO_ROOT / "config" / "labels.yaml"),
        "model": {"spec": f"local-dir:{model_dir}", "device": "cuda"},
        "workflow": {"shard_size": 20, "mem_mb": 1000, "runtime_min": 10},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def dry_run_jobs(config: Path, *extra: str) -> tuple[dict, str]:
    completed = run_snakemake(*extra, "--configfile", str(config), "--dry-run", "--cores", "2", "--quiet", "rules")
    assert completed.returncode == 0, completed.stderr[-3000:]
    counts = {}
    for line in completed.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts, completed.stdout + completed.stderr


def test_lint_reports_nothing(many_images):
    completed = run_snakemake("--lint", "--cores", "1", "--configfile", str(many_images))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Congratulations, your workflow is in a good condition!" in completed.stdout + completed.stderr


def test_snakefmt_check_passes():
    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent)) or shutil.which("snakefmt")
    if snakefmt is None:
        pytest.skip("snakefmt is not installed; pip install -e .[test]")
    completed = subprocess.run([snakefmt, "--check", str(WORKFLOW)], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_snakefile_has_only_rule_all():
    rules = [line for line in SNAKEFILE.read_text(encoding="utf-8").splitlines() if line.startswith("rule ")]
    assert rules == ["rule all:"]


def test_shards_make_few_jobs(many_images):
    counts, _ = dry_run_jobs(many_images)
    assert counts["label_shard"] == 3  # each also writes the reports of its images
    assert counts["shard_image_list"] == 3
    assert counts["summary"] == 1
    assert counts["total"] == 9  # and effective_config and all


def test_label_resources_and_gpu_request(many_images, tmp_path):
    completed = run_snakemake(
        "--configfile", str(many_images), "--dry-run", "--cores", "2", "--printshellcmds",
        "--forcerun", "label_shard", "--until", "label_shard",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    text = completed.stdout + completed.stderr
    assert "gpu=1" in text
    assert "mem_mb=1000" in text
    assert "runtime=10" in text


def test_finetune_target_needs_annotations(many_images):
    completed = run_snakemake("--configfile", str(many_images), "--dry-run", "--cores", "1", "finetune")
    assert completed.returncode != 0
    assert "finetune.annotations is not set" in completed.stdout + completed.stderr


MISSING_ANNOTATION_CASES = [
    ("finetune", "annotations"),
    ("finetune", "reference_annotations"),
    ("evaluate", "annotations"),
]


def config_with_missing_annotations(config_path: Path, tmp_path: Path, section: str, key: str) -> Path:
    """Point ``section.key`` of the config at a missing file, with every other annotation path present."""
    annotations = tmp_path / "annotations.csv"
    annotations.write_text("image_path,image_id,y,x,height,width,cell_type\n", encoding="utf-8")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["finetune"] = {"annotations": str(annotations), "out": str(tmp_path / "finetuned")}
    config["evaluate"] = {"annotations": str(annotations), "out": str(tmp_path / "evaluation")}
    missing = tmp_path / "no such folder" / "missing.csv"
    config[section][key] = str(missing)
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return missing


@pytest.mark.parametrize(("section", "key"), MISSING_ANNOTATION_CASES)
def test_missing_annotations_named_in_dry_run(many_images, tmp_path, section, key):
    missing = config_with_missing_annotations(many_images, tmp_path, section, key)
    completed = run_snakemake("--configfile", str(many_images), "--dry-run", "--cores", "1", section)
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert f"{section}.{key} not found: {missing}; fix the path in the config" in output
    assert "MissingInputException" not in output
    stored = (tmp_path / "out" / "logs" / "workflow_error.txt").read_text(encoding="utf-8")
    assert stored.startswith(f"{section}.{key} not found: {missing};")


@pytest.mark.parametrize(("section", "key"), MISSING_ANNOTATION_CASES)
def test_run_names_missing_annotations_last(many_images, tmp_path, section, key):
    missing = config_with_missing_annotations(many_images, tmp_path, section, key)
    command = [sys.executable, "-m", "vlm_micro", "run", "--config", str(many_images), "--", "--dry-run", section]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                               env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert completed.returncode == 1
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("vlm-micro run: error: the workflow stopped before any job ran: ")
    assert f"{section}.{key} not found: {missing}; fix the path in the config" in last_line


def test_annotation_folder_accepted(many_images, tmp_path):
    folder = tmp_path / "class folders"
    (folder / "lymphocyte").mkdir(parents=True)
    config = yaml.safe_load(many_images.read_text(encoding="utf-8"))
    config["finetune"] = {"annotations": str(folder), "reference_annotations": str(folder), "out": str(tmp_path / "finetuned")}
    many_images.write_text(yaml.safe_dump(config), encoding="utf-8")
    counts, _ = dry_run_jobs(many_images, "finetune")
    assert counts["finetune"] == 1


def test_optional_targets_dry_run(many_images, tmp_path):
    annotations = tmp_path / "annotations.csv"
    annotations.write_text("image_path,image_id,y,x,height,width,cell_type\n", encoding="utf-8")
    config = yaml.safe_load(many_images.read_text(encoding="utf-8"))
    config["finetune"] = {"annotations": str(annotations), "out": str(tmp_path / "finetuned"), "device": "cuda"}
    config["evaluate"] = {"annotations": str(annotations), "out": str(tmp_path / "evaluation")}
    many_images.write_text(yaml.safe_dump(config), encoding="utf-8")
    counts, text = dry_run_jobs(many_images, "finetune", "evaluate")
    assert counts["finetune"] == 1
    assert counts["evaluate"] == 1
    assert "label_shard" not in counts


def test_finetune_passes_reference_annotations(many_images, tmp_path):
    annotations = tmp_path / "annotations.csv"
    reference = tmp_path / "reference.csv"
    for path in (annotations, reference):
        path.write_text("image_path,image_id,y,x,height,width,cell_type\n", encoding="utf-8")
    config = yaml.safe_load(many_images.read_text(encoding="utf-8"))
    config["finetune"] = {"annotations": str(annotations), "out": str(tmp_path / "finetuned"),
                          "reference_annotations": str(reference), "max_reference_drop": 0.01}
    many_images.write_text(yaml.safe_dump(config), encoding="utf-8")
    completed = run_snakemake("--configfile", str(many_images), "--dry-run", "--cores", "1", "finetune")
    assert completed.returncode == 0, completed.stderr[-3000:]
    # The reference file is an input of the job, so changing it fine-tunes again.
    assert str(reference) in completed.stdout + completed.stderr


def test_invalid_config_fails_before_any_job(many_images):
    config = yaml.safe_load(many_images.read_text(encoding="utf-8"))
    config["tiling"] = {"overlap": 3}
    many_images.write_text(yaml.safe_dump(config), encoding="utf-8")
    completed = run_snakemake("--configfile", str(many_images), "--dry-run", "--cores", "1")
    assert completed.returncode != 0
    assert "unknown key 'tiling.overlap'" in completed.stdout + completed.stderr


def walk_properties(schema: dict, prefix: str = ""):
    for name, subschema in schema.get("properties", {}).items():
        yield f"{prefix}{name}", subschema
        yield from walk_properties(subschema, f"{prefix}{name}.")


@pytest.mark.parametrize("name", ["config", "images"])
def test_schema_describes_every_field(name):
    schema = yaml.safe_load((WORKFLOW / "schemas" / f"{name}.schema.yaml").read_text(encoding="utf-8"))
    missing = [key for key, subschema in walk_properties(schema) if not subschema.get("description")]
    assert missing == []


def test_config_file_keys_match_schema():
    schema = yaml.safe_load((WORKFLOW / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    schema_keys = {key for key, subschema in walk_properties(schema)}
    config_keys = set()

    def collect(values, prefix=""):
        for key, value in values.items():
            config_keys.add(f"{prefix}{key}")
            if isinstance(value, dict) and f"{prefix}{key}" != "read.channel_colors":
                collect(value, f"{prefix}{key}.")

    collect(config)
    # Unset, these three are folders inside out, so the bundled config leaves them commented out.
    assert config_keys == schema_keys - {"labeling.text_cache", "finetune.out", "evaluate.out"}


def test_config_file_comments_every_key():
    lines = (REPO_ROOT / "config" / "config.yaml").read_text(encoding="utf-8").splitlines()
    uncommented = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        previous = lines[index - 1]
        previous_indent = len(previous) - len(previous.lstrip())
        # A comment above, or a sibling key just above that shares the comment above it.
        grouped = previous.strip() and not previous.strip().startswith("#") and previous_indent == indent
        if not (previous.strip().startswith("#") or grouped):
            uncommented.append(stripped)
    assert uncommented == []


def test_profiles_are_valid_yaml():
    for name in ("default", "slurm"):
        profile = yaml.safe_load((WORKFLOW / "profiles" / name / "config.yaml").read_text(encoding="utf-8"))
        assert isinstance(profile, dict)
    slurm = yaml.safe_load((WORKFLOW / "profiles" / "slurm" / "config.yaml").read_text(encoding="utf-8"))
    assert slurm["executor"] == "slurm"
    assert slurm["retries"] >= 1


def test_example_sample_sheet_matches_schema():
    schema = yaml.safe_load((WORKFLOW / "schemas" / "images.schema.yaml").read_text(encoding="utf-8"))
    header = (REPO_ROOT / "config" / "images.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert set(header) <= set(schema["properties"])
    assert json.dumps(schema)
