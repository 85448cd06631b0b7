"""Settings of the ``report:`` section of the configuration."""

from __future__ import annotations

from dataclasses import dataclass, fields

from vlm_micro.errors import ConfigError

# Keys read from the ``labeling:`` section rather than ``report:``.
_LABELING_KEYS = ("uncertain_probability", "uncertain_margin", "anomaly_threshold")


@dataclass(frozen=True)
class ReportSettings:
    """Options of the per-image reports and the run summary.

    Attributes
    ----------
    pdf : bool
        Write a one-page PDF beside each HTML report.
    gallery_per_class : int
        Number of example tiles shown per cell type (the most confident ones).
    top_anomalies : int
        Number of most anomalous tiles shown per image.
    csv : bool
        Also write the run-level tile and cell tables as CSV (without embeddings).
    uncertain_probability : float
        Probability below which the labelling step flags a tile as uncertain, used only
        to explain the uncertain share in the report text.
    uncertain_margin : float
        Lead over the second class below which a tile is flagged uncertain, used only
        in the report text.
    anomaly_threshold : float
        Anomaly score from which the labelling step flags a tile as anomalous, marked
        on the colour bar of the heat map.
    """

    pdf: bool = True
    gallery_per_class: int = 4
    top_anomalies: int = 8
    csv: bool = False
    uncertain_probability: float = 0.5
    uncertain_margin: float = 0.1
    anomaly_threshold: float = 0.5

    @classmethod
    def from_config(cls, config: dict | None) -> "ReportSettings":
        """Build settings from a whole configuration mapping.

        Reads the ``report:`` section and the uncertainty and anomaly thresholds of
        ``labeling:``. Missing keys keep their defaults.

        Raises
        ------
        ConfigError
            When a section is not a mapping, a key is unknown or a value has the wrong
            type or range.
        """
        config = config or {}
        report = _section(config, "report")
        labeling = _section(config, "labeling")
        known = {field.name for field in fields(cls)} - set(_LABELING_KEYS)
        unknown = set(report) - known
        if unknown:
            raise ConfigError(
                f"report.{sorted(unknown)[0]}: unknown key; allowed keys are {', '.join(sorted(known))}"
            )
        values = {}
        for name in ("pdf", "csv"):
            if name in report:
                values[name] = _boolean(report[name], f"report.{name}")
        for name in ("gallery_per_class", "top_anomalies"):
            if name in report:
                values[name] = _count(report[name], f"report.{name}")
        for name in _LABELING_KEYS:
            if name in labeling:
                values[name] = _fraction(labeling[name], f"labeling.{name}")
        return cls(**values)


def _section(config: dict, name: str) -> dict:
    section = config.get(name)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(f"{name}: expected a mapping of keys to values, got {type(section).__name__}")
    return section


def _boolean(value, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _count(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key}: expected a whole number >= 0, got {value!r}")
    return value


def _fraction(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{key}: expected a number between 0 and 1, got {value!r}")
    return float(value)
