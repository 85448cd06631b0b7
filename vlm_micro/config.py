"""Workflow configuration and image lists: loading, validation and path resolution.

The configuration is a YAML file (``config/config.yaml``) checked against the JSON
Schema in ``workflow/schemas/config.schema.yaml`` before any work starts: unknown keys,
wrong types and out-of-range values fail with one line naming the key, the value and
the fix. Defaults from the schema fill every missing key, so code downstream can index
the returned dict directly.

The images to label come from a folder, a glob pattern or a tab-separated sample sheet
(validated against ``workflow/schemas/images.schema.yaml``). Each image gets an
``image_id``: safe characters only, unique ignoring case, and the same on every run.
"""

from __future__ import annotations

import copy
import csv
import functools
import glob
import hashlib
import json
import logging
import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vlm_micro.errors import ConfigError
from vlm_micro.yaml_files import UniqueKeySafeLoader, yaml_error_text

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_DIR = REPO_ROOT / "workflow"
SCHEMA_DIR = WORKFLOW_DIR / "schemas"
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"
DEFAULT_LABELS = REPO_ROOT / "config" / "labels.yaml"

# Longest first, so that "a.ome.tif" loses ".ome.tif" and not only ".tif".
SUPPORTED_EXTENSIONS = (
    ".ome.tiff", ".ome.tif", ".ome.btf", ".tiff", ".tif", ".btf",
    ".svs", ".ndpi", ".scn", ".png", ".jpeg", ".jpg",
)
SAMPLE_SHEET_COLUMNS = ("path", "image_id", "condition", "replicate", "pixel_size_um")
# Config sections that change labels and scores; their checksum decides whether an
# image labelled by an earlier run can be reused.
LABELLING_SECTIONS = ("model", "read", "tiling", "labeling")

# Paths that a run writes, whose defaults are placed inside the results folder ``out``:
# (section, key, path below out). A relative default would otherwise resolve against the
# directory snakemake runs in, which `vlm-micro run` sets to the results folder.
OUTPUT_PATH_DEFAULTS = (
    ("labeling", "text_cache", os.path.join(".cache", "text_embeddings")),
    ("finetune", "out", "finetuned"),
    ("evaluate", "out", "evaluation"),
)

_IMAGE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_ID_LENGTH = 100
_GLOB_CHARACTERS = frozenset("*?[")


@dataclass
class ImageEntry:
    """One image of a run, as listed by a folder, a glob or a sample sheet row."""

    image_id: str
    path: str  # absolute path of the image file
    pixel_size_um: float | None = None  # override from the sample sheet, um/px
    metadata: dict = field(default_factory=dict)  # sample sheet columns (condition, replicate, ...)
    # Every metadata column of the sample sheet in header order, also those empty in this
    # row. JSON files are written with sorted keys, so the order is kept here.
    metadata_columns: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"image_id": self.image_id, "path": self.path, "pixel_size_um": self.pixel_size_um,
                "metadata": dict(self.metadata), "metadata_columns": list(self.metadata_columns)}

    @classmethod
    def from_dict(cls, data: dict) -> "ImageEntry":
        metadata = dict(data.get("metadata") or {})
        columns = list(data.get("metadata_columns") or metadata)
        return cls(data["image_id"], data["path"], data.get("pixel_size_um"), metadata, columns)


# --------------------------------------------------------------------------- schemas


@functools.lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """Read ``workflow/schemas/<name>.schema.yaml``."""
    path = SCHEMA_DIR / f"{name}.schema.yaml"
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"schema file not found: {path}; vlm-micro needs its source tree (install it with `pip install -e .` from a checkout)"
        ) from None


def fill_defaults(schema: dict, instance: object) -> object:
    """Return a copy of ``instance`` with every missing key set to the schema's default."""
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return copy.deepcopy(instance)
    out = copy.deepcopy(instance)
    for key, subschema in schema.get("properties", {}).items():
        if key not in out and "default" in subschema:
            out[key] = copy.deepcopy(subschema["default"])
        if key in out:
            out[key] = fill_defaults(subschema, out[key])
    return out


