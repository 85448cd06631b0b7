"""Load open_clip models from a spec string, and save them in ``local-dir:`` format.

Specs:

- ``builtin:NAME``: a model shipped inside this package (``vlm_micro/models/NAME``).
- ``local-dir:PATH``: a folder with ``open_clip_config.json`` and weights
  (``open_clip_model.safetensors`` preferred), as written by :func:`save_model_dir`.
- ``hf-hub:ORG/NAME``: a Hugging Face Hub repository in open_clip format, from the
  local cache when ``HF_HUB_OFFLINE=1``.
- ``ARCH@CHECKPOINT_FILE``: an open_clip architecture name with a weights file.

Besides the open_clip files, a model folder may hold ``vlm_micro.json`` with what the
pipeline needs to know about the model: its target pixel size, the tile size it was
trained on and a fitted temperature.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from vlm_micro.errors import ModelLoadError

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_SPEC = "builtin:demo"
META_FILE = "vlm_micro.json"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"


@dataclass
class LoadedModel:
    """An open_clip model ready for inference, with what the pipeline needs about it."""

    model: object  # open_clip CLIP module, in eval mode, on ``device``
    tokenizer: object  # callable: list of str -> LongTensor (n, context_length)
    spec: str  # the spec as given
    name: str  # short display name
    checksum: str  # SHA-256 of the weights file (or of the state dict when no file)
    image_size: int  # model input side in pixels
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: str = "cpu"
    precision: str = "fp32"
    meta: dict = field(default_factory=dict)  # contents of vlm_micro.json, or {}

    @property
    def pixel_size_um(self) -> float | None:
        """Target pixel size in um/px that tiles are resampled to, if the model declares one."""
        value = self.meta.get("pixel_size_um")
        return float(value) if value else None

    @property
    def temperature(self) -> float | None:
        """Softmax temperature fitted on labelled data; None means use the logit scale."""
        value = self.meta.get("temperature")
        return float(value) if value else None


def resolve_spec(spec: str) -> tuple[str, str]:
    """Split a model spec into (kind, value); kind is builtin, local-dir, hf-hub or checkpoint."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"model spec is empty; use {DEFAULT_SPEC!r}, 'local-dir:PATH', 'hf-hub:ORG/NAME' or 'ARCH@FILE'")
    spec = spec.strip()
    for prefix in ("builtin:", "local-dir:", "hf-hub:"):
        if spec.startswith(prefix):
            value = spec[len(prefix):]
            if not value:
                raise ModelLoadError(f"model spec {spec!r} has nothing after {prefix!r}")
            return prefix[:-1], value
    if "@" in spec:
        return "checkpoint", spec
    raise ModelLoadError(
        f"model spec {spec!r} is not recognised; use 'builtin:NAME', 'local-dir:PATH', 'hf-hub:ORG/NAME' or 'ARCH@CHECKPOINT_FILE'"
    )


def load_model(spec: str = DEFAULT_SPEC, device: str = "cpu", precision: str = "fp32") -> LoadedModel:
    """Load a model from a spec; see the module docstring for the spec forms."""
    import open_clip

    kind, value = resolve_spec(spec)
    if kind == "builtin":
        folder = BUILTIN_DIR / value
        if not (folder / CONFIG_FILE).is_file():
            available = sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / CONFIG_FILE).is_file()) if BUILTIN_DIR.is_dir() else []
            raise ModelLoadError(f"builtin model {value!r} not found; available: {', '.join(available) or 'none'}")
        return _load_local_dir(folder, spec, device, precision)
    if kind == "local-dir":
        return _load_local_dir(Path(value).expanduser(), spec, device, precision)
    raise ModelLoadError(f"model spec kind {kind!r} is not supported yet in {spec!r}")


def _load_local_dir(folder: Path, spec: str, device: str, precision: str) -> LoadedModel:
    import open_clip

    if not folder.is_dir():
        raise ModelLoadError(f"model folder not found: {folder}; check the path in {spec!r}")
    if not (folder / CONFIG_FILE).is_file():
        raise ModelLoadError(f"{folder} has no {CONFIG_FILE}; it is not an open_clip local-dir model")
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelLoadError(f"{folder} has no {WEIGHTS_FILE}; save the model with safetensors weights")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}", device=device, precision=precision)
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model.eval()
    meta = _read_meta(folder)
    cfg = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
    size = cfg.get("size", model.visual.image_size)
    size = size[0] if isinstance(size, (tuple, list)) else size
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        spec=spec,
        name=meta.get("name", folder.name),
        checksum=file_sha256(weights),
        image_size=int(size),
        mean=tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
        device=str(device),
        precision=precision,
        meta=meta,
    )


def _read_meta(folder: Path) -> dict:
    path = folder / META_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc


def save_model_dir(model, model_cfg: dict, folder: str | Path, preprocess_cfg: dict | None = None,
                   meta: dict | None = None, extra_files: dict[str, str] | None = None) -> Path:
    """Write ``model`` as an open_clip ``local-dir:`` folder.

    Writes ``open_clip_config.json`` (``model_cfg`` and ``preprocess_cfg``),
    ``open_clip_model.safetensors``, ``vlm_micro.json`` from ``meta``, and any
    ``extra_files`` (name -> text, for example a model card). Each file is written
    atomically.
    """
    from safetensors.torch import save_file

    from vlm_micro.atomic import atomic_path, write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg or {}}
    write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    if meta is not None:
        write_text(folder / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    for name, text in (extra_files or {}).items():
        write_text(folder / name, text)
    return folder


def file_sha256(path: str | Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
