"""Isolation boundaries through the real gateway and broker: devices are bound to their own topics, tenants to
their own data, and the gateway refuses requests without a valid token."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.helpers import Subscriber, api, mosquitto_pub, poll
from tests.e2e.test_tutorial import create_device, history

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tenant_b(platform):
    """A second tenant, created at run time (no service restarts), with its own admin."""
    name = "b" + uuid.uuid4().hex[:8]
    r = api(
        "POST",
        f"{platform.gateway}/auth/tenants",
        platform.token(),
        json={"tenant": name, "admin": {"username": f"{name}-admin", "passwd": "secret-pass-1"}},
    )
    assert r.status_code == 201, r.text
    return name, platform.token(f"{name}-admin", "secret-pass-1")


def test_a_new_tenant_works_end_to_end_without_restarts(platform, tenant_b):
    name, token = tenant_b
    _, device_id = create_device(platform, token, label="b-device")
    identity = f"{name}:{device_id}"

    def publish_and_read():
        mosquitto_pub(platform.mqtt_port, identity, f"{identity}/attrs", json.dumps({"temperature": 1.5}))
        return history(platform, token, device_id, "lastN=1&attr=temperature")

    # The agent and persister learn the tenant from its tenancy event; retry publishing until they have.
    r = poll(publish_and_read, lambda r: r.status_code == 200 and len(r.json()) >= 1, timeout=60)
    assert r.json()[0]["value"] == 1.5


def test_a_token_of_one_tenant_cannot_reach_another_tenants_device_or_history(platform, tenant_b):
    admin_token = platform.token()
    _, admin_device = create_device(platform, admin_token, label="private")
    identity = f"admin:{admin_device}"
    mosquitto_pub(platform.mqtt_port, identity, f"{identity}/attrs", json.dumps({"temperature": 99.0}))
    poll(
        lambda: history(platform, admin_token, admin_device, "lastN=1&attr=temperature"),
        lambda r: r.status_code == 200 and len(r.json()) == 1,
    )

    _, b_token = tenant_b
    assert api("GET", f"{platform.gateway}/device/{admin_device}", b_token).status_code == 404
    listed = api("GET", f"{platform.gateway}/device", b_token).json()["devices"]
    assert admin_device not in {d["id"] for d in listed}
    r = api("PUT", f"{platform.gateway}/device/{admin_device}/actuate", b_token, json={"attrs": {"fan": 1}})
    assert r.status_code == 404
    r = history(platform, b_token, admin_device, "lastN=1&attr=temperature")
    assert r.status_code in (200, 404)
    assert "99.0" not in r.text and (r.status_code == 404 or r.json() == [])


def test_a_device_cannot_publish_on_another_devices_topic(platform):
    token = platform.token()
    _, victim = create_device(platform, token, label="victim")
    _, intruder = create_device(platform, token, label="intruder")
    # The intruder writes on the victim's topic, then on its own: its own message proves delivery happened.
    mosquitto_pub(platform.mqtt_port, f"admin:{intruder}", f"admin:{victim}/attrs", json.dumps({"temperature": -1}))
    mosquitto_pub(platform.mqtt_port, f"admin:{intruder}", f"admin:{intruder}/attrs", json.dumps({"temperature": 2}))
    poll(
        lambda: history(platform, token, intruder, "lastN=1&attr=temperature"),
        lambda r: r.status_code == 200 and len(r.json()) == 1,
    )
    r = history(platform, token, victim, "lastN=5&attr=temperature")
    assert r.status_code in (200, 404)
    assert r.status_code == 404 or r.json() == []


def test_a_device_cannot_receive_another_devices_config(platform):
    token = platform.token()
    _, target = create_device(platform, token, label="target")
    _, spy = create_device(platform, token, label="spy")
    own = Subscriber(platform.mqtt_port, f"admin:{target}", f"admin:{target}/config")
    spying = Subscriber(platform.mqtt_port, f"admin:{spy}", f"admin:{target}/config")
    try:

        def actuate():
            api("PUT", f"{platform.gateway}/device/{target}/actuate", token, json={"attrs": {"fan": 7}})
            return own.lines()

        poll(actuate, bool, timeout=30)
        # The spy subscribed before the target did, so anything delivered to it would have arrived by now.
        assert spying.lines() == []
    finally:
        own.close()
        spying.close()


def _forged_tokens():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"service": "admin", "username": "admin", "iat": now, "exp": now + 600}
    wrong_key = jwt.encode(claims, key, algorithm="RS256")
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "wrong-key": wrong_key,
        "alg-none": f"{header}.{body}.",
        "garbage": "not.a.token",
        "hs256-with-public-key": jwt.encode(claims, pem.decode()[:60], algorithm="HS256"),
    }


@pytest.mark.parametrize("path", ["/device", "/template", "/history/device/x/history?lastN=1"])
def test_the_gateway_refuses_requests_without_a_valid_token(platform, path):
    url = platform.gateway + path
    r = requests.get(url, timeout=10)
    assert r.status_code == 401
    assert r.json()["error"] == "unauthenticated"
    for name, token in _forged_tokens().items():
        r = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 401, name
    # Signed with the platform's own key: only the expiry is wrong.
    private = (platform.data_dir / "keys" / "jwt-private.pem").read_text()
    now = int(time.time())
    expired = jwt.encode(
        {"service": "admin", "username": "admin", "iat": now - 120, "exp": now - 60}, private, algorithm="RS256"
    )
    assert requests.get(url, headers={"Authorization": f"Bearer {expired}"}, timeout=10).status_code == 401
    valid = platform.token()
    assert requests.get(url, headers={"Authorization": f"Bearer {valid}"}, timeout=10).status_code != 401


def test_public_login_route_needs_no_token_and_refuses_wrong_passwords(platform):
    r = requests.post(f"{platform.gateway}/auth", json={"username": "admin", "passwd": "wrong"}, timeout=10)
    assert r.status_code == 401
    r = requests.post(f"{platform.gateway}/auth", data="nope", timeout=10)
    assert r.status_code == 400
