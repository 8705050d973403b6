"""dojot's Mosca-era topics (ONDAS_MQTT_LEGACY_TOPICS / MQTT_AGENT_LEGACY_TOPICS, unsecured mode only): a device
publishes on ``/<tenant>/<device-id>/attrs`` without a username and receives on ``/<tenant>/<device-id>/config``.
Real Mosquitto with the platform's generated configuration, real agent process, real Kafka-protocol broker."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from ondas.contracts import DeviceEvent
from ondas.timestamps import now_ms
from tests.integration.agents_mqtt.conftest import (
    Agent,
    Broker,
    DataReader,
    DeviceClient,
    Stub,
    launch_agent,
    own_broker,
    wait_until,
)

pytestmark = pytest.mark.integration

DROPPED = "mqtt_agent_messages_dropped_total"


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[Broker]:
    with own_broker("unsecured", legacy_topics=True) as broker:
        yield broker


@pytest.fixture(scope="module")
def lagent(mosquitto: Broker, kafka_bootstrap: str, stub: Stub, tmp_path_factory) -> Iterator[Agent]:
    log_path = tmp_path_factory.mktemp("mqtt-agent-legacy") / "agent.log"
    a = launch_agent(
        mosquitto,  # type: ignore[arg-type]  (launch_agent reads .cfg only)
        kafka_bootstrap,
        stub,
        log_path,
        "test-agent-" + uuid.uuid4().hex[:8],
        extra_env={"MQTT_AGENT_LEGACY_TOPICS": "on"},
    )
    yield a
    assert a.stop() == 0, log_path.read_text()[-5000:]


@pytest.fixture
def legacy(devices) -> DeviceClient:
    """A Mosca-era device: no username, the topic names it."""
    return devices("legacy", anonymous=True)


def test_a_legacy_topic_message_reaches_device_data(lagent, legacy, reader: DataReader, tenant):
    mark = uuid.uuid4().hex
    legacy.publish(json.dumps({"mark": mark}), f"/{tenant}/dev1/attrs")
    m = reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)
    assert m["key"] == "dev1"
    assert m["value"]["metadata"]["deviceid"] == "dev1" and m["value"]["metadata"]["tenant"] == tenant


def test_an_unknown_device_on_a_legacy_topic_is_dropped(lagent, legacy, reader: DataReader, tenant):
    before = lagent.metric(DROPPED, tenant=tenant, reason="unknown_device")
    legacy.publish(json.dumps({"a": 1}), f"/{tenant}/ghost/attrs")
    wait_until(lambda: lagent.metric(DROPPED, tenant=tenant, reason="unknown_device") > before)
    assert lagent.alive()


def test_configure_reaches_both_config_topics(lagent, legacy, devices, send_event, tenant):
    assert legacy.subscribe(f"/{tenant}/dev2/config") < 0x80
    modern = devices("dev2")
    modern.subscribe(f"{tenant}:dev2/config")
    send_event(DeviceEvent.configure(tenant, "dev2", {"fan": 7}, now_ms()))
    wait_until(lambda: legacy.received and modern.received, what="the configuration on both topics")
    assert legacy.received == [(f"/{tenant}/dev2/config", b'{"fan":7}')]
    assert modern.received == [(f"{tenant}:dev2/config", b'{"fan":7}')]