def _schema_error_message(error, source: str, override_sources: Mapping[str, str] | None = None) -> str:
    """Turn a jsonschema ValidationError into one line naming the key, value and fix.

    A value that came from an override named in ``override_sources`` is blamed on that
    name (such as ``--images``) instead of the file ``source``.
    """
    key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    origin = override_origin(key, override_sources)
    fix = "Fix it in that file" if origin is None else f"Fix the value given with {origin}"
    if origin is not None:
        source = origin
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        where = f"{key}." if error.absolute_path else ""
        return (
            f"{source}: unknown key '{where}{unknown[0]}'; allowed keys here: {', '.join(allowed)}. "
            "Fix the spelling or remove the key (see docs/configuration.md)"
        )
    if error.validator == "required":
        return f"{source}: {error.message} in '{key}'; add it"
    value = json.dumps(error.instance, default=str)
    if len(value) > 80:
        value = value[:77] + "..."
    reason = error.message if error.validator != "oneOf" else "it matches none of the allowed forms"
    if error.validator == "pattern" and error.schema.get("x-pattern-rule"):
        reason = " ".join(str(error.schema["x-pattern-rule"]).split())
    if error.validator == "enum":
        reason = "allowed values are " + ", ".join(json.dumps(v) for v in error.validator_value)
    description = " ".join(str(error.schema.get("description", "")).split())
    hint = f" ({description})" if description and len(description) <= 160 else ""
    return f"{source}: invalid value {value} for '{key}': {reason}. {fix}{hint}"


