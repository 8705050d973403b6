"""x509_mgmt wired into the running platform: dojot's certreq flow as a user runs it (``ondasctl certreq``
against the gateway), the certificate used over MQTT (mutual TLS) and HTTPS (the HTTP agent's TLS listener), its
revocation through the API honoured by both (new connections refused, the live MQTT session ended), and tenant
isolation of certificates."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.helpers import api, poll
from tests.e2e.test_tutorial import create_device, history

pytestmark = pytest.mark.e2e


def certreq(platform, cwd: Path, device_id: str, user: str = "admin", password: str = "admin"):
    gw = urlsplit(platform.gateway)
    args = ["-h", str(gw.hostname), "-p", str(gw.port), "-i", device_id, "-u", user, "-s", password]
    return subprocess.run(
        [sys.executable, "-m", "ondasctl", "certreq", *args],
        cwd=cwd,
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


class Files:
    def __init__(self, root: Path, device_id: str) -> None:
        self.ca = root / "ca" / "ca.pem"
        self.cert = root / f"cert_{device_id}" / "cert.pem"
        self.key = root / f"cert_{device_id}" / "private.key"

    def tls_args(self) -> list[str]:
        return ["--cafile", str(self.ca), "--cert", str(self.cert), "--key", str(self.key)]

    def fingerprint(self) -> str:
        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def mqtts_pub(platform, files: Files, identity: str, message: str) -> subprocess.CompletedProcess[str]:
    port = str(platform.status["mqtts_port"])
    target = ["-t", f"{identity}/attrs", "-m", message, "-q", "1"]
    return subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", port, *files.tls_args(), *target],
        capture_output=True,
        text=True,
        timeout=15,
    )


def https_post(platform, files: Files, value: float) -> requests.Response:
    url = f"https://127.0.0.1:{platform.port('http_agent_tls')}/http-agent/v1/incoming-messages"
    return requests.post(
        url,
        json={"data": {"temperature": value}},
        verify=str(files.ca),  # certreq's ca/ca.pem verifies the listener: x509_mgmt signed its certificate
        cert=(str(files.cert), str(files.key)),
        timeout=15,
    )


@pytest.fixture(scope="module")
def tenant_b(platform):
    name = "x" + uuid.uuid4().hex[:8]
    r = api(
        "POST",
        f"{platform.gateway}/auth/tenants",
        platform.token(),
        json={"tenant": name, "admin": {"username": f"{name}-admin", "passwd": "secret-pass-1"}},
    )
    assert r.status_code == 201, r.text
    return name, platform.token(f"{name}-admin", "secret-pass-1")


def test_certreq_then_mqtt_and_https_then_revocation_through_the_api(platform, tmp_path, tenant_b):
    token = platform.token()
    _, device_id = create_device(platform, token, "x509 thermometer")
    identity = f"admin:{device_id}"

    # dojot's certreq flow, as a subprocess in an empty directory: ca/ca.pem and cert_<id>/{cert.pem,private.key}.
    run = certreq(platform, tmp_path, device_id)
    assert run.returncode == 0, run.stdout + run.stderr
    files = Files(tmp_path, device_id)
    assert files.ca.is_file() and files.cert.is_file() and files.key.is_file(), run.stdout
    assert files.key.stat().st_mode & 0o077 == 0
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == identity
    fp = files.fingerprint()

    # MQTT over mutual TLS: the point reaches history.
    pub = mqtts_pub(platform, files, identity, '{"temperature": 31.5}')
    assert pub.returncode == 0, pub.stderr
    poll(
        lambda: history(platform, token, device_id, "lastN=1&attr=temperature"),
        lambda r: r.status_code == 200 and r.json() != [] and r.json()[0]["value"] == 31.5,
    )
    # HTTPS to the HTTP agent's TLS listener with the same certificate.
    assert https_post(platform, files, 32.5).status_code == 204
    poll(
        lambda: history(platform, token, device_id, "lastN=1&attr=temperature"),
        lambda r: r.status_code == 200 and r.json() != [] and r.json()[0]["value"] == 32.5,
    )

    # Isolation: another tenant's administrator can neither read this certificate nor get one for this device.
    _, token_b = tenant_b
    r = api("GET", f"{platform.gateway}/x509/v1/certificates/{fp}", token_b)
    assert r.status_code in (403, 404), r.text
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    r = api("POST", f"{platform.gateway}/x509/v1/certificates", token_b, json={"csr": csr})
    assert r.status_code == 400, r.text
    csr_cn = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    r = api("POST", f"{platform.gateway}/x509/v1/certificates", token_b, json={"csr": csr_cn})
    assert r.status_code == 400, r.text
    # The owner reads it through the gateway.
    r = api("GET", f"{platform.gateway}/x509/v1/certificates/{fp}", token)
    assert r.status_code == 200, r.text
    assert r.json()["belongsTo"] == {"device": device_id}

    # A live MQTT session with the certificate (subscribed: mosquitto_sub -E returns once it is).
    sub_args = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(platform.status["mqtts_port"]), *files.tls_args()]
    sub_args += ["-t", f"{identity}/config", "-q", "1", "-i", f"live-{device_id}"]
    ready = subprocess.run([*sub_args, "-c", "-E"], capture_output=True, text=True, timeout=15)
    assert ready.returncode == 0, ready.stderr
    live = subprocess.Popen([*sub_args, "-c"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Revocation through the API (through the gateway).
        r = api("DELETE", f"{platform.gateway}/x509/v1/certificates/{fp}", token)
        assert r.status_code == 204, r.text
        # The live session ends (the MQTT agent reloaded the CRL, then ended the identity's sessions) ...
        poll(lambda: live.poll(), lambda code: code is not None, timeout=10)
        # ... and a new connection with the certificate is refused.
        refused = poll(
            lambda: mqtts_pub(platform, files, identity, '{"temperature": 1}'),
            lambda p: p.returncode != 0,
            timeout=10,
        )
        assert refused.returncode != 0
        # The HTTP agent re-reads the combined CRL: 401.
        r = poll(lambda: https_post(platform, files, 2.0), lambda r: r.status_code != 204, timeout=10)
        assert r.status_code == 401, r.text
    finally:
        if live.poll() is None:
            live.terminate()
        live.communicate(timeout=10)
    assert api("GET", f"{platform.gateway}/x509/v1/certificates/{fp}", token).status_code == 404


def test_the_gateway_routes_the_ca_and_its_crl_to_a_tenants_admin(platform, tenant_b):
    token = platform.token()
    ca = api("GET", f"{platform.gateway}/x509/v1/ca", token)
    assert ca.status_code == 200, ca.text
    assert ca.json()["caPem"].count("BEGIN CERTIFICATE") == 2  # the issuing CA, then the root
    crl = api("GET", f"{platform.gateway}/x509/v1/ca/crl", token)
    assert crl.status_code == 200 and crl.json()["crl"].startswith("-----BEGIN X509 CRL-----"), crl.text
    # Without a token the gateway's PDP refuses; another tenant's admin sees its own (empty) list.
    assert requests.get(f"{platform.gateway}/x509/v1/certificates", timeout=10).status_code == 401
    _, token_b = tenant_b
    r = api("GET", f"{platform.gateway}/x509/v1/certificates", token_b)
    assert r.status_code == 200 and r.json()["certificates"] == [], r.text


def test_removing_a_device_revokes_its_certificate_and_ends_its_session(platform, tmp_path):
    token = platform.token()
    _, device_id = create_device(platform, token, "x509 removed")
    identity = f"admin:{device_id}"
    run = certreq(platform, tmp_path, device_id)
    assert run.returncode == 0, run.stdout + run.stderr
    files = Files(tmp_path, device_id)
    fp = files.fingerprint()
    assert mqtts_pub(platform, files, identity, '{"temperature": 5}').returncode == 0
    sub_args = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(platform.status["mqtts_port"]), *files.tls_args()]
    sub_args += ["-t", f"{identity}/config", "-q", "1", "-i", f"live-{device_id}"]
    ready = subprocess.run([*sub_args, "-c", "-E"], capture_output=True, text=True, timeout=15)
    assert ready.returncode == 0, ready.stderr
    live = subprocess.Popen([*sub_args, "-c"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert api("DELETE", f"{platform.gateway}/device/{device_id}", token).status_code == 200
        # x509_mgmt's worker revokes the device's certificates (certificate.revoked), the MQTT agent reloads the
        # CRL and ends the session.
        poll(lambda: live.poll(), lambda code: code is not None, timeout=10)
        refused = poll(
            lambda: mqtts_pub(platform, files, identity, '{"temperature": 6}'), lambda p: p.returncode != 0, timeout=10
        )
        assert refused.returncode != 0
        r = poll(lambda: https_post(platform, files, 7.0), lambda r: r.status_code != 204, timeout=10)
        assert r.status_code in (401, 404), r.text  # revoked, or no such device any more
    finally:
        if live.poll() is None:
            live.terminate()
        live.communicate(timeout=10)
    # The record went with the revocation (as a DELETE does).
    poll(lambda: api("GET", f"{platform.gateway}/x509/v1/certificates/{fp}", token), lambda r: r.status_code == 404)
