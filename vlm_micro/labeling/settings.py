"""Settings of the labelling step, read from the ``labeling:`` section of the config."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from vlm_micro.errors import ConfigError

MODALITY_CHOICES = ("auto", "fluorescence", "brightfield")
DEFAULT_TEXT_CACHE = ".cache/text_embeddings"


@dataclass(frozen=True)
class LabelSettings:
    """Settings of the labelling step.

    Attributes
    ----------
    modality : str
        ``auto`` uses the modality of each image view (guessed from its background),
        while ``fluorescence`` or ``brightfield`` forces the prompt templates of that modality.
    uncertain_probability : float
        A tile is flagged uncertain when its top class probability is below this value.
    uncertain_margin : float
        A tile is also flagged uncertain when the top-1 minus top-2 probability is below this.
    anomaly_threshold : float
        Final anomaly score at or above which a tile is anomalous and gets an anomaly kind.
    normal_references : tuple of str
        Images or folders of tile images known to be normal. Their embeddings form the
        memory bank of the few-shot anomaly score. Empty disables few-shot scoring.
    few_shot_weight : float
        Weight of the few-shot score in the final anomaly score, in [0, 1], and the
        zero-shot score gets ``1 - few_shot_weight``.
    text_cache : str or None
        Folder for cached class and prompt embeddings. None or "" disables the cache.
    batch_size : int or None
        Tiles per forward pass. None lets the caller choose (the ``model.batch_size`` key).
    threads : int or None
        torch intra-op threads. None leaves torch's default. The workflow passes the
        cores Snakemake gives the job.
    """

    modality: str = "auto"
    uncertain_probability: float = 0.5
    uncertain_margin: float = 0.1
    anomaly_threshold: float = 0.5
    normal_references: tuple[str, ...] = field(default_factory=tuple)
    few_shot_weight: float = 0.5
    text_cache: str | None = DEFAULT_TEXT_CACHE
    batch_size: int | None = None
    threads: int | None = None

    @classmethod
    def from_dict(cls, section: dict | None) -> "LabelSettings":
        """Validate the ``labeling:`` config section; missing keys take the defaults.

        Raises
        ------
        ConfigError
            With one line naming the key and the invalid value.
        """
        section = {} if section is None else section
        if not isinstance(section, dict):
            raise ConfigError(f"config section 'labeling' must be a mapping, got {type(section).__name__}")
        allowed = [item.name for item in fields(cls)]
        unknown = sorted(set(section) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown key 'labeling.{unknown[0]}'; allowed keys: {', '.join(allowed)}")
        values = {name: section[name] for name in allowed if name in section}

        modality = values.get("modality", "auto")
        if modality not in MODALITY_CHOICES:
            raise ConfigError(f"'labeling.modality' is {modality!r}; use auto, fluorescence or brightfield")
        for name in ("uncertain_probability", "uncertain_margin", "anomaly_threshold", "few_shot_weight"):
            if name in values:
                values[name] = _fraction(name, values[name])
        for name in ("batch_size", "threads"):
            if values.get(name) is not None:
                values[name] = _positive_int(name, values[name])
        if "normal_references" in values:
            values["normal_references"] = _paths("normal_references", values["normal_references"])
        if "text_cache" in values:
            values["text_cache"] = _optional_folder("text_cache", values["text_cache"])
        return cls(**values)


def _fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
        raise ConfigError(f"'labeling.{name}' is {value!r}; it must be a number from 0 to 1")
    return float(value)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"'labeling.{name}' is {value!r}; it must be a positive integer")
    return value


def _paths(name: str, value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, Path)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"'labeling.{name}' must be a list of image paths or tile folders, got {type(value).__name__}")
    out = []
    for index, item in enumerate(value):
        if not isinstance(item, (str, Path)) or not str(item).strip():
            raise ConfigError(f"'labeling.{name}[{index}]' is {item!r}; it must be a non-empty path")
        out.append(str(item))
    return tuple(out)


def _optional_folder(name: str, value) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"'labeling.{name}' is {value!r}; it must be a folder path, or null to disable the cache")
    return str(value)
