"""The worker end to end on the real broker, PostgreSQL and Redis: dojot's flows stored through the API run on
device data and write what dojot writes; a failing node, a template that does not parse and an HTTP call to a
server that never answers leave the other flows running; tenants never run each other's flows; §12.2.3 at the
Kafka level."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from flowbroker.engine import LOOPS_STOPPED, NODE_ERRORS
from ondas.topics import device_data, topic
from tests.integration.flowbroker.conftest import Api, Reader
from tests.integration.flowbroker.servers_http import LocalServer
from tests.unit.flowbroker import flows
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

Send = Callable[[str, Any, str], None]


def data(tenant: str, device: str, attrs: dict[str, Any], ts: int = 1_700_000_000_000) -> dict[str, Any]:
    return {"metadata": {"deviceid": device, "tenant": tenant, "timestamp": ts}, "attrs": attrs}


def for_device(device: str) -> Callable[[dict[str, Any]], bool]:
    return lambda v: v.get("metadata", {}).get("deviceid") == device


def test_dojot_flow_runs_end_to_end(
    api: Api, unique: str, start_worker: Callable[..., Any], send: Send, reader: Callable[[str], Reader]
) -> None:
    fid = api.create(flows.rename_flow("src1", "virt1"), name="rename")
    start_worker()
    out = reader(device_data(unique))
    send(device_data(unique), data(unique, "src1", {"temperature": 21.5}), "src1")
    (record,) = out.until(1, for_device("virt1"))
    assert record["attrs"] == {"temp": 21.5}
    assert record["metadata"]["tenant"] == unique and isinstance(record["metadata"]["timestamp"], int)
    key, _, headers = next(m for m in out.messages if m[1] is record)
    assert key == "virt1"
    assert headers["ondas-flow"] == fid and headers["ondas-flow-generation"] == "1"
    assert headers["ondas-flow-output-id"].startswith(f"{fid}:A2a3e9053e945f:{device_data(unique)}:")


def test_kitchen_alarm_example(
    api: Api, unique: str, start_worker: Callable[..., Any], send: Send, reader: Callable[[str], Reader]
) -> None:
    api.create(flows.kitchen_flow("th1", "alarm1"))
    start_worker()
    out = reader(device_data(unique))
    for i, t in enumerate((25, 45, 39)):
        send(device_data(unique), data(unique, "th1", {"temperature": t}, ts=1_700_000_000_000 + i), "th1")
    records = out.until(3, for_device("alarm1"))
    assert [r["attrs"] for r in records] == [
        {"message": "kitchen OK", "severity": 4},
        {"message": "kitchen on fire", "severity": 1},
        {"message": "kitchen OK", "severity": 4},
    ]


def test_failures_leave_other_flows_running(
    api: Api, unique: str, start_worker: Callable[..., Any], send: Send, reader: Callable[[str], Reader]
) -> None:
    hanging = LocalServer()
    try:
        bad_template = [
            flows.tab(),
            flows.event_in("in", "dev1", ["tpl"]),
            {
                "id": "tpl",
                "type": "template",
                "field": "x",
                "syntax": "mustache",
                "template": "{{#open}} unclosed",
                "output": "str",
                "wires": [["out"]],
            },
            flows.device_out("out", ["never1"]),
        ]
        slow_http = [
            flows.tab(),
            flows.event_in("in", "dev1", ["req"]),
            flows.change("req", [flows.set_rule("request", '{"payload": {"a": 1}}', "json")], ["h"]),
            {
                "id": "h",
                "type": "http",
                "method": "POST",
                "url": hanging.url + "/hang",
                "body": "request",
                "response": "res",
                "ret": "obj",
                "wires": [["out"]],
            },
            flows.device_out("out", ["never2"]),
        ]
        raising = [
            flows.tab(),
            flows.event_in("in", "dev1", ["geo"]),
            {
                "id": "geo",
                "type": "geofence",
                "filter": "inside",
                "wires": [["out"]],
                "points": [
                    {"latitude": 0, "longitude": 0},
                    {"latitude": 0, "longitude": 1},
                    {"latitude": 1, "longitude": 1},
                ],
            },
            flows.device_out("out", ["never3"]),
        ]
        bad_ids = [api.create(bad_template), api.create(slow_http), api.create(raising)]
        good = api.create(flows.rename_flow("dev1", "virt2"))
        start_worker()
        out = reader(device_data(unique))
        for i in range(5):
            send(device_data(unique), data(unique, "dev1", {"temperature": i}, ts=1_700_000_000_000 + i), "dev1")
        records = out.until(5, for_device("virt2"))
        assert [r["attrs"]["temp"] for r in records] == [0, 1, 2, 3, 4]  # in order, every one
        wait_for(lambda: NODE_ERRORS.labels(unique, bad_ids[1], "h", "http")._value.get() >= 5, what="http errors")
        assert NODE_ERRORS.labels(unique, bad_ids[0], "tpl", "template")._value.get() >= 5
        assert NODE_ERRORS.labels(unique, bad_ids[2], "geo", "geofence")._value.get() >= 5  # no position
        assert NODE_ERRORS.labels(unique, good, "Ac1", "change")._value.get() == 0
        out.poll()
        assert not [v for _, v, _ in out.messages if v["metadata"]["deviceid"].startswith("never")]
    finally:
        hanging.close()


def test_http_token_example(
    api: Api, unique: str, start_worker: Callable[..., Any], send: Send, reader: Callable[[str], Reader]
) -> None:
    server = LocalServer()
    try:
        nodes = [
            flows.tab(),
            flows.event_in("in", "login1", ["tpl"]),
            {
                "id": "tpl",
                "type": "template",
                "field": "req",
                "fieldType": "msg",
                "format": "handlebars",
                "syntax": "mustache",
                "output": "str",
                "wires": [["h"]],
                "template": '{"payload": {"username": "{{payload.data.attrs.username}}",'
                ' "password": "{{payload.data.attrs.password}}"}}',
            },
            {
                "id": "h",
                "type": "http",
                "method": "POST",
                "url": server.url + "/token",
                "body": "req",
                "response": "res",
                "ret": "obj",
                "wires": [["c"]],
            },
            flows.change("c", [flows.set_rule("output.token", "res.payload.token", "msg")], ["out"]),
            flows.device_out("out", ["tokdev"]),
        ]
        api.create(nodes)
        start_worker()
        out = reader(device_data(unique))
        send(device_data(unique), data(unique, "login1", {"username": "ana", "password": "pw12"}), "login1")
        (record,) = out.until(1, for_device("tokdev"))
        assert record["attrs"] == {"token": "tok-ana-4"}
    finally:
        server.close()


def test_rain_cumulative_sum_switch_notification(
    api: Api, unique: str, start_worker: Callable[..., Any], send: Send, reader: Callable[[str], Reader]
) -> None:
    api.create(flows.rain_flow("station1"))
    start_worker()
    notes = reader(topic(unique, "dojot.notifications"))
    minute = 60_000
    for i in range(22):  # 5 mm a minute: 105 mm after the 21st message, 110 after the 22nd
        send(device_data(unique), data(unique, "station1", {"rain": 5}, ts=1_700_000_000_000 + i * minute), "station1")
    found = notes.until(2)
    assert [n["message"] for n in found] == ["Rain in the last hour: 105 mm", "Rain in the last hour: 110 mm"]
    assert found[0]["metaAttrsFilter"] == {"station": "station1", "rain": 105, "shouldPersist": True}
    assert found[0]["subject"] == "user_notification"
    notes.poll()
    assert len(notes.messages) == 2


def test_tenant_b_never_runs_on_tenant_a_devices(
    api: Api, api_b: Api, unique: str, start_worker: Callable[..., Any], send: Send, reader: Callable[[str], Reader]
) -> None:
    api_b.create(flows.rename_flow("shared1", "stolen1"))
    api.create(flows.rename_flow("shared1", "mine1"))
    start_worker()
    out_a = reader(device_data(unique))
    out_b = reader(device_data(unique + "b"))
    send(device_data(unique), data(unique, "shared1", {"temperature": 1}), "shared1")
    assert len(out_a.until(1, for_device("mine1"))) == 1
    out_b.poll()
    assert [v for _, v, _ in out_b.messages] == []
    assert not [v for _, v, _ in out_a.messages if for_device("stolen1")(v)]


def test_flow_feeding_itself_is_stopped(
    api: Api, unique: str, start_worker: Callable[..., Any], send: Send, reader: Callable[[str], Reader]
) -> None:
    nodes = flows.rename_flow("loop1", "loop1")
    nodes[2]["rules"] = [flows.set_rule("output.temperature", "payload.data.attrs.temperature", "msg")]
    fid = api.create(nodes)
    start_worker()  # max_generations=4 in the tests' settings
    out = reader(device_data(unique))
    send(device_data(unique), data(unique, "loop1", {"temperature": 1}), "loop1")
    wait_for(lambda: LOOPS_STOPPED.labels(unique, fid, "generations")._value.get() == 1, what="loop stopped")
    records = out.until(5, for_device("loop1"), timeout=2)
    assert len(records) == 5  # the original and four generations written by the flow
    assert sorted(int(h.get("ondas-flow-generation", "0")) for _, _, h in out.messages) == [0, 1, 2, 3, 4]


def test_disabled_and_deleted_flows_stop(
    api: Api, unique: str, start_worker: Callable[..., Any], send: Send, reader: Callable[[str], Reader]
) -> None:
    fid = api.create(flows.rename_flow("sw1", "virt3"))
    start_worker()
    out = reader(device_data(unique))
    send(device_data(unique), data(unique, "sw1", {"temperature": 1}), "sw1")
    assert len(out.until(1, for_device("virt3"))) == 1
    status, _ = api.call(
        "PUT", f"/flows/v1/flow/{fid}", {"name": "off", "enabled": False, "flow": flows.rename_flow("sw1", "virt3")}
    )
    assert status == 200
    marker = api.create(flows.rename_flow("sw1", "marker1"))
    wait_for(lambda: _ran(send, out, unique, "marker1"), what="the new flow to run", timeout=30, interval=0.3)
    before = len(out.until(99, for_device("virt3"), timeout=0.5))
    send(device_data(unique), data(unique, "sw1", {"temperature": 2}), "sw1")
    assert len(out.until(before + 1, for_device("marker1"), timeout=10)) >= 1
    assert len(out.until(99, for_device("virt3"), timeout=1)) == before
    assert api.call("DELETE", f"/flows/v1/flow/{marker}")[0] == 200


def _ran(send: Send, out: Reader, tenant: str, device: str) -> bool:
    send(device_data(tenant), data(tenant, "sw1", {"temperature": 0}), "sw1")
    return bool(out.until(1, for_device(device), timeout=0.3))


def test_bad_messages_are_skipped(
    api: Api, unique: str, start_worker: Callable[..., Any], send: Send, reader: Callable[[str], Reader]
) -> None:
    api.create(flows.rename_flow("ok1", "virt4"))
    start_worker()
    out = reader(device_data(unique))
    send(device_data(unique), {"metadata": {"deviceid": "ok1"}}, "ok1")  # no tenant, no attrs
    send(
        device_data(unique),
        json.loads('{"attrs": {}, "metadata": {"deviceid": "ok1", "tenant": "other", "timestamp": 1}}'),
        "ok1",
    )
    send(device_data(unique), data(unique, "ok1", {"temperature": 9}), "ok1")
    (record,) = out.until(1, for_device("virt4"))
    assert record["attrs"] == {"temp": 9}


def test_two_workers_split_the_load(
    api: Api,
    unique: str,
    kafka_bootstrap: str,
    start_worker: Callable[..., Any],
    send: Send,
    reader: Callable[[str], Reader],
) -> None:
    from ondas.kafka import ensure_topics
    from ondas.topics import device_events

    ensure_topics(kafka_bootstrap, [device_data(unique), device_events(unique)], partitions=4)
    for i in range(8):
        api.create(flows.rename_flow(f"dev{i}", f"out{i}"), name=f"f{i}")
    first, second = start_worker(), start_worker()
    out = reader(device_data(unique))
    sent = 0

    def both_busy() -> bool:
        nonlocal sent
        for i in range(8):
            send(device_data(unique), data(unique, f"dev{i}", {"temperature": sent}), f"dev{i}")
        sent += 1
        return first.worker.runner.handled > 0 and second.worker.runner.handled > 0

    wait_for(both_busy, what="both workers to handle messages", timeout=60, interval=0.2)
    for i in range(8):
        temps = [r["attrs"]["temp"] for r in out.until(sent, for_device(f"out{i}"))]
        assert sorted(set(temps)) == list(range(sent))  # nothing missing (a rebalance may repeat some)
        firsts = [temps.index(t) for t in range(sent)]
        assert firsts == sorted(firsts)  # per device, in order


def test_deleted_tenant_loses_its_flows(
    api: Api, api_b: Api, unique: str, auth: Any, start_worker: Callable[..., Any], send: Send
) -> None:
    from ondas.topics import TENANCY_TOPIC

    api.create(flows.rename_flow("a1", "b1"))
    api_b.create(flows.rename_flow("a1", "b1"))
    run = start_worker()
    wait_for(lambda: run.worker.purge.ready, what="tenant purge")
    auth.tenants = [unique + "b"]  # auth no longer knows the tenant: everything of it goes
    send(TENANCY_TOPIC, {"type": "DELETE", "tenant": unique}, unique)
    wait_for(lambda: api.call("GET", "/flows/v1/flow")[1] == {"flows": []}, what="the purge", timeout=30)
    assert len(api_b.call("GET", "/flows/v1/flow")[1]["flows"]) == 1
