from __future__ import annotations

import pytest

from agents.mqtt.broker import attrs_subscription
from agents.mqtt.settings import Settings
from ondas.settings import SettingsError

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_AGENT_BROKER_PASSWORD", "secret")


def test_one_shard_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MQTT_AGENT_SHARD", raising=False)
    monkeypatch.delenv("MQTT_AGENT_SHARDS", raising=False)
    s = Settings.from_env()
    assert (s.shard_index, s.shard_count) == (0, 1)
    assert attrs_subscription(s.shard_index, s.shard_count) == "$share/ondas-mqtt-agent/+/attrs"


@pytest.mark.parametrize(("index", "count"), [("2", "2"), ("-1", "2"), ("0", "0"), ("x", "2")])
def test_a_shard_outside_the_count_is_refused(monkeypatch: pytest.MonkeyPatch, index: str, count: str) -> None:
    monkeypatch.setenv("MQTT_AGENT_SHARD", index)
    monkeypatch.setenv("MQTT_AGENT_SHARDS", count)
    with pytest.raises(SettingsError, match="MQTT_AGENT_SHARD"):
        Settings.from_env()


def test_each_shard_has_a_subscription_group_of_its_own() -> None:
    groups = {attrs_subscription(i, 3) for i in range(3)}
    assert len(groups) == 3 and all(g.startswith("$share/") and g.endswith("/+/attrs") for g in groups)


def test_a_new_agent_is_not_ready_before_run_registers_its_checks() -> None:
    """run() serves /health/ready before it has built its connections: that window must answer 503."""
    from agents.mqtt.app import MqttAgent

    ok, body = MqttAgent(Settings.from_env()).health.ready()
    assert not ok and body["checks"] == {"startup": "failing"}


def test_a_graceful_stop_keeps_the_sessions_unless_told_to_leave(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MQTT_AGENT_LEAVE_ON_STOP", raising=False)
    assert Settings.from_env().leave_on_stop is False
    monkeypatch.setenv("MQTT_AGENT_LEAVE_ON_STOP", "on")
    assert Settings.from_env().leave_on_stop is True
    monkeypatch.setenv("MQTT_AGENT_LEAVE_ON_STOP", "yes")
    with pytest.raises(SettingsError, match="MQTT_AGENT_LEAVE_ON_STOP"):
        Settings.from_env()


def test_legacy_topics_add_the_mosca_era_subscription_in_the_same_group() -> None:
    assert attrs_subscription(0, 1, legacy=True) == "$share/ondas-mqtt-agent/+/+/+/attrs"
    assert attrs_subscription(1, 3, legacy=True) == "$share/ondas-mqtt-agent-1-of-3/+/+/+/attrs"
