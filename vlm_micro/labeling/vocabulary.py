"""The labelling vocabulary: cell types, anomaly kinds and prompt templates.

Loaded from ``config/labels.yaml``. Both labelling (class embeddings from prompt
ensembles) and training (captions for contrastive learning) build their text from it, so
a model fine-tuned on these captions is queried with the same words.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from vlm_micro.errors import ConfigError
from vlm_micro.yaml_files import UniqueKeySafeLoader, yaml_error_text

_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_COLOR_PATTERN = re.compile(r"^#[0-9A-Fa-f]{6}$")


@dataclass(frozen=True)
class CellType:
    name: str
    color: str
    synonyms: tuple[str, ...]


@dataclass(frozen=True)
class AnomalyKind:
    name: str
    color: str
    states: tuple[str, ...]  # phrases with "{}" for the anomaly object


@dataclass(frozen=True)
class Vocabulary:
    """Cell types, anomaly kinds and templates, validated."""

    cell_types: tuple[CellType, ...]
    templates: dict[str, tuple[str, ...]]  # modality -> templates with one "{}"
    anomaly_object: str
    normal_states: tuple[str, ...]
    anomaly_kinds: tuple[AnomalyKind, ...]
    anomaly_templates: tuple[str, ...]
    source: str = field(default="<memory>", compare=False)

    @property
    def class_names(self) -> list[str]:
        return [cell_type.name for cell_type in self.cell_types]

    @property
    def anomaly_kind_names(self) -> list[str]:
        return [kind.name for kind in self.anomaly_kinds]

    def colors(self) -> dict[str, str]:
        """Return the colour of every cell type and anomaly kind by name."""
        out = {cell_type.name: cell_type.color for cell_type in self.cell_types}
        out.update({kind.name: kind.color for kind in self.anomaly_kinds})
        return out

    def templates_for(self, modality: str | None) -> tuple[str, ...]:
        return self.templates.get(modality or "default") or self.templates["default"]

    def class_prompts(self, modality: str | None) -> dict[str, list[str]]:
        """Return, per cell type, every synonym inserted into every template of ``modality``."""
        templates = self.templates_for(modality)
        return {
            cell_type.name: [template.format(synonym) for synonym in cell_type.synonyms for template in templates]
            for cell_type in self.cell_types
        }

    def normal_prompts(self) -> list[str]:
        """Return normal state phrases times anomaly templates."""
        return self._state_prompts(self.normal_states)

    def anomaly_prompts(self) -> dict[str, list[str]]:
        """Return, per anomaly kind, its state phrases times anomaly templates."""
        return {kind.name: self._state_prompts(kind.states) for kind in self.anomaly_kinds}

    def _state_prompts(self, states) -> list[str]:
        return [
            template.format(state.format(self.anomaly_object))
            for state in states
            for template in self.anomaly_templates
        ]

    def checksum(self) -> str:
        """Return a SHA-256 of the vocabulary content (names, colours, phrases, templates)."""
        payload = asdict(self)
        payload.pop("source", None)
        text = json.dumps(payload, sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_vocabulary(path: str | Path) -> Vocabulary:
    """Read and validate a labels.yaml file.

    Raises
    ------
    ConfigError
        With one line naming the file, the key and the value, when the file is missing,
        is not valid YAML, or breaks a rule (empty vocabulary, duplicate names, a
        template without ``{}``, an invalid colour).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"labels file not found: {path}; pass an existing labels.yaml (see config/labels.yaml)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read labels file {path}: byte {exc.start} is not UTF-8 text; save the file as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read labels file {path}: {exc.strerror}") from exc
    try:
        raw = yaml.load(text, Loader=UniqueKeySafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {yaml_error_text(exc)}") from exc
    return parse_vocabulary(raw, source=str(path))


def parse_vocabulary(raw: object, source: str = "<memory>") -> Vocabulary:
    """Validate a vocabulary mapping as read from YAML; see :func:`load_vocabulary`."""
    if raw is None:
        raise ConfigError(f"{source}: the labels file is empty; start from config/labels.yaml, which lists "
                          "cell_types, templates and anomaly")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with cell_types, templates and anomaly, got "
                          f"{type(raw).__name__}; start from config/labels.yaml")
    unknown = set(raw) - {"cell_types", "templates", "anomaly"}
    if unknown:
        raise ConfigError(f"{source}: unknown key {sorted(unknown)[0]!r}; allowed keys are cell_types, templates, anomaly")

    cell_types = tuple(
        CellType(name, color, synonyms)
        for name, color, synonyms in _parse_named_entries(raw.get("cell_types"), "cell_types", "synonyms", source)
    )
    templates = _parse_templates(raw.get("templates"), source)

    anomaly = raw.get("anomaly")
    if not isinstance(anomaly, dict):
        raise ConfigError(f"{source}: key 'anomaly' must be a mapping with object, normal_states, kinds, templates")
    unknown = set(anomaly) - {"object", "normal_states", "kinds", "templates"}
    if unknown:
        raise ConfigError(f"{source}: unknown key 'anomaly.{sorted(unknown)[0]}'")
    anomaly_object = anomaly.get("object", "cells")
    if not isinstance(anomaly_object, str) or not anomaly_object.strip():
        raise ConfigError(f"{source}: 'anomaly.object' must be a non-empty string, got {anomaly_object!r}")
    normal_states = _parse_phrases(anomaly.get("normal_states"), "anomaly.normal_states", source)
    kinds = tuple(
        AnomalyKind(name, color, states)
        for name, color, states in _parse_named_entries(anomaly.get("kinds"), "anomaly.kinds", "states", source)
    )
    anomaly_templates = _parse_phrases(anomaly.get("templates"), "anomaly.templates", source)

    overlap = set(c.name for c in cell_types) & set(k.name for k in kinds)
    if overlap:
        raise ConfigError(f"{source}: name {sorted(overlap)[0]!r} is both a cell type and an anomaly kind; rename one")
    return Vocabulary(cell_types, templates, anomaly_object.strip(), normal_states, kinds, anomaly_templates, source)


