"""Flows through the gateway with real MQTT devices, as dojot's documentation works them (seed §10.2, §12.2.1-3):
flows saved with ``/flows/v1/flow`` in dojot's JSON, devices publishing over MQTT, results read back from history
(virtual devices and notifications) and from a live notifications subscriber; and a tenant cannot see, change or
aim a flow at another tenant's flows or devices."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import requests
import websockets

from tests.e2e.helpers import api, mosquitto_pub, poll
from tests.e2e.test_realtime import ticket, ws_base
from tests.integration.flowbroker.servers_http import LocalServer
from tests.unit.flowbroker import flows

pytestmark = pytest.mark.e2e


def make_device(platform, token: str, label: str, attrs: dict[str, str]) -> str:
    """A template with these dynamic attributes (label -> value type) and one device of it; its id."""
    template = {
        "label": f"{label} template",
        "attrs": [{"label": k, "type": "dynamic", "value_type": v} for k, v in attrs.items()],
    }
    r = api("POST", f"{platform.gateway}/template", token, json=template)
    assert r.status_code == 200, r.text
    body = {"templates": [str(r.json()["template"]["id"])], "label": label}
    r = api("POST", f"{platform.gateway}/device", token, json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["devices"][0]["id"])


def save_flow(platform, token: str, nodes: list[dict[str, Any]], name: str) -> str:
    r = api("POST", f"{platform.gateway}/flows/v1/flow", token, json={"name": name, "enabled": True, "flow": nodes})
    assert r.status_code == 200, r.text
    return str(r.json()["flow"]["id"])


def publish(platform, tenant: str, device: str, attrs: dict[str, Any]) -> None:
    identity = f"{tenant}:{device}"
    mosquitto_pub(platform.mqtt_port, identity, f"{identity}/attrs", json.dumps(attrs))


def runs(platform, flow_id: str) -> float:
    """Messages that started flow ``flow_id`` so far (the worker's flowbroker_messages_in_total)."""
    text = requests.get(f"http://127.0.0.1:{platform.port('flowbroker_worker')}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("flowbroker_messages_in_total{") and f'flow="{flow_id}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def until_running(platform, flow_id: str, probe: Any) -> None:
    """The worker reads the enabled flows every few seconds: ``probe()`` (a publication) until the flow ran."""

    def ran() -> bool:
        probe()
        return runs(platform, flow_id) >= 1

    poll(lambda: ran(), lambda ok: ok, timeout=60, interval=0.5)


def values(platform, token: str, device: str, attr: str, count: int) -> list[Any]:
    """The last ``count`` values of ``attr`` of ``device`` in history, oldest first (waits for them)."""

    def fetch() -> requests.Response:
        return api("GET", f"{platform.gateway}/history/device/{device}/history?lastN={count}&attr={attr}", token)

    r = poll(fetch, lambda r: r.status_code == 200 and len(r.json()) >= count, timeout=60, interval=0.3)
    return [p["value"] for p in sorted(r.json(), key=lambda p: p["ts"])]


@pytest.fixture(scope="module")
def admin(platform) -> str:
    return platform.token()


def test_kitchen_alarm_writes_a_virtual_device(platform, admin):
    """§10.2: a thermometer's temperature below 40 gives the virtual alarm "kitchen OK" (severity 4), 40 or more
    "kitchen on fire" (severity 1)."""
    thermometer = make_device(platform, admin, "kitchen thermometer", {"temperature": "float"})
    alarm = make_device(platform, admin, "kitchen alarm", {"message": "string", "severity": "integer"})
    fid = save_flow(platform, admin, flows.kitchen_flow(thermometer, alarm), "kitchen alarm")
    until_running(platform, fid, lambda: publish(platform, "admin", thermometer, {"temperature": 21}))

    def last_two() -> list[Any]:
        return values(platform, admin, alarm, "message", 2)

    # One at a time: the virtual device's values are stamped when the flow writes them (to the millisecond), and
    # history orders by that stamp.
    publish(platform, "admin", thermometer, {"temperature": 45})
    poll(last_two, lambda v: v[-1] == "kitchen on fire", timeout=60, interval=0.3)
    publish(platform, "admin", thermometer, {"temperature": 39})
    poll(last_two, lambda v: v == ["kitchen on fire", "kitchen OK"], timeout=60, interval=0.3)
    assert values(platform, admin, alarm, "severity", 2) == [1, 4]


def test_http_request_token_example(platform, admin):
    """§12.2.1: a device's credentials go to an HTTP token service (a real local server) and the token it answers
    lands on a virtual device."""
    server = LocalServer()
    try:
        login = make_device(platform, admin, "login device", {"username": "string", "password": "string"})
        holder = make_device(platform, admin, "token holder", {"token": "string"})
        nodes = [
            flows.tab(),
            flows.event_in("in", login, ["tpl"]),
            {
                "id": "tpl",
                "type": "template",
                "z": flows.TAB,
                "name": "request",
                "field": "req",
                "fieldType": "msg",
                "format": "handlebars",
                "syntax": "mustache",
                "output": "str",
                "x": 300,
                "y": 40,
                "wires": [["h"]],
                "template": '{"payload": {"username": "{{payload.data.attrs.username}}",'
                ' "password": "{{payload.data.attrs.password}}"}}',
            },
            {
                "id": "h",
                "type": "http",
                "z": flows.TAB,
                "name": "token service",
                "method": "POST",
                "url": server.url + "/token",
                "body": "req",
                "response": "res",
                "ret": "obj",
                "x": 450,
                "y": 40,
                "wires": [["c"]],
            },
            flows.change("c", [flows.set_rule("output.token", "res.payload.token", "msg")], ["out"]),
            flows.device_out("out", [holder]),
        ]
        fid = save_flow(platform, admin, nodes, "http token")
        until_running(platform, fid, lambda: publish(platform, "admin", login, {"username": "ana", "password": "pw"}))
        publish(platform, "admin", login, {"username": "bruno", "password": "secret"})
        poll(lambda: values(platform, admin, holder, "token", 1), lambda v: v == ["tok-bruno-6"], timeout=60)
        assert ("POST", "/token") in [(m, p) for m, p, _, _ in server.requests]
    finally:
        server.close()


def test_geofence_inside_and_outside(platform, admin):
    """§12.2.2: a car inside the marked area gives "Car is inside the marked area", at 0,0 "Car is out of the marked
    area"; a message without a position stops both branches."""
    car = make_device(platform, admin, "car", {"position": "geo:point", "speed": "float"})
    status = make_device(platform, admin, "car status", {"message": "string"})
    area = [
        {"latitude": -22.80, "longitude": -47.30},
        {"latitude": -22.80, "longitude": -47.24},
        {"latitude": -22.84, "longitude": -47.24},
        {"latitude": -22.84, "longitude": -47.30},
    ]

    def fence(node_id: str, name: str, side: str, wire: str) -> dict[str, Any]:
        return {"id": node_id, "type": "geofence", "z": flows.TAB, "name": name, "filter": side, "points": area,
                "x": 300, "y": 60, "wires": [[wire]]}  # fmt: skip

    def text(node_id: str, message: str) -> dict[str, Any]:
        return {"id": node_id, "type": "template", "z": flows.TAB, "name": "", "field": "output.message",
                "fieldType": "msg", "format": "handlebars", "syntax": "mustache", "template": message,
                "output": "str", "x": 450, "y": 60, "wires": [["out"]]}  # fmt: skip

    nodes = [
        flows.tab(),
        flows.event_in("in", car, ["inside", "outside"]),
        fence("inside", "in area", "inside", "t_in"),
        fence("outside", "out of the area", "outside", "t_out"),
        text("t_in", "Car is inside the marked area"),
        text("t_out", "Car is out of the marked area"),
        flows.device_out("out", [status]),
    ]
    fid = save_flow(platform, admin, nodes, "geofence")
    until_running(platform, fid, lambda: publish(platform, "admin", car, {"position": "0,0"}))

    def last() -> list[Any]:
        return values(platform, admin, status, "message", 1)

    poll(last, lambda v: v == ["Car is out of the marked area"], timeout=60, interval=0.3)
    publish(platform, "admin", car, {"speed": 10})  # no position: both branches stop, nothing written
    publish(platform, "admin", car, {"position": "-22.820156, -47.2682535"})
    poll(last, lambda v: v == ["Car is inside the marked area"], timeout=60, interval=0.3)
    publish(platform, "admin", car, {"position": "0,0"})
    poll(last, lambda v: v == ["Car is out of the marked area"], timeout=60, interval=0.3)
    # The message without a position wrote nothing: every value is one of the two texts, one per position sent.
    r = api("GET", f"{platform.gateway}/history/device/{status}/history?attr=message", admin)
    assert set(p["value"] for p in r.json()) == {"Car is inside the marked area", "Car is out of the marked area"}
    assert runs(platform, fid) >= 3


def test_rain_cumulative_sum_raises_notifications(platform, admin):
    """§12.2.3: 5 mm of rain a message; once the sum over the last 60 minutes passes 100 every message raises a
    notification, received live on the tenant's notifications topic through the gateway and kept by history."""
    station = make_device(platform, admin, "rain station", {"rain": "float"})
    fid = save_flow(platform, admin, flows.rain_flow(station), "rain")
    topic = "admin.dojot.notifications"

    async def run() -> list[dict[str, Any]]:
        url = f"{ws_base(platform)}/kafka-ws/v1/topics/{topic}?ticket={ticket(platform, admin)}"
        async with websockets.connect(url, open_timeout=15) as ws:
            # rain 0 until the worker runs the flow: the sum stays 0
            await asyncio.to_thread(
                until_running, platform, fid, lambda: publish(platform, "admin", station, {"rain": 0})
            )
            for _ in range(22):
                await asyncio.to_thread(publish, platform, "admin", station, {"rain": 5})
            got: list[dict[str, Any]] = []
            async with asyncio.timeout(60):
                while len(got) < 2:
                    note = json.loads(await ws.recv())
                    if note.get("metaAttrsFilter", {}).get("station") == station:
                        got.append(note)
            return got

    found = asyncio.run(run())
    assert [n["message"] for n in found] == ["Rain in the last hour: 105 mm", "Rain in the last hour: 110 mm"]
    assert found[0]["metaAttrsFilter"] == {"station": station, "rain": 105, "shouldPersist": True}
    assert found[0]["subject"] == "user_notification"

    def kept() -> requests.Response:
        return api("GET", f'{platform.gateway}/history/notifications/history?station="{station}"', admin)

    r = poll(kept, lambda r: r.status_code == 200 and len(r.json()["notifications"]) == 2, timeout=60)
    stored = r.json()["notifications"]  # newest first
    assert [n["message"] for n in stored] == ["Rain in the last hour: 110 mm", "Rain in the last hour: 105 mm"]
    assert [n["msgID"] for n in reversed(stored)] == [n["msgID"] for n in found]
    assert stored[1]["metaAttrsFilter"] == found[0]["metaAttrsFilter"] and stored[1]["ts"].endswith("Z")


def test_a_tenant_cannot_reach_another_tenants_flows_or_devices(platform, admin):
    name = "fl" + uuid.uuid4().hex[:8]
    r = api(
        "POST",
        f"{platform.gateway}/auth/tenants",
        admin,
        json={"tenant": name, "admin": {"username": f"{name}-admin", "passwd": "secret-pass-1"}},
    )
    assert r.status_code == 201, r.text
    other = platform.token(f"{name}-admin", "secret-pass-1")
    source = make_device(platform, admin, "isolated source", {"temperature": "float"})
    target = make_device(platform, admin, "isolated target", {"temp": "float"})
    fid = save_flow(platform, admin, flows.rename_flow(source, target), "mine")
    gw = f"{platform.gateway}/flows/v1/flow"

    assert fid not in [f["id"] for f in api("GET", gw, other).json()["flows"]]
    assert api("GET", f"{gw}/{fid}", other).status_code == 404
    own = [make_device(platform, other, f"b device {i}", {"temperature": "float", "temp": "float"}) for i in (1, 2)]
    valid = {"name": "taken", "enabled": True, "flow": flows.rename_flow(*own)}
    assert api("PUT", f"{gw}/{fid}", other, json=valid).status_code == 404
    assert api("DELETE", f"{gw}/{fid}", other).status_code == 404
    # Aiming a flow of its own at the other tenant's devices is refused on save (and on replace), naming the node.
    aimed = {"name": "aimed", "enabled": True, "flow": flows.rename_flow(source, target)}
    r = api("POST", gw, other, json=aimed)
    assert r.status_code == 400, r.text
    assert source in r.text or target in r.text
    mine = save_flow(platform, other, flows.rename_flow(*own), "b's own")
    assert api("PUT", f"{gw}/{mine}", other, json=aimed).status_code == 400
    assert api("GET", f"{gw}/{fid}", admin).json()["flow"]["name"] == "mine"
