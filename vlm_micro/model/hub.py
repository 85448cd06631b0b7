"""Offline-first access to open_clip models on the Hugging Face Hub.

A hub model is looked up in the local Hugging Face cache first (the layout that
``hf download`` writes: ``models--ORG--NAME/snapshots/<revision>/`` plus
``refs/main``). Only when it is not cached and offline mode is off is it downloaded.
The cache folder and offline mode are read from the environment at each call, so a
process may set ``HF_HOME`` or ``HF_HUB_OFFLINE`` after ``huggingface_hub`` was imported.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vlm_micro.errors import ModelLoadError

log = logging.getLogger(__name__)

CONFIG_FILE = "open_clip_config.json"
# Weights files of an open_clip hub repository, in the order open_clip 3.x prefers them in a folder.
HUB_WEIGHTS_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
)
_TRUE_VALUES = {"1", "true", "yes", "on"}


def hf_home() -> Path:
    """Return the Hugging Face home folder (``HF_HOME``, else ``$XDG_CACHE_HOME/huggingface``)."""
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "huggingface"


def hub_cache_dir() -> Path:
    """Return the hub cache folder (``HF_HUB_CACHE``, else ``HUGGINGFACE_HUB_CACHE``, else ``HF_HOME/hub``)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.path.expandvars(os.environ[name])).expanduser()
    return hf_home() / "hub"


def offline_variable() -> str | None:
    """Return the name of the set variable that forbids downloads, or None when online."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUE_VALUES:
            return name
    return None


def validate_repo_id(repo_id: str) -> str:
    """Check that ``repo_id`` has the form ORG/NAME and return it; raise ModelLoadError if not."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(part.strip() for part in parts):
        raise ModelLoadError(f"hub repository {repo_id!r} is invalid; use hf-hub:ORG/NAME, for example hf-hub:wisdomik/QuiltNet-B-32")
    return repo_id


def find_hub_model(repo_id: str) -> tuple[Path, Path]:
    """Return the snapshot folder and weights file of a cached or downloaded hub model.

    Parameters
    ----------
    repo_id : str
        ``ORG/NAME`` of an open_clip model repository.

    Returns
    -------
    folder : Path
        Snapshot folder that contains ``open_clip_config.json``.
    weights : Path
        Weights file in that folder, safetensors preferred.

    Raises
    ------
    ModelLoadError
        When the files are not cached and offline mode is on, or the download fails.
    """
    validate_repo_id(repo_id)
    cache_dir = hub_cache_dir()
    config = _cached_file(repo_id, CONFIG_FILE, cache_dir)
    weights = _first_cached(repo_id, HUB_WEIGHTS_FILES, cache_dir)
    if config is not None and weights is not None:
        log.info("hub model %s found in cache %s", repo_id, cache_dir)
        return config.parent, weights

    missing = [name for name, path in ((CONFIG_FILE, config), ("weights", weights)) if path is None]
    variable = offline_variable()
    if variable is not None:
        raise ModelLoadError(missing_hub_message(repo_id, cache_dir, missing, variable))
    return _download(repo_id, cache_dir)


def missing_hub_message(repo_id: str, cache_dir: Path, missing: list[str], variable: str) -> str:
    """Return the one-line error for a hub model that is not cached in offline mode."""
    return (
        f"hub model {repo_id!r} is not in the Hugging Face cache {cache_dir} (missing: {', '.join(missing)}) "
        f"and {variable}=1 forbids downloading it; on a machine with internet access run "
        f"`HF_HOME={hf_home()} hf download {repo_id}` (older huggingface_hub: `huggingface-cli download {repo_id}`), "
        f"then copy that HF_HOME folder here and set HF_HOME to it"
    )


def _cached_file(repo_id: str, filename: str, cache_dir: Path) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache_dir))
    if isinstance(found, str) and os.path.isfile(found):
        return Path(found)
    return None


def _first_cached(repo_id: str, filenames, cache_dir: Path) -> Path | None:
    for filename in filenames:
        found = _cached_file(repo_id, filename, cache_dir)
        if found is not None:
            return found
    return None


def _download(repo_id: str, cache_dir: Path) -> tuple[Path, Path]:
    # NOTE: the tests run offline, so this download path is not exercised by them.
    from huggingface_hub import hf_hub_download

    log.info("downloading hub model %s into %s", repo_id, cache_dir)
    try:
        config = Path(hf_hub_download(repo_id, CONFIG_FILE, cache_dir=str(cache_dir)))
    except Exception as exc:  # huggingface_hub raises several unrelated types here
        raise ModelLoadError(
            f"download of {CONFIG_FILE} from hub model {repo_id!r} failed ({type(exc).__name__}); "
            f"check the repository name and the network, or pre-download it with `hf download {repo_id}`"
        ) from exc
    for filename in HUB_WEIGHTS_FILES:
        try:
            weights = Path(hf_hub_download(repo_id, filename, cache_dir=str(cache_dir)))
        except Exception as exc:  # the first name may simply not exist in the repository
            log.info("hub model %s has no %s (%s)", repo_id, filename, type(exc).__name__)
            continue
        return config.parent, weights
    raise ModelLoadError(f"hub model {repo_id!r} has none of the weights files {', '.join(HUB_WEIGHTS_FILES)}; it is not an open_clip model repository")
