"""LabelSettings validation of the labeling config section."""

from __future__ import annotations

import pytest

from vlm_micro.errors import ConfigError
from vlm_micro.labeling import LabelSettings


def test_settings_defaults():
    settings = LabelSettings.from_dict({})
    assert settings.modality == "auto"
    assert settings.uncertain_probability == 0.5
    assert settings.uncertain_margin == 0.1
    assert settings.anomaly_threshold == 0.5
    assert settings.normal_references == ()
    assert settings.few_shot_weight == 0.5
    assert settings.text_cache == ".cache/text_embeddings"
    assert settings.batch_size is None
    assert settings.threads is None


def test_settings_none_section_is_default():
    assert LabelSettings.from_dict(None) == LabelSettings()


def test_settings_values_kept():
    settings = LabelSettings.from_dict({
        "modality": "brightfield", "uncertain_probability": 0.7, "anomaly_threshold": 1,
        "normal_references": "refs/normal", "few_shot_weight": 0, "text_cache": None,
        "batch_size": 8, "threads": 2,
    })
    assert settings.modality == "brightfield"
    assert settings.uncertain_probability == 0.7
    assert settings.anomaly_threshold == 1.0
    assert settings.normal_references == ("refs/normal",)
    assert settings.few_shot_weight == 0.0
    assert settings.text_cache is None
    assert settings.batch_size == 8
    assert settings.threads == 2


@pytest.mark.parametrize("section, key", [
    ({"modality": "phase"}, "labeling.modality"),
    ({"uncertain_probability": 1.5}, "labeling.uncertain_probability"),
    ({"uncertain_margin": -0.1}, "labeling.uncertain_margin"),
    ({"anomaly_threshold": "high"}, "labeling.anomaly_threshold"),
    ({"few_shot_weight": True}, "labeling.few_shot_weight"),
    ({"normal_references": 3}, "labeling.normal_references"),
    ({"normal_references": ["ok", ""]}, "labeling.normal_references[1]"),
    ({"batch_size": 0}, "labeling.batch_size"),
    ({"threads": 1.5}, "labeling.threads"),
    ({"text_cache": 5}, "labeling.text_cache"),
    ({"anomaly_treshold": 0.5}, "labeling.anomaly_treshold"),
])
def test_settings_invalid_value(section, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")) as info:
        LabelSettings.from_dict(section)
    assert "\n" not in str(info.value)


def test_settings_section_not_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        LabelSettings.from_dict(["modality"])
