"""Device liveness end to end: real devices connect to the real Mosquitto and leave it cleanly, by dropping the
connection, or by going silent past their keep-alive; the agent publishes online/offline on
``<tenant>.device-liveness``, read back from the real broker."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer

from ondas.contracts import DeviceLiveness
from ondas.kafka import consumer_config, ensure_topics
from ondas.topics import device_liveness
from tests.integration.agents_mqtt.conftest import wait_until

pytestmark = pytest.mark.integration

LIVENESS = "mqtt_agent_liveness_events_total"


class LivenessReader:
    def __init__(self, bootstrap: str, tenant: str) -> None:
        # As auth does when it creates a tenant: subscribing to a topic that does not exist yet leaves the
        # consumer waiting for a metadata refresh and a rebalance after the first event created it.
        ensure_topics(bootstrap, [device_liveness(tenant)])
        self.consumer = Consumer(consumer_config(bootstrap, "test-" + uuid.uuid4().hex))
        self.consumer.subscribe([device_liveness(tenant)])
        self.events: list[tuple[str, DeviceLiveness]] = []

    def of(self, device_id: str) -> list[tuple[str, str]]:
        for m in self.consumer.consume(100, timeout=0.2):
            if m.error() is None:
                self.events.append(((m.key() or b"").decode(), DeviceLiveness.parse(m.value() or b"")))
        return [(e.event, e.reason) for key, e in self.events if key == device_id == e.metadata.deviceid]

    def wait_for(self, device_id: str, expected: list[tuple[str, str]], timeout: float = 20.0) -> None:
        wait_until(
            lambda: self.of(device_id) == expected, timeout, f"{device_id}: {expected}, have {self.of(device_id)}"
        )


@pytest.fixture(scope="module")
def liveness(kafka_bootstrap: str, tenant: str) -> Iterator[LivenessReader]:
    r = LivenessReader(kafka_bootstrap, tenant)
    yield r
    r.consumer.close()


def raw_connect(host: str, port: int, username: str, keepalive: int = 60) -> socket.socket:
    """An MQTT 3.1.1 CONNECT on a bare socket, so the test decides how the connection ends."""

    def field(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    body = field(b"MQTT") + bytes([4, 0x82]) + keepalive.to_bytes(2, "big")
    body += field(f"raw-{uuid.uuid4().hex[:8]}".encode()) + field(username.encode())
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(bytes([0x10, len(body)]) + body)
    connack = s.recv(4)
    assert connack[:1] == b"\x20" and connack[3:4] == b"\x00", connack
    return s


def test_connect_and_clean_disconnect(agent, devices, liveness, tenant):
    dev = devices("dev1")
    liveness.wait_for("dev1", [("online", "connected")])
    dev.close()
    liveness.wait_for("dev1", [("online", "connected"), ("offline", "disconnected")])
    assert agent.metric(LIVENESS, tenant=tenant, event="offline", reason="disconnected") >= 1


def test_dropped_connection(agent, mosquitto, liveness, tenant):
    s = raw_connect(mosquitto.cfg.host, mosquitto.cfg.ports["mqtt"], f"{tenant}:dev2")
    liveness.wait_for("dev2", [("online", "connected")])
    s.close()  # no DISCONNECT: the connection just drops
    liveness.wait_for("dev2", [("online", "connected"), ("offline", "connection_lost")])


def test_silent_device_goes_offline_after_its_keepalive(agent, mosquitto, liveness, tenant):
    s = raw_connect(mosquitto.cfg.host, mosquitto.cfg.ports["mqtt"], f"{tenant}:dev3", keepalive=1)
    try:
        liveness.wait_for("dev3", [("online", "connected")])
        # The socket stays open but nothing is sent: the broker gives up after 1.5 x keep-alive.
        liveness.wait_for("dev3", [("online", "connected"), ("offline", "keepalive_timeout")])
    finally:
        s.close()


def test_unknown_devices_and_tenants_publish_nothing(agent, mosquitto, devices, liveness, tenant):
    before = agent.metric(LIVENESS, tenant=tenant, event="ignored", reason="unknown_device")
    devices("ghost").close()
    devices("dev1", of_tenant="t" + uuid.uuid4().hex[:10]).close()
    wait_until(lambda: agent.metric(LIVENESS, tenant=tenant, event="ignored", reason="unknown_device") > before)
    assert liveness.of("ghost") == []
    assert agent.alive()


def _event_json(e: DeviceLiveness) -> dict[str, Any]:
    return json.loads(e.to_bytes())


def test_event_shape(agent, devices, liveness, tenant):
    devices("dev1")
    wait_until(lambda: len(liveness.of("dev1")) >= 3, what="dev1's third event")
    key, event = [(k, e) for k, e in liveness.events if k == "dev1"][-1]
    body = _event_json(event)
    assert key == "dev1"
    assert body["metadata"]["deviceid"] == "dev1" and body["metadata"]["tenant"] == tenant
    assert isinstance(body["metadata"]["timestamp"], int)
    assert body["protocol"] == "mqtt"