def _parse_named_entries(entries, key, phrase_key, source):
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: '{key}' must be a non-empty list; add at least one entry with name and {phrase_key}")
    seen = set()
    parsed = []
    for index, entry in enumerate(entries):
        where = f"{key}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: '{where}' must be a mapping with name, color and {phrase_key}")
        unknown = set(entry) - {"name", "color", phrase_key}
        if unknown:
            raise ConfigError(f"{source}: unknown key '{where}.{sorted(unknown)[0]}'; allowed: name, color, {phrase_key}")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME_PATTERN.match(name):
            raise ConfigError(f"{source}: '{where}.name' is {name!r}; use letters, digits and underscores, starting with a letter")
        if name.lower() in seen:
            raise ConfigError(f"{source}: duplicate name {name!r} in '{key}'; each name must be unique")
        seen.add(name.lower())
        color = entry.get("color", "#808080")
        if not isinstance(color, str) or not _COLOR_PATTERN.match(color):
            raise ConfigError(f"{source}: '{where}.color' is {color!r}; use a hex colour such as \"#1f77b4\"")
        phrases = _parse_phrases(entry.get(phrase_key), f"{where}.{phrase_key}", source, need_slot=phrase_key == "states")
        parsed.append((name, color.lower(), phrases))
    return parsed


def _parse_phrases(phrases, key, source, need_slot=True) -> tuple[str, ...]:
    if isinstance(phrases, str):
        phrases = [phrases]
    if not isinstance(phrases, list) or not phrases:
        raise ConfigError(f"{source}: '{key}' must be a non-empty list of strings")
    out = []
    for index, phrase in enumerate(phrases):
        if not isinstance(phrase, str) or not phrase.strip():
            raise ConfigError(f"{source}: '{key}[{index}]' must be a non-empty string, got {phrase!r}")
        if need_slot and key.endswith(("templates", "states")) and phrase.count("{}") != 1:
            raise ConfigError(f"{source}: '{key}[{index}]' is {phrase!r}; it must contain exactly one '{{}}' placeholder")
        out.append(phrase.strip())
    return tuple(out)


def _parse_templates(raw, source) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source}: 'templates' must map a modality (fluorescence, brightfield, default) to a list of templates")
    unknown = set(raw) - {"fluorescence", "brightfield", "default"}
    if unknown:
        raise ConfigError(f"{source}: unknown modality 'templates.{sorted(unknown)[0]}'; use fluorescence, brightfield or default")
    if "default" not in raw:
        raise ConfigError(f"{source}: 'templates.default' is missing; it is used for images of unknown modality")
    return {modality: _parse_phrases(items, f"templates.{modality}", source) for modality, items in raw.items()}
