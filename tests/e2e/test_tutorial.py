"""dojot's tutorial (seed 004 §11), verbatim apart from host and port, through the gateway with real MQTT clients."""

from __future__ import annotations

import json

import pytest
import requests

from tests.e2e.helpers import Subscriber, api, mosquitto_pub, poll

pytestmark = pytest.mark.e2e

TEMPLATE = {
    "label": "Thermometer Template",
    "attrs": [
        {"label": "temperature", "type": "dynamic", "value_type": "float"},
        {"label": "fan", "type": "actuator", "value_type": "float"},
    ],
}


def create_device(platform, token, label="device"):
    r = api("POST", f"{platform.gateway}/template", token, json=TEMPLATE)
    assert r.status_code == 200, r.text
    template = r.json()["template"]
    assert template["label"] == "Thermometer Template"
    assert {a["label"] for a in template["attrs"]} == {"temperature", "fan"}
    r = api("POST", f"{platform.gateway}/device", token, json={"templates": [str(template["id"])], "label": label})
    assert r.status_code == 200, r.text
    device_id = r.json()["devices"][0]["id"]
    return template, device_id


def history(platform, token, device_id, query="lastN=3&attr=temperature"):
    return api("GET", f"{platform.gateway}/history/device/{device_id}/history?{query}", token)


def test_status_reports_every_process_healthy(platform):
    status = platform.status
    for key in ("gateway_url", "mqtt_host", "mqtt_port", "mqtts_port", "kafka_bootstrap", "admin_user"):
        assert status[key], key
    names = {p["name"] for p in status["processes"]}
    assert {
        "kafka",
        "postgres",
        "redis",
        "mongo",
        "mosquitto",
        "auth",
        "device-manager",
        "persister",
        "history",
        "mqtt-agent",
        "http-agent",
        "http-agent-tls",
        "gateway",
    } <= names
    assert status["healthy"], [p for p in status["processes"] if not p["healthy"]]


def test_up_twice_is_harmless(platform):
    again = platform.ctl("up")
    assert "already running" in again.stdout
    import json as _json

    assert (
        _json.loads(platform.ctl("status", "--format", "json").stdout)["supervisor_pid"]
        == platform.status["supervisor_pid"]
    )


def test_the_dojot_tutorial_end_to_end(platform):
    token = platform.token()  # POST /auth {"username": "admin", "passwd": "admin"}
    template, device_id = create_device(platform, token)

    r = api("GET", f"{platform.gateway}/device", token)
    assert r.status_code == 200
    listed = {d["id"]: d for d in r.json()["devices"]}
    assert device_id in listed
    attrs = listed[device_id]["attrs"][str(template["id"])]
    assert {a["label"]: a["type"] for a in attrs} == {"temperature": "dynamic", "fan": "actuator"}
    assert set(r.json()["pagination"]) >= {"page", "total", "has_next", "next_page"}

    identity = f"admin:{device_id}"
    for value in (36.5, 15.6, 10.6):
        mosquitto_pub(platform.mqtt_port, identity, f"{identity}/attrs", json.dumps({"temperature": value}))

    r = poll(lambda: history(platform, token, device_id), lambda r: r.status_code == 200 and len(r.json()) == 3)
    items = r.json()
    assert [i["value"] for i in items] == [10.6, 15.6, 36.5], items  # newest first
    assert all(set(i) == {"device_id", "ts", "value", "attr"} for i in items)
    assert all(i["device_id"] == device_id and i["attr"] == "temperature" for i in items)
    assert items[0]["ts"] >= items[1]["ts"] >= items[2]["ts"]

    sub = Subscriber(platform.mqtt_port, identity, f"{identity}/config")
    try:

        def actuate_and_look():
            r = api("PUT", f"{platform.gateway}/device/{device_id}/actuate", token, json={"attrs": {"fan": 100}})
            assert r.status_code == 200, r.text
            return poll(sub.lines, bool, timeout=3) if not sub.lines() else sub.lines()

        lines = poll(lambda: _try(actuate_and_look), bool, timeout=30)
    finally:
        sub.close()
    topic, _, payload = lines[0].partition(" ")
    assert topic == f"{identity}/config"
    assert json.loads(payload) == {"fan": 100}


def test_a_device_certificate_sends_over_the_http_agents_tls_listener(platform, tmp_path):
    """The platform CA's certificate (``ondasctl device-cert``) opens the HTTP agent's TLS listener, the data
    reaches history, and once the device is removed the certificate no longer gets anything in."""
    token = platform.token()
    _, device_id = create_device(platform, token, "https thermometer")
    out = tmp_path / "cert"
    platform.ctl("device-cert", "admin", device_id, "--out", str(out))
    url = f"https://127.0.0.1:{platform.port('http_agent_tls')}/http-agent/v1/incoming-messages"
    tls = {"verify": str(platform.data_dir / "pki" / "ca.pem"), "cert": (str(out / "cert.pem"), str(out / "key.pem"))}

    def send(value: float) -> requests.Response:
        return requests.post(url, json={"data": {"temperature": value}}, timeout=15, **tls)

    # The agent may learn of the new device from its event or by asking the device manager: 204 either way.
    assert send(21.5).status_code == 204
    r = poll(lambda: history(platform, token, device_id), lambda r: r.status_code == 200 and len(r.json()) == 1)
    assert r.json()[0]["value"] == 21.5

    assert api("DELETE", f"{platform.gateway}/device/{device_id}", token).status_code == 200
    refused = poll(lambda: send(1.0), lambda r: r.status_code != 204)
    assert refused.status_code in (401, 404), refused.text  # revoked, or no such device any more


def _try(fn):
    try:
        return fn()
    except AssertionError:
        return []
