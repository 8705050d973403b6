from __future__ import annotations

from pathlib import Path

import pytest

from ondasctl import config

pytestmark = pytest.mark.unit


def test_legacy_topics_are_off_by_default(tmp_path: Path) -> None:
    assert config.load(tmp_path, {}).mqtt_legacy_topics is False


def test_legacy_topics_in_unsecured_mode(tmp_path: Path) -> None:
    assert config.load(tmp_path, {"ONDAS_MQTT_LEGACY_TOPICS": "on"}).mqtt_legacy_topics is True


def test_legacy_topics_are_refused_with_device_passwords(tmp_path: Path) -> None:
    env = {"ONDAS_MQTT_LEGACY_TOPICS": "on", "ONDAS_MQTT_MODE": "credentials"}
    with pytest.raises(ValueError, match="ONDAS_MQTT_MODE=unsecured"):
        config.load(tmp_path, env)


def test_a_legacy_topics_value_other_than_on_or_off_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ONDAS_MQTT_LEGACY_TOPICS must be on or off"):
        config.load(tmp_path, {"ONDAS_MQTT_LEGACY_TOPICS": "yes"})
