"""Load open_clip models from a spec string, and save them in ``local-dir:`` format.

Specs:

- ``builtin:NAME``: a model shipped inside this package (``vlm_micro/models/NAME``).
- ``local-dir:PATH``: a folder with ``open_clip_config.json`` and weights
  (``open_clip_model.safetensors`` preferred), as written by :func:`save_model_dir`.
- ``hf-hub:ORG/NAME``: a Hugging Face Hub repository in open_clip format, taken from the
  local cache first and downloaded only when it is missing and offline mode is off.
- ``ARCH@CHECKPOINT_FILE``: an open_clip architecture name (``open_clip.list_models()``,
  including configs registered with ``open_clip.add_model_config``) with a weights file.

Weights are read with safetensors or ``torch.load(weights_only=True)``, never with a
full unpickler. Besides the open_clip files, a model folder may hold ``vlm_micro.json``
with what the pipeline needs to know about the model: its target pixel size, the tile
size it was trained on and a fitted temperature.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from vlm_micro.errors import ModelLoadError
from vlm_micro.model.devices import autocast_context, resolve_device, resolve_precision
from vlm_micro.model.hub import find_hub_model, hub_cache_dir

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_SPEC = "builtin:demo"
META_FILE = "vlm_micro.json"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
# Weights file names in a model folder, in the order open_clip 3.x prefers them.
FOLDER_WEIGHTS_FILES = (
    WEIGHTS_FILE,
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Suffixes of NumPy weights. open_clip 3.x reads them only as big_vision (SigLIP)
# conversions, so they are rejected as checkpoints.
NUMPY_SUFFIXES = (".npz", ".npy")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class LoadedModel:
    """An open_clip model ready for inference, with what the pipeline needs about it."""

    model: object  # open_clip CLIP module, in eval mode, on ``device``, float32 weights
    tokenizer: object  # callable: list of str -> LongTensor (n, context_length)
    spec: str  # the spec as given
    name: str  # short display name
    checksum: str  # SHA-256 of the weights file
    image_size: int  # model input side in pixels
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: str = "cpu"
    precision: str = "fp32"  # effective autocast precision: fp32, bf16 or fp16
    meta: dict = field(default_factory=dict)  # contents of vlm_micro.json, or {}

    @property
    def pixel_size_um(self) -> float | None:
        """Target pixel size in um/px that tiles are resampled to, if the model declares one."""
        value = self.meta.get("pixel_size_um")
        return float(value) if value else None

    @property
    def tile_size_px(self) -> int | None:
        """Tile side in pixels at the target pixel size, if the model declares one."""
        value = self.meta.get("tile_size_px")
        return int(value) if value else None

    @property
    def temperature(self) -> float | None:
        """Softmax temperature fitted on labelled data; None means use the logit scale."""
        value = self.meta.get("temperature")
        return float(value) if value else None

    def autocast(self):
        """Return a context manager that runs the forward pass at :attr:`precision`."""
        return autocast_context(self.device, self.precision)


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


def load_model(spec: str = DEFAULT_SPEC, device: str = "auto", precision: str = "fp32") -> LoadedModel:
    """Load a model from a spec; see the module docstring for the spec forms.

    Parameters
    ----------
    spec : str
        Model spec.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; see :func:`resolve_device`.
    precision : str
        ``fp32``, ``bf16`` or ``fp16``; see :func:`resolve_precision` for fallbacks.

    Raises
    ------
    ModelLoadError
        With one line naming what is missing or invalid and how to provide it.
    ConfigError
        When ``device`` or ``precision`` is not a valid value.
    """
    kind, value = resolve_spec(spec)
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    if kind == "builtin":
        folder = _builtin_folder(value)
        loaded = _load_folder(folder, spec, folder / _find_weights(folder, spec))
    elif kind == "local-dir":
        folder = Path(value).expanduser()
        _check_folder(folder, spec)
        loaded = _load_folder(folder, spec, folder / _find_weights(folder, spec))
    elif kind == "hf-hub":
        folder, weights = find_hub_model(value)
        loaded = _load_folder(folder, spec, weights, name=value)
    else:
        loaded = _load_checkpoint(value, spec)
    loaded.model.to(device)
    loaded.device = device
    loaded.precision = precision
    log.info("loaded model %s (%s) on %s at %s", loaded.name, spec, device, precision)
    return loaded


def _builtin_folder(name: str) -> Path:
    folder = BUILTIN_DIR / name
    if not (folder / CONFIG_FILE).is_file():
        available = sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / CONFIG_FILE).is_file()) if BUILTIN_DIR.is_dir() else []
        raise ModelLoadError(
            f"builtin model {name!r} not found in {BUILTIN_DIR}; available: {', '.join(available) or 'none'} "
            f"(the demo model is made with `vlm-micro train-demo --out {BUILTIN_DIR / 'demo'}`)"
        )
    return folder


def _check_folder(folder: Path, spec: str) -> None:
    if not folder.is_dir():
        raise ModelLoadError(f"model folder not found: {folder}; check the path in {spec!r}")
    if not (folder / CONFIG_FILE).is_file():
        raise ModelLoadError(f"{folder} has no {CONFIG_FILE}; it is not an open_clip local-dir model (see save_model_dir)")


def _find_weights(folder: Path, spec: str) -> str:
    for name in FOLDER_WEIGHTS_FILES:
        if (folder / name).is_file():
            return name
    raise ModelLoadError(f"{folder} has no weights file ({' or '.join(FOLDER_WEIGHTS_FILES[:3])}) for {spec!r}; save the model with save_model_dir")


def _load_folder(folder: Path, spec: str, weights: Path, name: str | None = None) -> LoadedModel:
    import open_clip

    config = _read_json(folder / CONFIG_FILE)
    meta = _read_meta(folder)
    model = _create_model(spec, lambda: open_clip.create_model(f"local-dir:{folder}", weights_only=True))
    tokenizer = _folder_tokenizer(folder, config, spec)
    return _assemble(model, tokenizer, spec, meta.get("name") or name or folder.name, file_sha256(weights), meta)


def _load_checkpoint(value: str, spec: str) -> LoadedModel:
    import open_clip

    arch, _, path_text = value.partition("@")
    path = Path(path_text).expanduser()
    if arch not in open_clip.list_models():
        raise ModelLoadError(
            f"architecture {arch!r} in {spec!r} is not an open_clip model config; use a name from "
            f"open_clip.list_models() such as ViT-B-32, or save the model as a folder and use local-dir:PATH"
        )
    if not path.is_file():
        raise ModelLoadError(f"checkpoint file not found: {path}; check the path after '@' in {spec!r}")
    check_checkpoint_file(path)
    model = _create_model(spec, lambda: open_clip.create_model(arch, pretrained=str(path), weights_only=True))
    tokenizer = _call_open_clip(spec, lambda: open_clip.get_tokenizer(arch))
    return _assemble(model, tokenizer, spec, f"{arch}@{path.name}", file_sha256(path), {})


def bundled_architectures() -> frozenset[str] | None:
    """Return the architecture names of open_clip's bundled model configs, without importing open_clip.

    ``open_clip.list_models()`` returns the same names (open_clip 3.x: the stems of
    ``open_clip/model_configs/*.json``), but importing open_clip imports torch, which
    takes seconds. Names registered at run time with ``open_clip.add_model_config`` are
    not included. Returns None when open_clip is not installed or keeps no such folder.
    """
    try:
        package = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):
        return None
    for location in (package.submodule_search_locations or []) if package else []:
        folder = Path(location) / "model_configs"
        if folder.is_dir():
            return frozenset(path.stem for path in folder.glob("*.json"))
    return None


def weights_format(path: Path) -> str | None:
    """Return the format of a weights file from its first bytes: "safetensors", "torch" or None.

    "torch" covers what ``torch.load`` reads: a zip archive (``torch.save`` since torch
    1.6), a pickle of protocol 2 to 5 (the older format) and a tar archive (the oldest
    format). Pickles of protocol 0 and 1, which ``torch.save`` writes only when asked
    to, are not recognised. A safetensors file starts with the 8-byte little-endian
    length of its JSON header, then the header's "{".
    """
    with open(path, "rb") as handle:
        head = handle.read(512)
    if head.startswith(b"PK\x03\x04") or head[257:262] == b"ustar":
        return "torch"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch"
    header_length = int.from_bytes(head[:8], "little") if len(head) >= 9 else 0
    if 0 < header_length <= path.stat().st_size - 8 and head[8:9] == b"{":
        return "safetensors"
    return None


def check_checkpoint_file(path: Path) -> None:
    """Raise ModelLoadError unless ``path`` starts like a weights file that open_clip reads.

    Only the first bytes are read, so a file that passes may still fail to load, for
    example when its weights belong to another architecture.
    """
    if path.suffix.lower() in NUMPY_SUFFIXES:
        raise ModelLoadError(f"checkpoint {path} is a NumPy file; convert it to .safetensors or a torch state dict (.pt)")
    try:
        size = path.stat().st_size
        found = weights_format(path) if size else None
    except OSError as exc:
        raise ModelLoadError(f"cannot read checkpoint {path}: {exc.strerror or exc}; check its permissions") from exc
    if not size:
        raise ModelLoadError(f"checkpoint {path} is empty (0 bytes); copy the weights file again")
    # open_clip picks the safetensors reader by the exact suffix and torch.load otherwise.
    named_safetensors = str(path).endswith(".safetensors")
    if named_safetensors and found != "safetensors":
        raise ModelLoadError(
            f"checkpoint {path} is not a valid safetensors file although its name ends in .safetensors "
            "(the header is missing or damaged); copy or convert the weights again"
        )
    if found == "safetensors" and not named_safetensors:
        raise ModelLoadError(
            f"checkpoint {path} is a safetensors file, but open_clip reads a file as safetensors only "
            "when its name ends in .safetensors; rename it"
        )
    if found is None:
        raise ModelLoadError(
            f"checkpoint {path} is not a model weights file (neither safetensors nor a file written by torch.save); "
            "give the weights file of an open_clip model (.safetensors, .pt or .bin) after '@'"
        )


def _create_model(spec: str, create):
    model = _call_open_clip(spec, create)
    model.eval()
    return model


def _call_open_clip(spec: str, build):
    """Run an open_clip factory call and turn its failures into one-line ModelLoadErrors."""
    import pickle

    from safetensors import SafetensorError

    try:
        return build()
    except ImportError as exc:
        raise ModelLoadError(f"model {spec!r} needs the Python package {exc.name or 'named in the error'}; install it with pip") from exc
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(
            f"weights of {spec!r} contain objects other than tensors, which torch.load(weights_only=True) rejects; "
            f"convert them to .safetensors or save only the state dict"
        ) from exc
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AssertionError, SafetensorError) as exc:
        # A KeyError's text is only the missing key (such as "101"), so the type is named too.
        # open_clip asserts while it fits position embeddings of weights from another
        # architecture ("text pos_embed width changed!").
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "no message"
        raise ModelLoadError(
            f"cannot build model {spec!r} ({type(exc).__name__}: {detail}); the weights are damaged or belong to "
            "another architecture, so check the weights file and the architecture (the name before '@', "
            "or open_clip_config.json of a model folder)"
        ) from exc


def _folder_tokenizer(folder: Path, config: dict, spec: str):
    import open_clip
    from open_clip.tokenizer import HFTokenizer

    text_cfg = config.get("model_cfg", {}).get("text_cfg", {})
    hf_name = text_cfg.get("hf_tokenizer_name")
    if not hf_name or any((folder / name).is_file() for name in TOKENIZER_FILES):
        return _call_open_clip(spec, lambda: open_clip.get_tokenizer(f"local-dir:{folder}"))
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    context_length = text_cfg.get("context_length", 77)
    try:
        return HFTokenizer(hf_name, context_length=context_length, cache_dir=str(hub_cache_dir()),
                           tokenizer_mode=text_cfg.get("tokenizer_mode"), **kwargs)
    except ImportError as exc:
        raise ModelLoadError(f"model {spec!r} uses the Hugging Face tokenizer {hf_name!r}, which needs the transformers package; pip install transformers") from exc
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"tokenizer {hf_name!r} of model {spec!r} is not in the Hugging Face cache {hub_cache_dir()}; "
            f"download it with `hf download {hf_name}` into the same HF_HOME"
        ) from exc


def _assemble(model, tokenizer, spec: str, name: str, checksum: str, meta: dict) -> LoadedModel:
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = size[0] if isinstance(size, (tuple, list)) else size
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        spec=spec,
        name=str(name),
        checksum=checksum,
        image_size=int(size),
        mean=tuple(cfg.get("mean", OPENAI_MEAN)),
        std=tuple(cfg.get("std", OPENAI_STD)),
        meta=meta,
    )


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON ({exc}); fix or replace it") from exc
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path} must contain a JSON object, got {type(value).__name__}")
    return value


def _read_meta(folder: Path) -> dict:
    path = folder / META_FILE
    if not path.is_file():
        return {}
    meta = _read_json(path)
    for key in ("pixel_size_um", "temperature", "anomaly_temperature", "tile_size_px"):
        value = meta.get(key)
        if value is None:
            continue
        valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        if key == "tile_size_px":
            valid = valid and float(value).is_integer()
        if not valid:
            raise ModelLoadError(f"{path}: {key!r} is {value!r}; it must be a positive number (or null)")
    return meta


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