def override_origin(key: str, override_sources: Mapping[str, str] | None) -> str | None:
    """Return the name that ``override_sources`` gives to dotted ``key`` or a section above it, or None."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        name = (override_sources or {}).get(".".join(parts[:end]))
        if name:
            return name
    return None


def _has_key(values: dict, key: str) -> bool:
    """Return True when the nested mappings of ``values`` contain dotted ``key``."""
    for part in key.split("."):
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


def validate_against_schema(
    instance: object, schema_name: str, source: str, override_sources: Mapping[str, str] | None = None
) -> object:
    """Validate ``instance`` against a schema, fill its defaults and return the result.

    Raises
    ------
    ConfigError
        For the first (most relevant) violation, in one line.
    """
    import jsonschema

    schema = load_schema(schema_name)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        raise ConfigError(_schema_error_message(error, source, override_sources))
    return fill_defaults(schema, instance)


# --------------------------------------------------------------------------- config


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping with the safe loader; an empty file is an empty mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}; pass an existing file (see config/config.yaml)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config file {path}: byte {exc.start} is not UTF-8 text; save the file as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    try:
        data = yaml.load(text, Loader=UniqueKeySafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {yaml_error_text(exc)}; fix the syntax at the position given") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got {type(data).__name__}")
    return data


def merge_overrides(base: dict, overrides: dict | None) -> dict:
    """Return ``base`` updated recursively with ``overrides`` (mappings merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(
    path: str | os.PathLike | None = None,
    overrides: dict | None = None,
    *,
    base_dir: str | os.PathLike | None = None,
    check_files: bool = True,
    check_settings: bool = True,
    override_sources: Mapping[str, str] | None = None,
) -> dict:
    """Load, validate and complete a workflow configuration.

    Parameters
    ----------
    path : path-like, optional
        YAML config file; ``config/config.yaml`` of the source tree when omitted.
    overrides : dict, optional
        Values that replace those of the file (mappings are merged key by key), for
        example ``{"images": "data/*.tif", "out": "results/run1"}``.
    base_dir : path-like, optional
        When given, relative paths of the file's own values are resolved against it and
        those in ``overrides`` against the current directory, so the result contains
        only absolute paths. Without it, paths stay as written.
    check_files, check_settings : bool
        Also check that input files exist (:func:`check_config_files`) and that each
        part accepts its section (:func:`check_section_settings`).
    override_sources : mapping, optional
        Dotted key -> name of where its override came from, such as
        ``{"model.spec": "--model"}``. Errors about that value name it instead of the
        file. Keys that ``overrides`` does not set are ignored.

    Returns
    -------
    dict
        The configuration with every default filled in.

    Raises
    ------
    ConfigError
        One line naming the key or file, the value and the fix.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    raw = read_yaml(path)
    if base_dir is not None:
        raw = resolve_paths(raw, base_dir)
        overrides = resolve_paths(overrides or {}, Path.cwd())
    merged = merge_overrides(raw, overrides)
    sources = {key: name for key, name in (override_sources or {}).items() if _has_key(overrides or {}, key)}
    return validate_config(merged, source=str(path), check_files=check_files, check_settings=check_settings,
                           override_sources=sources)


def validate_config(
    config: dict,
    source: str = "config",
    *,
    check_files: bool = True,
    check_settings: bool = True,
    override_sources: Mapping[str, str] | None = None,
) -> dict:
    """Validate a config mapping against the schema and return it with defaults filled in.

    With ``check_files``, the model spec's form and its local files are checked too,
    without loading the model (:func:`vlm_micro.model.spec_checks.check_model_spec`).
    ``override_sources`` names where overridden values came from (see
    :func:`load_config`). The default of each path in :data:`OUTPUT_PATH_DEFAULTS` is
    placed inside ``out``.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: expected a mapping of config keys, got {type(config).__name__}")
    if "labels" not in config:
        # The schema's relative default only exists when the run starts in the source tree;
        # a config without labels gets the bundled vocabulary wherever it runs.
        config = {**config, "labels": str(DEFAULT_LABELS)}
    unset_outputs = [entry for entry in OUTPUT_PATH_DEFAULTS if not _has_key(config, f"{entry[0]}.{entry[1]}")]
    config = validate_against_schema(config, "config", source, override_sources)
    if "{" in str(config["out"]) or "}" in str(config["out"]):
        raise ConfigError(
            f"{_value_origin('out', source, override_sources)}: results folder {config['out']!r} contains '{{' or '}}', "
            "which Snakemake reads as a wildcard; choose a folder name without braces"
        )
    for section, key, below_out in unset_outputs:
        config[section][key] = os.path.join(config["out"], below_out)
    if check_files:
        from vlm_micro.model.spec_checks import check_model_spec, folder_tile_size

        check_model_spec(config["model"]["spec"], _value_origin("model.spec", source, override_sources))
        check_config_files(config, source, override_sources)
        # Checked here so that a run stops before it starts, not at every image. The tile
        # size of a hub model or ARCH@FILE spec is known only once the model is loaded.
        tile = config["model"].get("tile_size_px") or folder_tile_size(config["model"]["spec"])
        overlap = config["tiling"]["overlap_px"]
        if tile and overlap >= tile:
            raise ConfigError(
                f"{source}: tiling.overlap_px: {overlap} must be smaller than the tile size {tile} px of model "
                f"{config['model']['spec']!r}; lower it"
            )
    if check_settings:
        check_section_settings(config, source)
    return config


def _value_origin(key: str, source: str, override_sources: Mapping[str, str] | None) -> str:
    """Return how an error names where the value of ``key`` came from: an override's name, or FILE: KEY."""
    return override_origin(key, override_sources) or f"{source}: {key}"


def check_config_files(config: dict, source: str = "config", override_sources: Mapping[str, str] | None = None) -> None:
    """Check that the vocabulary, the sample sheet and the normal references exist and are valid.

    The model spec is checked by :func:`vlm_micro.model.spec_checks.check_model_spec`
    and the image list when it is built (:func:`list_images`).
    """
    from vlm_micro.labeling.vocabulary import load_vocabulary

    load_vocabulary(config["labels"])
    sheet = config.get("sample_sheet")
    if sheet and not Path(sheet).is_file():
        origin = override_origin("sample_sheet", override_sources)
        if origin is not None:
            raise ConfigError(f"{origin}: sample sheet not found: {sheet}; fix the path")
        raise ConfigError(f"{source}: sample_sheet file not found: {sheet}; fix the path or set sample_sheet: null")
    for reference in config["labeling"]["normal_references"]:
        if not Path(reference).exists():
            raise ConfigError(f"{source}: labeling.normal_references entry not found: {reference}; fix the path or remove the entry")


def check_section_settings(config: dict, source: str = "config") -> None:
    """Build each part's settings object from its section, which validates the values.

    A part whose package is not installed yet is skipped. Errors start with ``source``,
    the config file, like the schema's.
    """
    import importlib

    for module_name, class_name, section in (
        ("vlm_micro.io", "ReadSettings", "read"),
        ("vlm_micro.tiling", "TileSettings", "tiling"),
        ("vlm_micro.labeling", "LabelSettings", "labeling"),
    ):
        try:
            settings_class = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            log.debug("%s.%s is not available; section %r is checked by the schema only", module_name, class_name, section)
            continue
        try:
            settings_class.from_dict(config[section])
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc


def _resolve_one(value: str | None, base_dir: Path) -> str | None:
    if not value:
        return value
    expanded = os.path.expanduser(value)
    return expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(base_dir, expanded))


