"""A tenant's own CA (x509_mgmt's /trusted-cas) honoured by the MQTT broker and the HTTP agent's TLS listener: a
factory certificate it signed, registered by that tenant for one of its devices, connects as that device (MQTT
over mutual TLS, HTTPS) and its data reaches history; the same CA cannot give a certificate to another tenant's
device (neither registered nor forged into the CN); revoking the registration or deleting the CA refuses new
connections and ends the live session."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from cryptography import x509

from tests.e2e.helpers import api, poll
from tests.e2e.test_tutorial import create_device, history
from tests.e2e.test_x509 import tenant_b  # noqa: F401  (fixture)
from tests.unit.x509_mgmt import pki

pytestmark = pytest.mark.e2e


class FactoryCa:
    """A tenant's own root CA, as a device maker's factory line would have it."""

    def __init__(self, name: str) -> None:
        self.cert, self.key = pki.ca_cert(name, days=30)

    def pem(self) -> str:
        return pki.pem(self.cert)

    def issue(self, directory: Path, cn: str) -> DeviceCert:
        cert, key = pki.leaf_cert(cn, self.cert, self.key, days=10)
        return DeviceCert(directory, cert, key)


class DeviceCert:
    def __init__(self, directory: Path, cert: x509.Certificate, key: pki.Key) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.cert_pem = pki.pem(cert)
        self.cert_file = directory / "cert.pem"
        self.key_file = directory / "private.key"
        self.cert_file.write_text(self.cert_pem)
        self.key_file.write_bytes(pki.key_pem(key))
        self.fingerprint = pki.fingerprint(cert)


def broker_ca(platform, token: str, directory: Path) -> Path:
    """The platform CA chain (GET /ca): it verifies the broker's server certificate."""
    r = api("GET", f"{platform.gateway}/x509/v1/ca", token)
    assert r.status_code == 200, r.text
    path = directory / "platform-ca.pem"
    path.write_text(r.json()["caPem"])
    return path


def tls_args(ca: Path, device: DeviceCert) -> list[str]:
    return ["--cafile", str(ca), "--cert", str(device.cert_file), "--key", str(device.key_file)]


def publish(platform, ca: Path, device: DeviceCert, identity: str, message: str) -> subprocess.CompletedProcess[str]:
    port = str(platform.status["mqtts_port"])
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", port, *tls_args(ca, device)]
    return subprocess.run(
        [*args, "-t", f"{identity}/attrs", "-m", message, "-q", "1"], capture_output=True, text=True, timeout=15
    )


def https_post(platform, ca: Path, device: DeviceCert, value: float) -> requests.Response:
    url = f"https://127.0.0.1:{platform.port('http_agent_tls')}/http-agent/v1/incoming-messages"
    return requests.post(
        url,
        json={"data": {"temperature": value}},
        verify=str(ca),
        cert=(str(device.cert_file), str(device.key_file)),
        timeout=15,
    )


def https_verdict(platform, ca: Path, device: DeviceCert, value: float) -> str:
    try:
        return str(https_post(platform, ca, device, value).status_code)
    except requests.exceptions.SSLError:
        return "tls refused"


def register_ca(platform, token: str, ca: FactoryCa) -> str:
    r = api("POST", f"{platform.gateway}/x509/v1/trusted-cas", token, json={"caPem": ca.pem()})
    assert r.status_code == 201, r.text
    return str(r.json()["caFingerprint"])


def register_cert(platform, token: str, device: DeviceCert, device_id: str):
    body = {"certificateChain": device.cert_pem, "belongsTo": {"device": device_id}}
    return api("POST", f"{platform.gateway}/x509/v1/certificates", token, json=body)


