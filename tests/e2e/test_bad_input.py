"""Malformed device messages over real MQTT: dropped, counted in metrics, logged with device and reason; the
agent keeps running and keeps forwarding good messages."""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.e2e.helpers import api, mosquitto_pub, poll
from tests.e2e.test_tutorial import create_device, history

pytestmark = pytest.mark.e2e

BAD = {
    "not_json": b"temperature=10",
    "not_object": b"[1, 2, 3]",
    "too_large": json.dumps({"blob": "x" * 200_000}).encode(),
    "too_deep": b'{"a": ' * 100 + b"1" + b"}" * 100,
}


def dropped(platform, reason: str) -> float:
    text = requests.get(f"http://127.0.0.1:{platform.port('mqtt_agent')}/metrics", timeout=5).text
    m = re.search(rf'mqtt_agent_messages_dropped_total{{reason="{reason}",tenant="admin"}} ([0-9.e+]+)', text)
    m = m or re.search(rf'mqtt_agent_messages_dropped_total{{tenant="admin",reason="{reason}"}} ([0-9.e+]+)', text)
    return float(m.group(1)) if m else 0.0


def agent_pid(platform) -> int:
    status = json.loads(platform.ctl("status", "--format", "json", check=False).stdout)
    return next(p["pid"] for p in status["processes"] if p["name"] == "mqtt-agent")


def test_malformed_payloads_are_dropped_counted_and_logged(platform):
    token = platform.token()
    _, device_id = create_device(platform, token, label="noisy")
    identity = f"admin:{device_id}"
    pid_before = agent_pid(platform)
    before = {reason: dropped(platform, reason) for reason in BAD}

    for payload in BAD.values():
        mosquitto_pub(platform.mqtt_port, identity, f"{identity}/attrs", payload)

    for reason in BAD:
        poll(lambda r=reason: dropped(platform, r), lambda v, r=reason: v >= before[r] + 1)

    log_lines = [json.loads(line) for line in platform.log("mqtt-agent").splitlines() if line.startswith("{")]
    logged = {(e.get("device"), e.get("reason")) for e in log_lines if e.get("msg") == "message dropped"}
    for reason in BAD:
        assert (device_id, reason) in logged, reason

    # Nothing reached history, the agent did not restart, and a good message still flows.
    r = history(platform, token, device_id, "lastN=5")
    assert r.status_code == 404 or not any(r.json().values() if isinstance(r.json(), dict) else r.json())
    mosquitto_pub(platform.mqtt_port, identity, f"{identity}/attrs", json.dumps({"temperature": 21.0}))
    r = poll(
        lambda: history(platform, token, device_id, "lastN=1&attr=temperature"),
        lambda r: r.status_code == 200 and len(r.json()) == 1,
    )
    assert r.json()[0]["value"] == 21.0
    assert agent_pid(platform) == pid_before
    assert requests.get(f"http://127.0.0.1:{platform.port('mqtt_agent')}/health/ready", timeout=5).status_code == 200


def test_unknown_devices_are_refused(platform):
    token = platform.token()
    before = dropped(platform, "unknown_device")
    mosquitto_pub(platform.mqtt_port, "admin:ffffff", "admin:ffffff/attrs", json.dumps({"temperature": 5}))
    poll(lambda: dropped(platform, "unknown_device"), lambda v: v >= before + 1)
    assert api("GET", f"{platform.gateway}/device/ffffff", token).status_code == 404
