# Configuration, image list, shards and the helpers that the rules call.
#
# The image list is built when the DAG is built: from the sample sheet when the
# config sets one, else from the images folder or glob. Images are split, in order,
# into shards of workflow.shard_size; one labelling job handles one shard.
import gc
import os
import subprocess
import sys
import threading

from vlm_micro.atomic import write_text
from vlm_micro.config import (
    labelling_settings,
    list_images,
    shard_images,
    validate_config,
)
from vlm_micro.errors import ConfigError
from vlm_micro.pipeline.outputs import file_signature
from vlm_micro.pipeline.run import record_workflow_error
from vlm_micro.pipeline.shard import write_shard_file

config.update(
    validate_config(
        config, source=", ".join(map(str, workflow.configfiles)) or "config"
    )
)

OUT = config["out"]
SETTINGS = labelling_settings(config)
IMAGES = list_images(config)
SHARDS = shard_images(IMAGES, config["workflow"]["shard_size"])


wildcard_constraints:
    shard=r"shard_[0-9]+",


def out(path):
    """Return ``path`` below the results folder."""
    return os.path.join(OUT, path)


def get_final_outputs():
    """Return the run-level outputs and every shard manifest, which the default target asks for.

    The manifests are targets of their own, not only inputs of the summary. Snakemake
    rebuilds a missing intermediate file only when a target is older than its sources,
    so after `vlm-micro summarize` had written the run tables of an unfinished run, a
    rerun found the targets up to date and left the unlabelled shards undone.
    """
    names = ("images.tsv", "conditions.tsv", "tables/tiles.parquet", "index.html")
    manifests = [out(f"shards/{shard}.manifest.json") for shard in SHARDS]
    return [out(name) for name in names] + manifests


def get_shard_entries(wildcards):
    """Return the image entries (as dicts) of one shard."""
    return [entry.to_dict() for entry in SHARDS[wildcards.shard]]


def get_shard_sources(wildcards):
    """Return the size and modification time of each image file of one shard.

    A shard parameter, so that a fixed, replaced or edited image file changes the
    parameters of its shard and Snakemake runs the shard again.
    """
    return [file_signature(entry.path) for entry in SHARDS[wildcards.shard]]


def get_shard_image_ids(wildcards):
    """Return the image ids of one shard."""
    return [entry.image_id for entry in SHARDS[wildcards.shard]]


def wants_gpu(device):
    """Return 1 when a torch device string asks for CUDA, else 0 (the gpu resource)."""
    return 1 if str(device).startswith("cuda") else 0


def get_label_mem_mb(wildcards, attempt):
    """Return the memory of a labelling job in MB, growing with each retry."""
    return config["workflow"]["mem_mb"] * attempt


def get_label_runtime(wildcards, attempt):
    """Return the run time limit of a labelling job in minutes, growing with each retry."""
    return config["workflow"]["runtime_min"] * attempt


def run_vlm_micro(arguments, log_path):
    """Run `vlm-micro ARGUMENTS` with stdout and stderr appended to ``log_path``.

    The arguments go to the subprocess as a list, never through a shell, so file
    names with spaces or shell characters are passed unchanged.
    """
    command = [sys.executable, "-m", "vlm_micro", "-v", *map(str, arguments)]
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log_file:
        log_file.write(f"$ {' '.join(command)}\n")
        log_file.flush()
        completed = subprocess.run(
            command, stdout=log_file, stderr=subprocess.STDOUT, check=False
        )
    if completed.returncode != 0:
        raise RuntimeError(
            f"vlm-micro {arguments[0]} failed with exit status {completed.returncode}; see {log_path}"
        )


def write_config_file(path, values):
    """Write the effective configuration as YAML."""
    import yaml

    header = "# Effective configuration of this run, with every default filled in.\n"
    write_text(path, header + yaml.safe_dump(values, sort_keys=False))


def workflow_config_error(message):
    """Return a ConfigError for an input function to raise, after storing its message.

    `vlm-micro run` shows the stored message as its final line. Otherwise it would be
    visible only in the middle of snakemake's output.
    """
    record_workflow_error(OUT, message)
    return ConfigError(message)


def get_annotation_path(section, key):
    """Return ``config[section][key]``, an annotation table or folder that must exist.

    Unset or missing paths raise an error naming the key, so the user does not have to
    decode snakemake's MissingInputException.
    """
    value = config[section][key]
    if not value:
        raise workflow_config_error(
            f"{section}.{key} is not set; set it in the config to an annotations.csv "
            f"(for example one written by `vlm-micro synth`) to build the {section} target"
        )
    if not os.path.exists(value):
        raise workflow_config_error(
            f"{section}.{key} not found: {value}; fix the path in the config or create the "
            "annotations there (a CSV, TSV or parquet table, or a folder with one subfolder per class)"
        )
    return value


def get_finetune_annotations(wildcards):
    """Return the annotations.csv of the finetune target."""
    return get_annotation_path("finetune", "annotations")


def get_finetune_reference(wildcards):
    """Return the reference annotations of the finetune target, or nothing when unset."""
    if not config["finetune"]["reference_annotations"]:
        return []
    return [get_annotation_path("finetune", "reference_annotations")]


def get_evaluate_annotations(wildcards):
    """Return the annotations.csv of the evaluate target."""
    return get_annotation_path("evaluate", "annotations")


def get_finetune_arguments(input, params):
    """Return the `vlm-micro finetune` arguments; the other settings come from --config."""
    settings = config["finetune"]
    arguments = ["finetune", "--config", input.config, "--base", params.base]
    arguments += ["--annotations", input.annotations, "--out", params.folder]
    if input.reference:
        arguments += ["--reference-annotations", input.reference[0]]
    flags = ("lock_image", "lock_text", "include_uncorrected")
    arguments += [f"--{flag.replace('_', '-')}" for flag in flags if settings[flag]]
    if not settings["resume"]:
        arguments.append("--no-resume")
    return arguments


def end_run_quickly():
    """Let the snakemake process exit as soon as the run is over.

    Two things delayed the exit of a finished run by about 1.2 s on 2 cores:

    - Each pass of Snakemake's job scheduler starts a one-second ``threading.Timer``
      (the timespan of ``--max-jobs-per-timespan``, 100/1s by default) that wakes the
      scheduler again. These timers are not daemon threads, so the process waited
      for the last one. The onsuccess and onerror handlers that call this function
      run after the scheduler has finished, when a wake-up has nothing left to do.
      Only timers started by the scheduler's ``_schedule_reevalutation`` (spelled so
      in Snakemake) are cancelled; with another Snakemake none are found.
    - The interpreter's shutdown walked every object of Snakemake and its imports.
      ``gc.freeze`` moves them to the permanent generation, which the shutdown skips.
    """
    for thread in threading.enumerate():
        function = getattr(thread, "function", None)
        if isinstance(thread, threading.Timer) and "_schedule_reevalutation" in getattr(
            function, "__qualname__", ""
        ):
            thread.cancel()
    gc.freeze()
