"""The MQTT agent end to end: real devices (paho) on the device listener, the agent process on the internal
listener, device-data read back from Kafka, device events produced on Kafka."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Producer

from ondas.contracts import DeviceEvent
from ondas.timestamps import now_ms
from ondas.topics import device_events
from tests.integration.agents_mqtt.conftest import MAX_PAYLOAD, device, wait_until

pytestmark = pytest.mark.integration

DROPPED = "mqtt_agent_messages_dropped_total"


def drop_lines(agent, tenant: str, device_id: str, reason: str) -> int:
    """Log lines of the agent saying a message of the device was dropped for the reason."""
    lines = []
    for raw in agent.log_path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue  # not a log record, or the line being written right now
    return sum(
        1
        for line in lines
        if line.get("msg") == "message dropped"
        and (line.get("tenant"), line.get("device"), line.get("reason")) == (tenant, device_id, reason)
    )


def marker() -> str:
    return uuid.uuid4().hex


def test_a_known_devices_message_reaches_device_data(agent, devices, reader, tenant):
    dev = devices("dev1")
    mark = marker()
    dev.publish(json.dumps({"temperature": 10.6, "mark": mark, "timestamp": "2018-06-05T19:15:37.452Z"}))
    msg = reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)
    assert msg["key"] == "dev1"
    assert msg["value"] == {
        "metadata": {"deviceid": "dev1", "tenant": tenant, "timestamp": 1528226137452},
        "attrs": {"temperature": 10.6, "mark": mark},
    }
    assert msg["headers"]["ondas-tenant"] == tenant and msg["headers"]["ondas-device"] == "dev1"

    # Without a timestamp the agent stamps the message itself.
    before = now_ms()
    mark = marker()
    dev.publish(json.dumps({"humidity": 60, "mark": mark}))
    msg = reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)
    assert before - 1000 <= msg["value"]["metadata"]["timestamp"] <= now_ms() + 1000
    assert agent.metric("mqtt_agent_messages_published_total", tenant=tenant) >= 2


def test_a_devices_order_is_kept(agent, devices, reader):
    dev = devices("dev2")
    run = marker()
    for i in range(50):
        dev.client.publish(f"{dev.topic_base}/attrs", json.dumps({"run": run, "seq": i}), qos=1)
    reader.wait_for(lambda m: m["value"]["attrs"] == {"run": run, "seq": 49})
    seqs = [m["value"]["attrs"]["seq"] for m in reader.messages if m["value"]["attrs"].get("run") == run]
    assert seqs == list(range(50))


def test_an_unknown_devices_message_is_dropped(agent, devices, reader, tenant):
    before = agent.metric(DROPPED, tenant=tenant, reason="unknown_device")
    ghost_mark = marker()
    devices("ghost").publish(json.dumps({"mark": ghost_mark}))
    wait_until(lambda: agent.metric(DROPPED, tenant=tenant, reason="unknown_device") > before, what="a drop")
    # A known device's later message arrives; the ghost's never did.
    mark = marker()
    devices("dev1").publish(json.dumps({"mark": mark}))
    reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)
    assert not [m for m in reader.messages if m["value"]["attrs"].get("mark") == ghost_mark]


def test_an_unknown_tenant_is_dropped_without_a_new_label(agent, devices):
    before = agent.metric(DROPPED, tenant="_unknown", reason="unknown_tenant")
    devices("dev1", of_tenant="t" + uuid.uuid4().hex[:10]).publish(b"{}")
    wait_until(lambda: agent.metric(DROPPED, tenant="_unknown", reason="unknown_tenant") > before, what="a drop")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"temperature=10", "not_json"),
        (b"\xff\xfe", "not_utf8"),
        (b'[{"temperature": 10}]', "not_object"),
        (b'{"a": "' + b"x" * MAX_PAYLOAD + b'"}', "too_large"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "too_deep"),
        (b'{"a": 1, "timestamp": "soon"}', "bad_timestamp"),
        (b'{"a": "' + b"x" * 1_048_576 + b'"}', "too_large"),
    ],
    ids=["not-json", "not-utf8", "array", "oversized", "too-deep", "bad-timestamp", "one-megabyte"],
)
def test_bad_payloads_are_dropped_and_counted(agent, devices, reader, tenant, payload, reason):
    before = agent.metric(DROPPED, tenant=tenant, reason=reason)
    logged = drop_lines(agent, tenant, "dev1", reason)
    dev = devices("dev1")
    dev.publish(payload)
    wait_until(lambda: agent.metric(DROPPED, tenant=tenant, reason=reason) == before + 1, what=f"a {reason} drop")
    wait_until(lambda: drop_lines(agent, tenant, "dev1", reason) == logged + 1, what="the drop logged")
    assert agent.alive()
    mark = marker()
    dev.publish(json.dumps({"mark": mark}))
    reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)


def test_a_device_cannot_publish_as_another_device(agent, devices, reader, tenant):
    spoof = marker()
    devices("dev2").publish(json.dumps({"mark": spoof}), topic=f"{tenant}:dev1/attrs")
    mark = marker()
    devices("dev1").publish(json.dumps({"mark": mark}))
    reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)
    assert not [m for m in reader.messages if m["value"]["attrs"].get("mark") == spoof]


def test_configure_reaches_only_its_device(agent, devices, send_event, tenant):
    dev1, dev2 = devices("dev1"), devices("dev2")
    dev1.subscribe(f"{tenant}:dev1/config")
    dev2.subscribe(f"{tenant}:dev1/config")  # granted, but the ACL filters every delivery
    dev2.subscribe(f"{tenant}:dev2/config")
    sent = agent.metric("mqtt_agent_config_sent_total", tenant=tenant)

    send_event(DeviceEvent.configure(tenant, "dev1", {"fan": 100}, now_ms()))
    wait_until(lambda: dev1.received, what="dev1's configuration")
    assert [(t, json.loads(p)) for t, p in dev1.received] == [(f"{tenant}:dev1/config", {"fan": 100})]

    # The agent publishes in order, so once dev2 has its own configuration it would have had dev1's before.
    send_event(DeviceEvent.configure(tenant, "dev2", {"fan": 1}, now_ms()))
    wait_until(lambda: dev2.received, what="dev2's configuration")
    assert [(t, json.loads(p)) for t, p in dev2.received] == [(f"{tenant}:dev2/config", {"fan": 1})]
    wait_until(lambda: agent.metric("mqtt_agent_config_sent_total", tenant=tenant) == sent + 2, what="counts")


def test_a_burst_of_configure_events_reaches_the_device_in_order(agent, devices, kafka_bootstrap, tenant):
    # More events than Mosquitto lets a client have awaiting PUBACK (20): the agent publishes them in windows.
    dev = devices("dev2")
    dev.subscribe(f"{tenant}:dev2/config")
    run = marker()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(60):
        event = DeviceEvent.configure(tenant, "dev2", {"run": run, "seq": i}, now_ms())
        producer.produce(device_events(tenant), event.to_bytes(), key="dev2")
    assert producer.flush(10) == 0

    def mine() -> list[int]:
        return [json.loads(p)["seq"] for _, p in list(dev.received) if json.loads(p).get("run") == run]

    wait_until(lambda: len(mine()) >= 60, 30, "60 configurations")
    assert mine() == list(range(60))
    assert agent.alive()


def test_a_removed_device_is_dropped(agent, devices, send_event, tenant):
    dev = devices("dev3")
    send_event(DeviceEvent.removed(tenant, "dev3"))
    before = agent.metric(DROPPED, tenant=tenant, reason="unknown_device")

    def dropped() -> bool:
        dev.publish(b'{"after": "remove"}')
        return wait_until_quiet(lambda: agent.metric(DROPPED, tenant=tenant, reason="unknown_device") > before)

    wait_until(dropped, what="dev3's messages to be dropped")


def test_a_disabled_devices_messages_are_dropped_until_it_is_enabled(agent, devices, send_event, reader, tenant):
    """Unsecured mode: the broker cannot refuse the device, so the bridge drops what it sends while disabled."""
    dev = devices("dev2")
    send_event(DeviceEvent.updated(tenant, {**device("dev2"), "disabled": True}))
    before = agent.metric(DROPPED, tenant=tenant, reason="device_disabled")

    def dropped() -> bool:
        dev.publish(json.dumps({"phase": "disabled"}))
        return wait_until_quiet(lambda: agent.metric(DROPPED, tenant=tenant, reason="device_disabled") > before)

    wait_until(dropped, what="dev2's messages to be dropped as disabled")
    # (messages sent before the agent applied the event were forwarded; from here on, none may be)
    count = agent.metric(DROPPED, tenant=tenant, reason="device_disabled")
    dev.publish(json.dumps({"phase": "surely-disabled"}))
    wait_until(lambda: agent.metric(DROPPED, tenant=tenant, reason="device_disabled") > count, what="the drop")
    send_event(DeviceEvent.updated(tenant, {**device("dev2"), "disabled": False}))
    run = uuid.uuid4().hex

    def forwarded() -> bool:
        dev.publish(json.dumps({"phase": "enabled", "run": run}))
        reader.poll()
        return any(m["value"]["attrs"].get("run") == run for m in reader.messages)

    wait_until(forwarded, what="dev2's messages to be forwarded again")
    assert not [m for m in reader.messages if m["value"]["attrs"].get("phase") == "surely-disabled"]


def test_a_created_device_is_accepted_without_restart(agent, devices, send_event, reader, tenant, stub):
    dev = devices("dev4")
    send_event(DeviceEvent.created(tenant, device("dev4")))
    mark = marker()

    def arrived() -> bool:
        dev.publish(json.dumps({"mark": mark}))
        return wait_until_quiet(lambda: reader.poll() or any(m["key"] == "dev4" for m in reader.messages))

    wait_until(arrived, what="dev4's message in device-data")
    assert agent.alive()


def wait_until_quiet(predicate, timeout: float = 1.0) -> bool:
    try:
        wait_until(predicate, timeout)
        return True
    except AssertionError:
        return False


@pytest.mark.parametrize(
    "attrs",
    [
        {"temperature": "hot"},
        {"count": 1.5},
        {"on": 1},
        {"name": 42},
        {"where": "somewhere"},
        {"temperature": True},
        {"temperature": 20.5, "count": "3"},
    ],
    ids=[
        "float-as-text",
        "integer-fraction",
        "bool-as-number",
        "string-as-number",
        "bad-geo",
        "float-as-bool",
        "one-bad",
    ],
)
def test_wrong_attribute_types_are_rejected(agent, devices, reader, tenant, attrs):
    before = agent.metric(DROPPED, tenant=tenant, reason="wrong_type")
    dev = devices("typed")
    bad = marker()
    logged = drop_lines(agent, tenant, "typed", "wrong_type")
    dev.publish(json.dumps({**attrs, "mark": bad}))
    wait_until(lambda: agent.metric(DROPPED, tenant=tenant, reason="wrong_type") == before + 1, what="a drop")
    wait_until(lambda: drop_lines(agent, tenant, "typed", "wrong_type") == logged + 1, what="the drop logged")
    assert agent.alive()
    good = marker()
    dev.publish(
        json.dumps({"temperature": 21, "count": 3.0, "on": False, "name": "x", "where": "-22.8,-47.0", "mark": good})
    )
    reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == good)
    assert not [m for m in reader.messages if m["value"]["attrs"].get("mark") == bad]


def test_unknown_attributes_are_forwarded_and_counted(agent, devices, reader, tenant):
    before = agent.metric("mqtt_agent_attrs_unknown_total", tenant=tenant)
    mark = marker()
    devices("typed").publish(json.dumps({"temperature": 1.5, "extra": [1], "mark": mark}))
    msg = reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)
    assert msg["value"]["attrs"] == {"temperature": 1.5, "extra": [1], "mark": mark}
    assert agent.metric("mqtt_agent_attrs_unknown_total", tenant=tenant) == before + 2
