"""Two MQTT agent processes splitting the devices (MQTT_AGENT_SHARDS=2), as a deployment runs them: each device is
forwarded by its shard's process only; each process learns every device from the device events (its own cache
feed), although the two share the consumer group that acts on events; a configure event reaches its device."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agents.mqtt.bridge import shard_of
from ondas.contracts import DeviceEvent
from ondas.timestamps import now_ms
from tests.integration.agents_mqtt.conftest import Agent, DataReader, DeviceClient, Stub, launch_agent, wait_until
from tests.servers import Servers

pytestmark = pytest.mark.integration

DEVICES = [f"late{i:02d}" for i in range(16)]


@pytest.fixture(scope="module")
def shards(
    mosquitto: Servers, kafka_bootstrap: str, stub: Stub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Agent]]:
    folder: Path = tmp_path_factory.mktemp("mqtt-shards")
    group = "mqtt-agent-shards-" + uuid.uuid4().hex[:8]
    started: list[Agent] = []
    try:
        for i in range(2):
            env = {"MQTT_AGENT_SHARDS": "2", "MQTT_AGENT_SHARD": str(i), "MQTT_AGENT_CONSUMER_GROUP": group}
            env["MQTT_AGENT_LIVENESS"] = "on" if i == 0 else "off"
            started.append(launch_agent(mosquitto, kafka_bootstrap, stub, folder / f"{i}.log", f"{group}-{i}", env))
        yield started
    finally:
        for a in started:
            a.stop()


def test_devices_created_later_are_forwarded_each_by_its_shard_only(
    shards: list[Agent],
    devices: Callable[[str], DeviceClient],
    reader: DataReader,
    send_event: Callable[[DeviceEvent], None],
    tenant: str,
) -> None:
    # Not in the device manager's answers (the stub): the processes can only know them from the events.
    for d in DEVICES:
        send_event(DeviceEvent.created(tenant, {"id": d, "label": d}))
    assert {shard_of(f"{tenant}:{d}", 2) for d in DEVICES} == {0, 1}, "pick devices of both shards"
    run = uuid.uuid4().hex
    clients = {d: devices(d) for d in DEVICES}
    sent: dict[str, int] = {}

    def all_forwarded() -> bool:
        # A message sent before its process applied the create event is dropped (unknown_device); send again
        # until each device has one message through, so the test waits for the events, not for a fixed time.
        reader.poll()
        through = {m["key"] for m in reader.messages if m["value"]["attrs"].get("run") == run}
        for d in set(DEVICES) - through:
            sent[d] = sent.get(d, 0) + 1
            clients[d].publish(json.dumps({"run": run, "n": sent[d]}))
        return through == set(DEVICES)

    wait_until(all_forwarded, 60, "a message of every device created after the agents started")
    pids = [str(a.proc.pid) for a in shards]
    for m in reader.messages:
        if m["value"]["attrs"].get("run") == run:
            forwarder = m["headers"]["ondas-agent"].rpartition(":")[2]
            assert forwarder == pids[shard_of(f"{tenant}:{m['key']}", 2)], m
    # Each process received every message and forwarded only its own devices'.
    assert all(a.metric("mqtt_agent_messages_other_shard_total") > 0 for a in shards)


def test_a_configure_event_reaches_its_device_through_the_shared_group(
    shards: list[Agent],
    devices: Callable[[str], DeviceClient],
    send_event: Callable[[DeviceEvent], None],
    tenant: str,
) -> None:
    dev = devices("dev3")
    dev.subscribe(f"{tenant}:dev3/config")
    send_event(DeviceEvent.configure(tenant, "dev3", {"fan": 7}, now_ms()))
    wait_until(lambda: dev.received, 30, "dev3's configuration")
    assert [(t, json.loads(p)) for t, p in dev.received] == [(f"{tenant}:dev3/config", {"fan": 7})]
