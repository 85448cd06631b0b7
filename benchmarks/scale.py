"""Workflow scale: DAG build time for many images, and workflow overhead on a real run.

Prints ``name: value`` lines:

- ``dag_images``, ``dag_build_s``, ``dag_jobs``: a dry run (``snakemake --dry-run``)
  over 2,000 small images (copies of one 128 px synthetic image). The time includes
  the Python start, the config validation, listing the images and building the DAG.
- ``run_*`` and ``workflow_overhead_ratio``: a real ``vlm-micro run`` over 50
  synthetic 512 px images with the default config. ``run_labelling_s`` sums the
  per-image labelling times (read, tile, label, write) that the shard manifests
  record. ``workflow_overhead_ratio`` is the wall time of the whole run (labelling,
  reports, summary, Snakemake and process starts) over that sum.
  ``run_label_jobs_s`` sums the wall times of the labelling jobs from Snakemake's
  benchmark files. ``run_report_s`` is the time their background processes spent
  writing reports, which overlaps with labelling. ``run_report_wait_s`` is the time
  the labelling jobs waited for those reports after their last image.
- ``alone_labelling_per_image_s``: the images of the first shard labelled again by
  ``vlm-micro process-shard`` without reports, so without a report process beside
  the labelling. ``workflow_overhead_ratio_vs_alone`` is the run's wall time over the
  number of images times that per-image time.
- ``summary_images``, ``summary_s``, ``summary_peak_mb``: ``vlm-micro summarize`` over
  2,000 images made by repeating the real run's status files and tile tables under new
  image ids: its wall time and peak memory. The summary reads every per-image file and
  writes the run tables and the index page.
- ``load_average_start``, ``load_average_end``: the machine's 1-minute load average,
  to judge how much other work ran beside the benchmark.

Usage: python benchmarks/scale.py [--dag-images N] [--run-images N] [--cores N] [--summary-images N]
       [--model SPEC | --untrained-vit-b-32]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO_ROOT / "workflow" / "Snakefile"


def default_model_spec(work: Path) -> str:
    """Return builtin:demo when it is installed, else write a tiny random model and return it."""
    from vlm_micro.model.loading import BUILTIN_DIR, CONFIG_FILE

    if (BUILTIN_DIR / "demo" / CONFIG_FILE).is_file():
        return "builtin:demo"
    import open_clip
    import torch

    from vlm_micro.model import save_model_dir

    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"width": 32, "layers": 1, "patch_size": 8, "image_size": 32, "head_width": 16},
        "text_cfg": {"width": 32, "layers": 1, "context_length": 32, "heads": 2},
    }
    torch.manual_seed(0)
    folder = save_model_dir(open_clip.model.CLIP(**cfg).eval(), cfg, work / "tiny-model", meta={"name": "tiny", "pixel_size_um": 0.5, "tile_size_px": 64})
    print("note: builtin:demo is not installed; using a tiny random model", file=sys.stderr)
    return f"local-dir:{folder}"


def untrained_vit_b_32_spec(work: Path) -> str:
    """Write an untrained open_clip ViT-B-32 (no pretrained weights) with 224 px tiles at 0.5 um/px and return its spec.

    Its weights are random, so its labels mean nothing, but it costs what a ViT-B-32
    class model costs to load and to run.
    """
    import open_clip
    import torch

    from vlm_micro.model import save_model_dir

    torch.manual_seed(0)
    cfg = open_clip.get_model_config("ViT-B-32")
    model = open_clip.create_model("ViT-B-32").eval()
    folder = save_model_dir(model, cfg, work / "vit-b-32", meta={"name": "ViT-B-32 (untrained)", "pixel_size_um": 0.5,
                                                                  "tile_size_px": 224})
    return f"local-dir:{folder}"


def write_config(path: Path, images: Path, out: Path, model_spec: str) -> Path:
    values = {
        "images": str(images),
        "sample_sheet": None,
        "out": str(out),
        "labels": str(REPO_ROOT / "config" / "labels.yaml"),
        "model": {"spec": model_spec},
    }
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def measure_dag(work: Path, n_images: int, model_spec: str) -> dict:
    """Time a dry run over ``n_images`` copies of one small synthetic image."""
    from vlm_micro.synth import generate_dataset

    generate_dataset(work / "one", 1, 3, modality="fluorescence", size_px=128)
    (source,) = (work / "one" / "images").glob("*.ome.tif")
    images = work / "dag-images"
    images.mkdir()
    for index in range(n_images):
        shutil.copyfile(source, images / f"img_{index:05d}.ome.tif")
    config = write_config(work / "dag.yaml", images, work / "dag-out", model_spec)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--configfile", str(config),
               "--directory", str(work), "--dry-run", "--cores", "2", "--quiet", "rules"]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"dry run failed: {completed.stderr[-2000:]}")
    match = re.search(r"^total\s+(\d+)", completed.stdout, flags=re.MULTILINE)
    return {"dag_images": n_images, "dag_build_s": round(elapsed, 2), "dag_jobs": int(match.group(1)) if match else -1}


def vlm_micro_run(config: Path, cores: int, work: Path, extra: list[str]) -> float:
    """Run ``vlm-micro run`` and return its wall time in seconds."""
    command = [sys.executable, "-m", "vlm_micro", "run", "--config", str(config), "--cores", str(cores), *extra]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False, cwd=work)
    if completed.returncode != 0:
        raise SystemExit(f"vlm-micro run failed with exit status {completed.returncode}: {completed.stderr[-2000:]}")
    return time.perf_counter() - start


def job_seconds(out: Path, rule_folder: str) -> float:
    """Sum the wall seconds of a rule's jobs from Snakemake's benchmark files."""
    total = 0.0
    for path in (out / "benchmarks" / rule_folder).glob("*.tsv"):
        lines = path.read_text(encoding="utf-8").splitlines()
        total += float(lines[1].split("\t")[0])
    return total


def measure_run(work: Path, n_images: int, model_spec: str, cores: int) -> dict:
    """Label and report ``n_images`` synthetic 512 px images in one run, and compare the times."""
    from vlm_micro.synth import generate_dataset

    generate_dataset(work / "run-data", n_images, 21, modality="mixed", size_px=512)
    out = work / "run-out"
    config = write_config(work / "run.yaml", work / "run-data" / "images", out, model_spec)
    wall = vlm_micro_run(config, cores, work, [])
    manifests = [json.loads(path.read_text(encoding="utf-8")) for path in (out / "shards").glob("*.manifest.json")]
    labelling = sum(manifest["labelling_s"] for manifest in manifests)
    return {
        "run_images": n_images,
        "run_shards": len(manifests),
        "run_wall_s": round(wall, 1),
        "run_labelling_s": round(labelling, 1),
        "run_labelling_per_image_s": round(labelling / n_images, 2),
        "run_model_load_s": round(sum(manifest["model_load_s"] for manifest in manifests), 1),
        "run_label_jobs_s": round(job_seconds(out, "label"), 1),
        "run_report_s": round(sum(manifest.get("report_s", 0.0) for manifest in manifests), 1),
        "run_report_wait_s": round(sum(manifest.get("report_wait_s", 0.0) for manifest in manifests), 1),
        "workflow_overhead_ratio": round(wall / labelling, 2) if labelling else float("nan"),
    }


def measure_labelling_alone(work: Path, out: Path, threads: int) -> dict:
    """Label the first shard of the run again without reports, and compare the run's wall time with that.

    The labelling jobs of the run write reports in a background process, which slows
    labelling down where the cores are busy. This second pass labels the same images
    into a new folder with no report process beside it.
    """
    payload = json.loads((out / "shards" / "shard_0000.images.json").read_text(encoding="utf-8"))
    payload.update(out=str(work / "alone-out"), report=None)
    shard_file = work / "alone.images.json"
    shard_file.write_text(json.dumps(payload), encoding="utf-8")
    manifest_path = work / "alone.manifest.json"
    command = [sys.executable, "-m", "vlm_micro", "process-shard", str(shard_file), "--manifest", str(manifest_path),
               "--threads", str(threads)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, cwd=work)
    if completed.returncode != 0:
        raise SystemExit(f"process-shard failed with exit status {completed.returncode}: {completed.stderr[-2000:]}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    return {"alone_images": manifest["n_images"],
            "alone_labelling_per_image_s": round(manifest["labelling_s"] / manifest["n_images"], 2)}


# Run in a child process: summarise a results folder and print the process's peak memory in MB.
_SUMMARY_SCRIPT = """
import resource, sys
from vlm_micro.cli import main
status = main(["summarize", "--results", sys.argv[1], "--config", sys.argv[2]])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
sys.exit(status)
"""


def measure_summary(work: Path, run_out: Path, n_images: int) -> dict:
    """Time ``vlm-micro summarize`` over ``n_images`` images made from the real run's results.

    The run's status files and tile tables are repeated under new image ids (tables as
    hard links), so the summary reads as many per-image files as a run of that size.
    """
    out = work / "summary-out"
    for folder in ("status", "tables/tiles"):
        (out / folder).mkdir(parents=True)
    sources = sorted(path.stem for path in (run_out / "status").glob("*.json"))
    for index in range(n_images):
        source, image_id = sources[index % len(sources)], f"img_{index:05d}"
        status = json.loads((run_out / "status" / f"{source}.json").read_text(encoding="utf-8"))
        status["image_id"] = image_id
        (out / "status" / f"{image_id}.json").write_text(json.dumps(status), encoding="utf-8")
        os.link(run_out / "tables" / "tiles" / f"{source}.parquet", out / "tables" / "tiles" / f"{image_id}.parquet")
    config = run_out / "config.yaml"
    start = time.perf_counter()
    completed = subprocess.run([sys.executable, "-c", _SUMMARY_SCRIPT, str(out), str(config)],
                               capture_output=True, text=True, check=False, cwd=work)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"vlm-micro summarize failed with exit status {completed.returncode}: {completed.stderr[-2000:]}")
    with open(out / "images.tsv", encoding="utf-8") as handle:
        n_rows = sum(1 for _ in handle) - 1  # the header line
    return {"summary_images": n_rows, "summary_s": round(elapsed, 1),
            "summary_peak_mb": round(float(completed.stdout.split()[-1]))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dag-images", type=int, default=2000, help="images of the dry run (default 2000; 0 skips it)")
    parser.add_argument("--run-images", type=int, default=50, help="images of the real run (default 50; 0 skips it)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores of the real run (default 2)")
    parser.add_argument("--summary-images", type=int, default=2000,
                        help="images of the summary made from the real run's results (default 2000; 0 skips it)")
    models = parser.add_mutually_exclusive_group()
    models.add_argument("--model", help="model spec (default: builtin:demo, else a tiny random model)")
    models.add_argument("--untrained-vit-b-32", action="store_true",
                        help="label with an untrained ViT-B-32 (224 px tiles), to measure a model of that size")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="vlm-micro-scale-") as tmp:
        work = Path(tmp)
        if args.untrained_vit_b_32:
            model_spec = untrained_vit_b_32_spec(work)
        else:
            model_spec = args.model or default_model_spec(work)
        # The 1-minute load average before and after shows how much other work shared the machine.
        results = {"load_average_start": round(os.getloadavg()[0], 1)}
        if args.dag_images:
            results.update(measure_dag(work, args.dag_images, model_spec))
        if args.run_images:
            results.update(measure_run(work, args.run_images, model_spec, args.cores))
            # The labelling jobs ran with workflow.threads threads, capped by --cores as Snakemake does.
            effective = yaml.safe_load((work / "run-out" / "config.yaml").read_text(encoding="utf-8"))
            threads = min(int(effective["workflow"]["threads"]), args.cores)
            results.update(measure_labelling_alone(work, work / "run-out", threads))
            alone = results["alone_labelling_per_image_s"] * args.run_images
            results["workflow_overhead_ratio_vs_alone"] = round(results["run_wall_s"] / alone, 2)
            if args.summary_images:
                results.update(measure_summary(work, work / "run-out", args.summary_images))
        results["load_average_end"] = round(os.getloadavg()[0], 1)
    if args.untrained_vit_b_32:
        model_name = "untrained ViT-B-32 (local-dir)"
    elif model_spec.startswith("local-dir:") and not args.model:
        model_name = "tiny random model (local-dir)"
    else:
        model_name = model_spec
    print(f"model: {model_name}")
    for name, value in results.items():
        print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
