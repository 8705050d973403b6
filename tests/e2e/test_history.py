"""History through the gateway: dojot's data-broker route for latest values, CSV, actuation history, and
tenant isolation of every read."""

from __future__ import annotations

import json

import pytest

from tests.e2e.helpers import api, mosquitto_pub, poll
from tests.e2e.test_isolation import tenant_b  # noqa: F401 (a fixture shared with the isolation tests)
from tests.e2e.test_tutorial import create_device, history

pytestmark = pytest.mark.e2e


def latest(platform, token, device_id, query=""):
    return api("GET", f"{platform.gateway}/device/{device_id}/latest{query}", token)


@pytest.fixture(scope="module")
def reporting_device(platform):
    """An admin device that reported temperature 10.5 then 11.5 and was sent fan=55."""
    token = platform.token()
    _, device_id = create_device(platform, token, label="reporting")
    identity = f"admin:{device_id}"
    for value in (10.5, 11.5):
        mosquitto_pub(platform.mqtt_port, identity, f"{identity}/attrs", json.dumps({"temperature": value}))
    poll(
        lambda: history(platform, token, device_id, "lastN=2&attr=temperature"),
        lambda r: r.status_code == 200 and len(r.json()) == 2,
    )
    r = api("PUT", f"{platform.gateway}/device/{device_id}/actuate", token, json={"attrs": {"fan": 55}})
    assert r.status_code == 200, r.text
    return token, device_id


def test_latest_route_is_served_by_history_not_the_device_manager(platform, reporting_device):
    token, device_id = reporting_device
    r = latest(platform, token, device_id)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["temperature"]["value"] == 11.5
    assert body["temperature"]["device_id"] == device_id
    assert "fan" not in body  # what was sent to the device is history, not the device's state
    # The device manager still owns the device itself.
    assert api("GET", f"{platform.gateway}/device/{device_id}", token).json()["id"] == device_id


def test_actuations_appear_in_history(platform, reporting_device):
    token, device_id = reporting_device
    r = poll(
        lambda: history(platform, token, device_id, "lastN=1&attr=fan"),
        lambda r: r.status_code == 200 and len(r.json()) == 1,
    )
    assert r.json()[0]["value"] == 55
    assert r.json()[0]["metadata"] == {"event": "configure"}


def test_csv_through_the_gateway(platform, reporting_device):
    token, device_id = reporting_device
    url = f"{platform.gateway}/history/device/{device_id}/history?lastN=2&attr=temperature"
    r = api("GET", url, token, headers={"Accept": "text/csv"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0].startswith('"attr","value","device_id","ts"')
    assert [line.split(",")[1] for line in lines[1:]] == ["11.5", "10.5"]


def test_another_tenant_cannot_read_history_or_latest_values(platform, reporting_device, tenant_b):  # noqa: F811
    _, device_id = reporting_device
    _, b_token = tenant_b
    assert latest(platform, b_token, device_id).status_code == 404
    assert history(platform, b_token, device_id, "lastN=5").status_code == 404
    r = history(platform, b_token, device_id, "lastN=5&attr=temperature&shape=consistent")
    assert (r.status_code, r.json()["title"]) == (404, "Device not found")  # unknown in tenant b, in every shape
    r = api("GET", f"{platform.gateway}/history/device/{device_id}/history", b_token, headers={"Accept": "text/csv"})
    assert r.status_code == 404
    assert "11.5" not in r.text


def test_latest_needs_a_token(platform, reporting_device):
    _, device_id = reporting_device
    r = latest(platform, None, device_id)
    assert r.status_code == 401
