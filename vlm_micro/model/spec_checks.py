"""Check a model spec before a run, without importing torch or open_clip.

`vlm-micro run` calls :func:`check_model_spec` while it validates the config, so a spec
that cannot work stops the run at once. Otherwise it would fail only in a labelling
job, which on a cluster first waits in the queue and is then retried. The model
itself is loaded by :func:`vlm_micro.model.loading.load_model` in the job.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlm_micro.errors import ConfigError, ModelLoadError
from vlm_micro.model.hub import validate_repo_id
from vlm_micro.model.loading import (
    BUILTIN_DIR,
    CONFIG_FILE,
    META_FILE,
    FOLDER_WEIGHTS_FILES,
    bundled_architectures,
    check_checkpoint_file,
    resolve_spec,
)


def check_model_spec(spec: str, origin: str = "model.spec") -> None:
    """Check a model spec's form and its local files without importing torch or open_clip.

    Checks the scheme, that a builtin model is installed, that a local-dir folder contains
    open_clip_config.json and a weights file, the ORG/NAME form of an hf-hub spec, and
    for ARCH@FILE the architecture name and that FILE starts like a weights file. Whether
    the weights load, and whether a hub model is cached, is found out when the model is
    loaded in the labelling job.

    Parameters
    ----------
    spec : str
        Model spec, with local paths already resolved.
    origin : str
        Where the spec came from, for the message: ``CONFIG: model.spec`` or ``--model``.

    Raises
    ------
    ConfigError
        One line naming ``origin``, the spec and the fix.
    """
    try:
        kind, value = resolve_spec(spec)
        if kind == "hf-hub":
            validate_repo_id(value)
    except ModelLoadError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    if kind == "builtin":
        _check_builtin_model(value, spec, origin)
    elif kind == "local-dir":
        _check_model_folder(Path(value).expanduser(), spec, origin)
    elif kind == "checkpoint":
        _check_checkpoint_spec(value, spec, origin)


def _check_builtin_model(name: str, spec: str, origin: str) -> None:
    folder = BUILTIN_DIR / name
    if not (folder / CONFIG_FILE).is_file():
        available = sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / CONFIG_FILE).is_file()) if BUILTIN_DIR.is_dir() else []
        raise ConfigError(
            f"{origin}: {spec!r} is not installed ({folder / CONFIG_FILE} not found; installed: {', '.join(available) or 'none'}); "
            "use another model spec, or rebuild the demo model with `make model`"
        )
    _check_weights_in_folder(folder, spec, origin)


def _check_model_folder(folder: Path, spec: str, origin: str) -> None:
    if not folder.is_dir():
        raise ConfigError(f"{origin}: model folder not found: {folder}; fix the path in {spec!r}")
    if not (folder / CONFIG_FILE).is_file():
        raise ConfigError(
            f"{origin}: folder {folder} has no {CONFIG_FILE}, so it is not an open_clip model folder; "
            f"fix the path in {spec!r} (a folder written by `vlm-micro finetune` or save_model_dir)"
        )
    _check_weights_in_folder(folder, spec, origin)


def _check_weights_in_folder(folder: Path, spec: str, origin: str) -> None:
    if not any((folder / name).is_file() for name in FOLDER_WEIGHTS_FILES):
        raise ConfigError(
            f"{origin}: model folder {folder} of {spec!r} has no weights file ({', '.join(FOLDER_WEIGHTS_FILES)}); "
            "copy the weights into it, or write the folder again with `vlm-micro finetune` or save_model_dir"
        )


def _check_checkpoint_spec(value: str, spec: str, origin: str) -> None:
    arch, _, path_text = value.partition("@")
    if not arch.strip():
        raise ConfigError(f"{origin}: model spec {spec!r} has no architecture before '@'; use ARCH@FILE such as ViT-B-32@weights.pt")
    # The labelling job loads the model in a new process, in which only open_clip's
    # bundled configs are registered, so the same names are valid there.
    architectures = bundled_architectures()
    if architectures is not None and arch not in architectures:
        raise ConfigError(
            f"{origin}: architecture {arch!r} in {spec!r} is not an open_clip model config; use a name from "
            f"open_clip.list_models() such as ViT-B-32, or save the model as a folder and use local-dir:PATH"
        )
    if not path_text.strip():
        raise ConfigError(f"{origin}: model spec {spec!r} has no checkpoint file after '@'; use ARCH@FILE such as ViT-B-32@weights.pt")
    checkpoint = Path(path_text).expanduser()
    if checkpoint.is_dir():
        raise ConfigError(
            f"{origin}: {checkpoint} in {spec!r} is a folder, not a weights file; use local-dir:{checkpoint} for a model folder"
        )
    if not checkpoint.is_file():
        raise ConfigError(f"{origin}: checkpoint file not found: {checkpoint}; fix the path in {spec!r}")
    try:
        check_checkpoint_file(checkpoint)
    except ModelLoadError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def folder_tile_size(spec: str) -> int | None:
    """Return the tile side in pixels of a builtin or local-dir model without loading it, or None.

    It is the ``tile_size_px`` of the folder's vlm_micro.json, else the image size of
    its open_clip_config.json. Other specs, and folders without either, give None.
    """
    try:
        kind, value = resolve_spec(spec)
    except ModelLoadError:
        return None
    if kind not in ("builtin", "local-dir"):
        return None
    folder = BUILTIN_DIR / value if kind == "builtin" else Path(value).expanduser()
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8")) if (folder / META_FILE).is_file() else {}
        size = meta.get("tile_size_px")
        if not size:
            model_cfg = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")).get("model_cfg") or {}
            size = (model_cfg.get("vision_cfg") or {}).get("image_size")
    except (OSError, ValueError, AttributeError):
        return None
    return int(size) if isinstance(size, (int, float)) and not isinstance(size, bool) and size > 0 else None
