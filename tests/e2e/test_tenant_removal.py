"""A deleted tenant is gone everywhere: deleted through the gateway and created again with the same name, it starts
with no templates, devices, device passwords, certificates, stored data or topic messages from before, and its
ids start again where a new tenant's do."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from confluent_kafka import Consumer, Producer, TopicPartition

from ondas.kafka import consumer_config, producer_config
from ondas.topics import device_data
from tests.e2e.helpers import api, mosquitto_pub, poll
from tests.e2e.test_tutorial import create_device, history

pytestmark = pytest.mark.e2e

BOSS = {"username": "boss", "passwd": "boss-pass-123"}


def make_tenant(platform, admin: str, tenant: str) -> str:
    r = api("POST", f"{platform.gateway}/auth/tenants", admin, json={"tenant": tenant, "admin": BOSS})
    assert r.status_code == 201, r.text
    r = requests.post(f"{platform.gateway}/auth", json={**BOSS, "service": tenant}, timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["jwt"])


def http_post(platform, tenant: str, device_id: str, password: str) -> requests.Response:
    return requests.post(
        f"{platform.gateway}/http-agent/v1/incoming-messages",
        json={"data": {"temperature": 30.5}},
        auth=(f"{tenant}:{device_id}", password),
        timeout=10,
    )


def first_messages(bootstrap: str, topic: str, marker: str) -> list[dict]:
    """Every message of ``topic`` from its start up to a marker produced now (so the read has an end)."""
    producer = Producer(producer_config(bootstrap))
    producer.produce(topic, json.dumps({"marker": marker}).encode())
    producer.flush(10)
    consumer = Consumer(consumer_config(bootstrap, "e2e-reader-" + uuid.uuid4().hex[:8]))
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen: list[dict] = []
    try:

        def read() -> bool:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                seen.append(json.loads(msg.value()))
            return any(m.get("marker") == marker for m in seen)

        poll(read, bool, timeout=30)
    finally:
        consumer.close()
    return seen


def test_a_deleted_tenant_created_again_starts_empty(platform):
    gw = platform.gateway
    admin = platform.token()
    tenant = "z" + uuid.uuid4().hex[:8]
    boss = make_tenant(platform, admin, tenant)

    # The tenant in use: a template and a device with data, a device password and a device certificate.
    template, device_id = create_device(platform, boss, label="old-device")
    identity = f"{tenant}:{device_id}"

    def publish_and_read():
        mosquitto_pub(platform.mqtt_port, identity, f"{identity}/attrs", json.dumps({"temperature": 20.5}))
        return history(platform, boss, device_id, "lastN=1&attr=temperature")

    r = poll(publish_and_read, lambda r: r.status_code == 200 and len(r.json()) >= 1, timeout=90)
    assert r.json()[0]["value"] == 20.5
    r = api("POST", f"{gw}/basic-auth/v1/devices/{device_id}/basic-credentials", boss)
    assert r.status_code in (200, 201), r.text
    password = r.json()["password"]
    assert poll(lambda: http_post(platform, tenant, device_id, password), lambda r: r.status_code == 204).ok
    platform.ctl("device-cert", tenant, device_id, "--out", str(platform.data_dir / "e2e-cert" / tenant))
    bootstrap = platform.status["kafka_bootstrap"]
    assert any(
        m.get("metadata", {}).get("deviceid") == device_id for m in first_messages(bootstrap, device_data(tenant), "a")
    )

    # Deleted, then created again with the same name and the same administrator.
    assert api("DELETE", f"{gw}/auth/tenants/{tenant}", admin).status_code == 200
    boss = make_tenant(platform, admin, tenant)

    # No templates or devices (the device manager purges the tenant; wait for its tenancy consumer).
    def listings():
        return (api("GET", f"{gw}/template", boss).json(), api("GET", f"{gw}/device", boss).json())

    templates, devices = poll(listings, lambda ls: not ls[0]["templates"] and not ls[1]["devices"], timeout=60)
    assert templates["templates"] == [] and devices["devices"] == []
    # Ids start again as for any new tenant.
    new_template, new_device = create_device(platform, boss, label="new-device")
    assert new_template["id"] == template["id"]
    assert new_device != device_id

    # No stored data of the old device (history knows no such device) ...
    r = poll(lambda: history(platform, boss, device_id, "lastN=1&attr=temperature"), lambda r: r.status_code == 404)
    assert r.json()["title"] == "Device not found", r.text
    # ... no device password (the HTTP agent refuses it) ...
    r = poll(lambda: http_post(platform, tenant, device_id, password), lambda r: r.status_code == 401, timeout=60)
    assert r.status_code == 401, r.text

    # ... every certificate of the old tenant's devices revoked ...
    def certificates():
        records = json.loads((platform.data_dir / "pki" / "issued.json").read_text())["certificates"]
        return [c for c in records if c["cn"] == identity]

    assert poll(certificates, lambda cs: cs and all(c.get("revoked") for c in cs), timeout=60)
    # ... and the tenant's device-data topic holds nothing from before: the marker is its first message.
    seen = first_messages(bootstrap, device_data(tenant), "b")
    assert [m.get("marker") for m in seen] == ["b"], seen

    # The new tenant works end to end.
    new_identity = f"{tenant}:{new_device}"

    def publish_new():
        mosquitto_pub(platform.mqtt_port, new_identity, f"{new_identity}/attrs", json.dumps({"temperature": 7.5}))
        return history(platform, boss, new_device, "lastN=1&attr=temperature")

    r = poll(publish_new, lambda r: r.status_code == 200 and len(r.json()) >= 1, timeout=90)
    assert r.json()[0]["value"] == 7.5


def test_every_process_is_healthy_after_a_tenant_removal(platform):
    """The purges leave every service ready (a purge that failed for good would hold its service unready)."""
    status = poll(
        lambda: platform.ctl("status", "--format", "json", check=False),
        lambda r: r.returncode == 0,
        timeout=60,
    )
    assert all(p["healthy"] for p in json.loads(status.stdout)["processes"]), status.stdout