def _resolve_spec_path(spec: str | None, base_dir: Path) -> str | None:
    if not isinstance(spec, str):
        return spec
    if spec.startswith("local-dir:"):
        return "local-dir:" + _resolve_one(spec[len("local-dir:"):], base_dir)
    if "@" in spec and not spec.startswith(("builtin:", "hf-hub:")):
        arch, checkpoint = spec.split("@", 1)
        return f"{arch}@{_resolve_one(checkpoint, base_dir)}"
    return spec


def resolve_paths(config: dict, base_dir: str | os.PathLike) -> dict:
    """Return a copy of a (possibly partial) config with relative paths made absolute.

    Covers images, sample_sheet, out, labels, the text cache, normal references, model
    specs of the local-dir and checkpoint forms, and the finetune and evaluate paths.
    """
    base = Path(base_dir).resolve()
    out = copy.deepcopy(config)
    for key in ("images", "sample_sheet", "out", "labels"):
        if isinstance(out.get(key), str):
            out[key] = _resolve_one(out[key], base)
    if isinstance(out.get("images"), list):
        out["images"] = [_resolve_one(p, base) if isinstance(p, str) else p for p in out["images"]]
    sections = {name: out.get(name) for name in ("model", "labeling", "finetune", "evaluate")}
    if isinstance(sections["model"], dict) and "spec" in sections["model"]:
        sections["model"]["spec"] = _resolve_spec_path(sections["model"]["spec"], base)
    labeling = sections["labeling"]
    if isinstance(labeling, dict):
        if isinstance(labeling.get("text_cache"), str):
            labeling["text_cache"] = _resolve_one(labeling["text_cache"], base)
        if isinstance(labeling.get("normal_references"), list):
            labeling["normal_references"] = [_resolve_one(p, base) if isinstance(p, str) else p for p in labeling["normal_references"]]
    for name, spec_key in (("finetune", "base"), ("evaluate", "model")):
        section = sections[name]
        if not isinstance(section, dict):
            continue
        if spec_key in section:
            section[spec_key] = _resolve_spec_path(section[spec_key], base)
        for key in ("annotations", "reference_annotations", "out"):
            if isinstance(section.get(key), str):
                section[key] = _resolve_one(section[key], base)
    return out


def labelling_settings(config: dict) -> dict:
    """Return the part of a config that decides labels and scores (model to labeling, plus labels)."""
    return {"labels": config["labels"], **{name: copy.deepcopy(config[name]) for name in LABELLING_SECTIONS}}


def config_checksum(settings: dict, vocabulary_checksum: str = "") -> str:
    """Return a SHA-256 over the labelling settings and the vocabulary content.

    The paths of the labels file and of the text embedding cache are left out, so moving
    them, or the results folder that contains the cache by default, does not invalidate
    results. The vocabulary's content enters through ``vocabulary_checksum``.
    """
    payload = {name: settings.get(name) for name in LABELLING_SECTIONS}
    if isinstance(payload["labeling"], dict):
        payload["labeling"] = {key: value for key, value in payload["labeling"].items() if key != "text_cache"}
    payload["vocabulary"] = vocabulary_checksum
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- images


