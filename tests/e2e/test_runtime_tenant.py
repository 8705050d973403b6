"""A tenant created at run time through the gateway, by the management tenant's administrator, is usable end to
end without restarting anything: its admin logs in, creates a device, the device publishes over MQTT and the data
appears in history. Its users' permissions are enforced by the gateway; revocation and deletion take effect."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from tests.e2e.helpers import api, mosquitto_pub, poll
from tests.e2e.test_tutorial import create_device, history

pytestmark = pytest.mark.e2e


def login(platform, username: str, passwd: str, tenant: str | None = None) -> requests.Response:
    body = {"username": username, "passwd": passwd, **({"service": tenant} if tenant else {})}
    return requests.post(f"{platform.gateway}/auth", json=body, timeout=10)


def test_a_tenant_created_at_run_time_works_end_to_end(platform):
    gw = platform.gateway
    tenant = "r" + uuid.uuid4().hex[:8]
    admin = platform.token()
    r = api(
        "POST",
        f"{gw}/auth/tenants",
        admin,
        json={"tenant": tenant, "admin": {"username": "boss", "passwd": "boss-pass-123"}},
    )
    assert r.status_code == 201, r.text
    assert tenant in api("GET", f"{gw}/auth/tenants", admin).json()["tenants"]

    r = login(platform, "boss", "boss-pass-123", tenant)
    assert r.status_code == 200, r.text
    boss = r.json()["jwt"]
    _, device_id = create_device(platform, boss, label="runtime-device")
    identity = f"{tenant}:{device_id}"

    def publish_and_read():
        mosquitto_pub(platform.mqtt_port, identity, f"{identity}/attrs", json.dumps({"temperature": 21.5}))
        return history(platform, boss, device_id, "lastN=1&attr=temperature")

    # The agent and the persister learn of the tenant from its tenancy event; publish until they have.
    r = poll(publish_and_read, lambda r: r.status_code == 200 and len(r.json()) >= 1, timeout=90)
    assert r.json()[0]["value"] == 21.5

    # A plain user of the new tenant: reads pass the gateway, writes are refused there (403).
    r = api("POST", f"{gw}/auth/user", boss, json={"username": "reader", "passwd": "reader-pass-1", "profile": "user"})
    assert r.status_code == 200, r.text
    reader = login(platform, "reader", "reader-pass-1", tenant).json()["jwt"]
    assert api("GET", f"{gw}/device", reader).status_code == 200
    r = api("POST", f"{gw}/device", reader, json={"templates": [], "label": "nope"})
    assert r.status_code == 403, r.text
    assert api("GET", f"{gw}/auth/user", reader).status_code == 403

    # Revocation through the gateway's /auth/revoke.
    assert api("POST", f"{gw}/auth/revoke", reader).status_code == 200
    assert api("GET", f"{gw}/device", reader).status_code == 401

    # Deleting the tenant removes its users: their tokens and logins stop working.
    assert api("DELETE", f"{gw}/auth/tenants/{tenant}", admin).status_code == 200
    assert api("GET", f"{gw}/device", boss).status_code == 401
    assert login(platform, "boss", "boss-pass-123", tenant).status_code == 401


def test_only_the_management_administrator_manages_tenants_through_the_gateway(platform):
    gw = platform.gateway
    assert api("GET", f"{gw}/auth/tenants").status_code == 401
    tenant = "r" + uuid.uuid4().hex[:8]
    admin = platform.token()
    body = {"tenant": tenant, "admin": {"username": "chief", "passwd": "chief-pass-1"}}
    assert api("POST", f"{gw}/auth/tenants", admin, json=body).status_code == 201
    chief = login(platform, "chief", "chief-pass-1", tenant).json()["jwt"]
    assert api("GET", f"{gw}/auth/tenants", chief).status_code == 403
    assert api("POST", f"{gw}/auth/tenants", chief, json={"tenant": "rnever"}).status_code == 403
    # The internal routes are not routed by the gateway (and refuse callers without a service identity anyway).
    assert api("GET", f"{gw}/auth/admin/tenants", admin).status_code == 404