def live_session(platform, ca: Path, device: DeviceCert, identity: str) -> subprocess.Popen[str]:
    args = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(platform.status["mqtts_port"]), *tls_args(ca, device)]
    args += ["-t", f"{identity}/config", "-q", "1", "-i", f"live-{uuid.uuid4().hex[:8]}"]
    ready = subprocess.run([*args, "-c", "-E"], capture_output=True, text=True, timeout=15)
    assert ready.returncode == 0, ready.stderr
    return subprocess.Popen([*args, "-c"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
    proc.communicate(timeout=10)


def test_a_tenants_ca_works_for_its_own_devices_only(platform, tmp_path, tenant_b):  # noqa: F811
    token = platform.token()
    tenant_b_name, token_b = tenant_b
    ca_file = broker_ca(platform, token, tmp_path)
    factory = FactoryCa(f"factory-{uuid.uuid4().hex[:6]}")
    _, device_id = create_device(platform, token, "factory thermometer")
    identity = f"admin:{device_id}"
    _, device_b = create_device(platform, token_b, "tenant b thermometer")

    # Before the CA is registered, its certificates do not connect.
    sensor = factory.issue(tmp_path / "sensor", "SN-0001")
    assert publish(platform, ca_file, sensor, identity, '{"temperature": 1}').returncode != 0
    register_ca(platform, token, factory)
    r = register_cert(platform, token, sensor, device_id)
    assert r.status_code == 201, r.text
    assert r.json()["certificateFingerprint"] == sensor.fingerprint

    # The factory certificate connects as the device it was registered to; the point reaches history.
    poll(
        lambda: publish(platform, ca_file, sensor, identity, '{"temperature": 21.5}'),
        lambda p: p.returncode == 0,
        timeout=10,
    )
    poll(
        lambda: history(platform, token, device_id, "lastN=1&attr=temperature"),
        lambda r: r.status_code == 200 and r.json() != [] and r.json()[0]["value"] == 21.5,
    )
    # The same over HTTPS to the HTTP agent's TLS listener.
    r = poll(lambda: https_post(platform, ca_file, sensor, 22.5), lambda r: r.status_code == 204, timeout=10)
    assert r.status_code == 204, r.text
    poll(
        lambda: history(platform, token, device_id, "lastN=1&attr=temperature"),
        lambda r: r.status_code == 200 and r.json() != [] and r.json()[0]["value"] == 22.5,
    )

    # Tenant A's CA cannot serve tenant B's devices: A cannot register a certificate for B's device, and a
    # certificate whose CN names B's device (unregistered) is refused at connect.
    forged = factory.issue(tmp_path / "forged", f"{tenant_b_name}:{device_b}")
    r = register_cert(platform, token, forged, device_b)
    assert r.status_code == 400, r.text
    refused = publish(platform, ca_file, forged, f"{tenant_b_name}:{device_b}", '{"temperature": 66}')
    assert refused.returncode != 0, refused.stdout
    r = https_post(platform, ca_file, forged, 67.0)
    assert r.status_code == 401 and "not registered" in r.text, r.text
    # Nor can tenant B register A's factory certificate for its own device (B does not trust A's CA).
    assert register_cert(platform, token_b, factory.issue(tmp_path / "b", "SN-B"), device_b).status_code == 400
    r = history(platform, token_b, device_b, "lastN=1&attr=temperature")
    assert r.status_code == 404 or r.json() == [], r.text

    # Revoking the registration refuses the certificate and ends its live session.
    live = live_session(platform, ca_file, sensor, identity)
    try:
        assert api("DELETE", f"{platform.gateway}/x509/v1/certificates/{sensor.fingerprint}", token).status_code == 204
        poll(lambda: live.poll(), lambda code: code is not None, timeout=10)
        poll(
            lambda: publish(platform, ca_file, sensor, identity, '{"temperature": 2}'),
            lambda p: p.returncode != 0,
            timeout=10,
        )
        r = poll(lambda: https_post(platform, ca_file, sensor, 2.0), lambda r: r.status_code != 204, timeout=10)
        assert r.status_code == 401, r.text
    finally:
        stop(live)


def test_deleting_a_trusted_ca_refuses_its_certificates(platform, tmp_path):
    token = platform.token()
    ca_file = broker_ca(platform, token, tmp_path)
    factory = FactoryCa(f"factory-{uuid.uuid4().hex[:6]}")
    _, device_id = create_device(platform, token, "factory meter")
    identity = f"admin:{device_id}"
    ca_fp = register_ca(platform, token, factory)
    meter = factory.issue(tmp_path / "meter", "SN-0002")
    assert register_cert(platform, token, meter, device_id).status_code == 201
    poll(
        lambda: publish(platform, ca_file, meter, identity, '{"temperature": 3}'),
        lambda p: p.returncode == 0,
        timeout=10,
    )
    live = live_session(platform, ca_file, meter, identity)
    try:
        r = api("DELETE", f"{platform.gateway}/x509/v1/trusted-cas/{ca_fp}", token)
        assert r.status_code == 204, r.text
        # The CA's certificates went with it (each announced as revoked): the session ends, reconnects fail.
        poll(lambda: live.poll(), lambda code: code is not None, timeout=10)
        poll(
            lambda: publish(platform, ca_file, meter, identity, '{"temperature": 4}'),
            lambda p: p.returncode != 0,
            timeout=10,
        )
        # Refused by the TLS handshake (the CA left the listener's CA directory) or, if OpenSSL still holds the CA
        # it loaded, by the agent (not in the trust file any more): 401.
        verdict = poll(lambda: https_verdict(platform, ca_file, meter, 4.0), lambda v: v != "204", timeout=10)
        assert verdict in ("401", "tls refused"), verdict
    finally:
        stop(live)
    r = api("GET", f"{platform.gateway}/x509/v1/certificates/{meter.fingerprint}", token)
    assert r.status_code == 404, r.text