def has_supported_extension(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(SUPPORTED_EXTENSIONS)


def expand_images(spec: str | os.PathLike) -> list[Path]:
    """List the image files named by a folder, a file or a glob pattern.

    A path that names an existing folder or file is taken as it is, even when its name
    contains glob characters (``a[1].tif``); only a path that does not exist is a glob.
    A folder contributes its entries with a supported extension (not recursing, hidden
    entries left out), including links and subfolders with such a name, which fail when
    read. A glob contributes every regular file it matches, whatever the
    extension, so an unsupported file it names gets its own failed row later. ``**``
    matches folders recursively, and the longest leading part of a glob that names an
    existing folder is matched literally (``plate[1]/*.tif``).

    Returns
    -------
    list of Path
        Sorted by path, without duplicates.

    Raises
    ------
    ConfigError
        When nothing is found.
    """
    spec = os.path.expanduser(str(spec))
    if os.path.isdir(spec):
        # Entries with an image extension that are not regular files (broken links, link
        # loops, folders, pipes) are kept, so that each gets a failed row with the reason.
        entries = [p for p in Path(spec).iterdir() if not p.name.startswith(".")]
        found = [p for p in entries if has_supported_extension(p)]
        ignored = sum(1 for p in entries if p.is_file() and not has_supported_extension(p))
        if ignored:
            log.info("%s: ignoring %d file(s) without a supported extension", spec, ignored)
        where = f"folder {spec}"
    elif os.path.isfile(spec):
        found = [Path(spec)]
        where = spec
    elif _GLOB_CHARACTERS & set(spec):
        found = [Path(p) for p in glob.glob(_glob_pattern(spec), recursive=True) if os.path.isfile(p)]
        where = f"glob pattern {spec!r}"
    else:
        raise ConfigError(f"images: {spec} is neither a folder, a file nor a glob pattern that matches files; fix the images path")
    if not found:
        raise ConfigError(
            f"images: no image files found in {where}; supported extensions: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    return sorted({p.absolute() for p in found})


def _glob_pattern(spec: str) -> str:
    """Return ``spec`` with its longest leading part that names an existing folder escaped for glob."""
    folder, names = spec, []
    while folder and not os.path.isdir(folder):
        folder, name = os.path.split(folder)
        names.append(name)
    if not folder:
        return spec
    return os.path.join(glob.escape(folder), *reversed(names))


def _strip_extension(name: str) -> str:
    lower = name.lower()
    for extension in SUPPORTED_EXTENSIONS:
        if lower.endswith(extension) and len(name) > len(extension):
            return name[: -len(extension)]
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def safe_image_id(name: str) -> str:
    """Turn a file name into an image id: letters, digits, ``._-``, at most 100 characters.

    The extension is dropped, accented letters lose their accents, every other run of
    unsafe characters becomes one underscore. An empty result becomes ``image``.
    """
    stem = _strip_extension(Path(name).name)
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    safe = _UNSAFE_RUN.sub("_", ascii_stem)
    safe = re.sub(r"^[^A-Za-z0-9]+", "", safe)[:_MAX_ID_LENGTH]
    safe = safe.rstrip("._-")
    return safe or "image"


def derive_image_ids(paths: list, reserved: tuple | list | set = ()) -> list[str]:
    """Derive a unique image id for each path from its file name.

    Names that collide (ignoring case) with each other or with ``reserved`` ids get a
    suffix: 8 hex digits of the SHA-1 of the path relative to the folder common to all
    paths. The ids therefore do not depend on where the data lives, and the same files
    give the same ids on every run.
    """
    paths = [Path(p) for p in paths]
    bases = [safe_image_id(p.name) for p in paths]
    taken = {r.lower() for r in reserved}
    counts = Counter(b.lower() for b in bases)
    common = Path(os.path.commonpath([str(p) for p in paths])) if len(paths) > 1 else None
    ids = []
    for path, base in zip(paths, bases):
        candidate = base
        if counts[base.lower()] > 1 or base.lower() in taken:
            relative = path.relative_to(common).as_posix() if common else path.name
            digest = hashlib.sha1(relative.encode("utf-8")).hexdigest()[:8]
            candidate = f"{base[: _MAX_ID_LENGTH - 9].rstrip('._-')}_{digest}"
        number = 2
        unique = candidate
        while unique.lower() in taken:
            unique = f"{candidate[: _MAX_ID_LENGTH - 6]}_{number}"
            number += 1
        taken.add(unique.lower())
        ids.append(unique)
    return ids


def list_images(config: dict) -> list[ImageEntry]:
    """Return the images of a run, from the sample sheet when one is set, else from ``images``."""
    if config.get("sample_sheet"):
        return load_sample_sheet(config["sample_sheet"])
    specs = config["images"] if isinstance(config["images"], list) else [config["images"]]
    paths = sorted({path for spec in specs for path in expand_images(spec)})
    # A recursive pattern over a folder that contains the results folder would also match
    # the run's own label maps and thumbnails.
    # Absolute paths without resolving links: an image may be a broken link or a link
    # loop, which its own row reports.
    results = os.path.abspath(config["out"]) if config.get("out") else None
    if results is not None:
        outputs = [path for path in paths if os.path.commonpath([os.path.abspath(path), results]) == results]
        if outputs:
            log.warning("leaving out %d file(s) inside the results folder %s, such as %s", len(outputs), results, outputs[0])
            paths = [path for path in paths if path not in outputs]
    return [ImageEntry(image_id, str(path)) for image_id, path in zip(derive_image_ids(paths), paths)]


def shard_images(entries: list[ImageEntry], shard_size: int) -> dict[str, list[ImageEntry]]:
    """Split the images, in order, into shards of ``shard_size`` named ``shard_0000``, ``shard_0001``, ..."""
    if shard_size < 1:
        raise ConfigError(f"workflow.shard_size must be at least 1, got {shard_size}")
    n_shards = math.ceil(len(entries) / shard_size)
    width = max(4, len(str(max(n_shards - 1, 0))))
    return {f"shard_{index:0{width}d}": entries[index * shard_size : (index + 1) * shard_size] for index in range(n_shards)}


# --------------------------------------------------------------------------- sample sheet


def _read_sheet_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Read a TSV into its header and (line number, cells) rows, skipping blank lines."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle, delimiter="\t"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read sample sheet {path}: byte {exc.start} is not UTF-8 text; "
            "save the sheet as UTF-8 text with tabs between the columns"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read sample sheet {path}: {exc}") from exc
    numbered = [(number, row) for number, row in enumerate(lines, start=1) if any(cell.strip() for cell in row)]
    if not numbered:
        raise ConfigError(f"{path}: sample sheet is empty; add a header line with at least the column 'path'")
    header = [cell.strip() for cell in numbered[0][1]]
    duplicates = [name for name, count in Counter(header).items() if count > 1]
    if duplicates:
        raise ConfigError(f"{path}: column {duplicates[0]!r} appears twice in the header; keep one")
    _check_header_columns(path, header)
    rows = numbered[1:]
    if not rows:
        raise ConfigError(f"{path}: sample sheet lists no images; add one row per image below the header")
    return header, rows


def _check_header_columns(path: Path, header: list[str]) -> None:
    """Reject a header without a 'path' column, with an empty name, or with a known column in the wrong case."""
    if len(header) == 1 and header[0] != "path":
        # Commas or semicolons in the only column name mean a CSV file. Spaces may be
        # part of one name, so they count only when a word of the line is 'path'.
        line = header[0]
        separator = next((character for character in (",", ";") if character in line), None)
        if separator is None and len(line.split()) > 1 and "path" in line.lower().split():
            separator = " "
        if separator is not None:
            raise ConfigError(
                f"{path}: the header line {line!r} contains {separator!r} but no tab, so the sheet is not "
                "tab-separated; save it as tab-separated text (TSV) with a column named 'path'"
            )
    for name in header:
        known = next((column for column in SAMPLE_SHEET_COLUMNS if name != column and name.lower() == column), None)
        if known is not None:
            raise ConfigError(
                f"{path}: column {name!r} must be named {known!r}; column names are case-sensitive, so rename it"
            )
    if "path" not in header:
        raise ConfigError(
            f"{path}: sample sheet has no 'path' column (header: {', '.join(header)}); "
            "name the column of image paths 'path', in lower case"
        )
    if any(not name for name in header):
        raise ConfigError(f"{path}: the header has an empty column name; name every column")


def _parse_sheet_row(header: list[str], cells: list[str], where: str) -> dict:
    if len(cells) != len(header):
        raise ConfigError(f"{where}: has {len(cells)} columns but the header has {len(header)}; separate columns with tabs")
    row = {name: cell.strip() for name, cell in zip(header, cells) if cell.strip() != ""}
    if "pixel_size_um" in row:
        try:
            row["pixel_size_um"] = float(row["pixel_size_um"])
        except ValueError:
            raise ConfigError(f"{where}: pixel_size_um {row['pixel_size_um']!r} is not a number; give um per pixel, e.g. 0.5") from None
        if not math.isfinite(row["pixel_size_um"]):
            raise ConfigError(f"{where}: pixel_size_um {row['pixel_size_um']} is not finite; give um per pixel, e.g. 0.5")
    return validate_against_schema(row, "images", where)


def load_sample_sheet(path: str | os.PathLike) -> list[ImageEntry]:
    """Read and validate a tab-separated sample sheet.

    Relative image paths are resolved against the sheet's folder. Rows without an
    ``image_id`` get one derived from the file name (see :func:`derive_image_ids`).

    Raises
    ------
    ConfigError
        Naming the sheet line, the value and the fix: a missing file, a duplicate
        image id or file, an invalid pixel size, a malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sample sheet not found: {path}; fix sample_sheet in the config")
    header, numbered_rows = _read_sheet_rows(path)
    rows, seen_files = [], {}
    for number, cells in numbered_rows:
        where = f"{path} line {number}"
        row = _parse_sheet_row(header, cells, where)
        image_path = Path(os.path.expanduser(row["path"]))
        image_path = (image_path if image_path.is_absolute() else path.parent / image_path).absolute()
        if image_path.is_dir():
            raise ConfigError(f"{where}: {image_path} is a folder; give one image file per row (list a folder's images with images: in the config)")
        if not image_path.is_file():
            raise ConfigError(f"{where}: image file not found: {image_path}; fix the path (relative paths start at the sheet's folder)")
        if image_path in seen_files:
            raise ConfigError(f"{where}: {image_path} is already listed on line {seen_files[image_path]}; list each file once")
        seen_files[image_path] = number
        rows.append((number, image_path, row))
    return _sheet_entries(path, header, rows)


def _sheet_entries(path: Path, header: list[str], rows: list[tuple[int, Path, dict]]) -> list[ImageEntry]:
    given = {}
    for number, _, row in rows:
        image_id = row.get("image_id")
        if image_id is None:
            continue
        if image_id.lower() in given:
            raise ConfigError(
                f"{path} line {number}: image_id {image_id!r} is already used on line {given[image_id.lower()]}; make the ids unique"
            )
        given[image_id.lower()] = number
    missing = [image_path for _, image_path, row in rows if "image_id" not in row]
    derived = iter(derive_image_ids(missing, reserved=set(given)) if missing else [])
    metadata_columns = [name for name in header if name not in ("path", "image_id", "pixel_size_um")]
    entries = []
    for _, image_path, row in rows:
        image_id = row["image_id"] if "image_id" in row else next(derived)
        metadata = {key: row[key] for key in metadata_columns if key in row}
        entries.append(ImageEntry(image_id, str(image_path), row.get("pixel_size_um"), metadata, list(metadata_columns)))
    return entries
