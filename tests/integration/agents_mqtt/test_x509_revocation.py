"""x509_mgmt's certificates on the real Mosquitto of ``make up``'s generated config, with the real MQTT agent.

The mutual-TLS listener trusts two CAs (x509_mgmt's root and issuing CA, and the on-disk platform CA) and reads
one CRL file holding both CAs' CRLs; OpenSSL (``X509_V_FLAG_CRL_CHECK``) refuses a certificate whose issuer has
no CRL loaded, so a certificate of each CA connecting shows Mosquitto loaded every CRL of the file. The test
plays x509_mgmt's part (its CA's files, its CRL file, its ``certificate.revoked`` event); the agent rewrites the
combined CRL, sends Mosquitto SIGHUP and ends the revoked identity's live session."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ondas import ca as pki
from ondas.ca import load_crls
from ondas.topics import topic
from ondasctl import infra
from ondasctl.pki import device_tls_files, x509_data_dir
from tests.integration.agents_mqtt.conftest import Agent, Broker, Stub, device, launch_agent, own_broker, wait_until
from tests.integration.agents_mqtt.test_mtls import TlsDevice, handshake_alert
from x509_mgmt.ca import CertificateAuthority

pytestmark = pytest.mark.integration

KICK_WITHIN_S = 5.0
SUBJECT = "dojot.x509-identity-mgmt.certificates"


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[Broker]:
    with own_broker("unsecured") as broker:
        yield broker


@pytest.fixture(scope="module")
def stub(tenant: str) -> Iterator[Stub]:
    s = Stub()
    s.tenants = [tenant]
    s.devices[tenant] = [device(d) for d in ("x1", "x2", "p1")]
    yield s
    s.close()


@pytest.fixture(scope="module")
def authority(mosquitto: Broker) -> CertificateAuthority:
    """x509_mgmt's CA, as make up bootstrapped it before Mosquitto started (ondasctl.pki.prepare_device_tls)."""
    d = x509_data_dir(mosquitto.cfg.data_dir)
    return CertificateAuthority.open(d, d / "root")


@pytest.fixture(scope="module")
def x509_agent(
    mosquitto: Broker, kafka_bootstrap: str, stub: Stub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    cfg = mosquitto.cfg
    tls = device_tls_files(cfg.data_dir)
    log_path = tmp_path_factory.mktemp("mqtt-agent-x509") / "agent.log"
    a = launch_agent(
        mosquitto,  # type: ignore[arg-type]
        kafka_bootstrap,
        stub,
        log_path,
        "test-agent-" + uuid.uuid4().hex[:8],
        extra_env={
            "MQTT_AGENT_DYNSEC_PORT": str(cfg.ports["mqtt_internal"]),
            "MQTT_AGENT_DYNSEC_USERNAME": infra.MQTT_DYNSEC_ADMIN,
            "MQTT_AGENT_DYNSEC_PASSWORD": cfg.secret("mqtt-dynsec"),
            "MQTT_AGENT_DYNSEC_PASSWORDS": "off",
            "MQTT_AGENT_PKI_DIR": str(cfg.data_dir / "pki"),
            "MQTT_AGENT_BROKER_PID_FILE": str(infra.mosquitto_pid_file(cfg)),
            "MQTT_AGENT_X509_CRL_FILE": str(tls["x509_crl"]),
            "MQTT_AGENT_DEVICE_CRL_FILE": str(tls["crl"]),
        },
    )
    yield a
    assert a.stop() == 0, log_path.read_text()[-5000:]


class Issued:
    def __init__(self, cert: Path, key: Path, serial: int, fingerprint: str, subject: str) -> None:
        self.cert, self.key, self.serial, self.fingerprint, self.subject = cert, key, serial, fingerprint, subject


def issue_x509(authority: CertificateAuthority, identity: str, out: Path) -> Issued:
    """A device certificate as x509_mgmt issues one from a CSR."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .sign(key, hashes.SHA256())
    )
    cert = authority.issue(csr, identity, 30, dt.datetime.now(dt.UTC))
    out.mkdir(parents=True, exist_ok=True)
    (out / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.write_private_key(out / "key.pem", key)
    fp = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
    return Issued(out / "cert.pem", out / "key.pem", cert.serial_number, fp, cert.subject.rfc4514_string())


def write_x509_crl(authority: CertificateAuthority, serials: list[int], number: int) -> None:
    """What x509_mgmt's relay does after a revocation: its CRL file rewritten."""
    now = dt.datetime.now(dt.UTC)
    crl = authority.crl([(s, now) for s in serials], number, now - dt.timedelta(minutes=1), dt.timedelta(days=7))
    authority.write_crl_file(crl.public_bytes(serialization.Encoding.PEM).decode())


def test_both_cas_crls_in_one_file_and_a_revocation_event_honoured(
    x509_agent, mosquitto, authority, tenant, kafka_bootstrap, tmp_path
):
    cfg = mosquitto.cfg
    tls = device_tls_files(cfg.data_dir)
    ca = tls["ca"]
    # x509_mgmt's first CRL (empty): the agent combines it with the on-disk CA's and reloads the broker.
    write_x509_crl(authority, [], 1)
    wait_until(lambda: len(load_crls(tls["crl"].read_bytes())) == 2, 10, "the combined CRL of both CAs")

    x1 = issue_x509(authority, f"{tenant}:x1", tmp_path / "x1")
    x2 = issue_x509(authority, f"{tenant}:x2", tmp_path / "x2")
    p1 = pki.issue_device_cert(cfg.data_dir / "pki", tenant, "p1", out_dir=tmp_path / "p1")

    def connects(cert: Path, key: Path) -> bool:
        """A TLS handshake and an MQTT CONNECT answered with a CONNACK (sockets closed either way)."""
        try:
            return handshake_alert(cfg, ca, pki.IssuedCert("", "", "", cert, key, ca)) == ""
        except (AssertionError, OSError):  # closed without an answer: refused
            return False

    # A certificate of each CA is accepted: Mosquitto loaded both CRLs of the file.
    wait_until(lambda: connects(x1.cert, x1.key), 10, "x509_mgmt's certificate accepted")
    assert connects(p1.cert, p1.key)
    assert connects(x2.cert, x2.key)

    live = TlsDevice(cfg, ca, x1.cert, x1.key)
    try:
        assert live.accepted
        # x509_mgmt revokes x1: its CRL file first, then the event (here in that order; the agent also waits
        # for the serial to be on the CRL file when the event comes first).
        write_x509_crl(authority, [x1.serial], 2)
        body = {
            "event": "certificate.revoked",
            "meta": {"service": tenant, "timestamp": 0, "user": "admin"},
            "data": {
                "fingerprint": x1.fingerprint,
                "serialNumber": format(x1.serial, "X"),
                "subjectDN": x1.subject,
                "issuedByDojotPki": True,
                "autoRegistered": False,
                "caFingerprint": None,
                "belongsTo": {"device": "x1"},
                "notAfter": "2030-01-01T00:00:00.000Z",
            },
        }
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(topic(tenant, SUBJECT), json.dumps(body).encode(), key=x1.fingerprint)
        assert producer.flush(10) == 0
        wait_until(live.disconnected.is_set, KICK_WITHIN_S, f"x1's live session to end within {KICK_WITHIN_S} s")
    finally:
        live.close()
    # x1 is refused from now on; x2 (same CA) and p1 (the other CA, whose CRL is in the same file) still connect.
    assert not connects(x1.cert, x1.key)
    assert connects(x2.cert, x2.key)
    assert connects(p1.cert, p1.key)
    serials = {r.serial_number for crl in load_crls(tls["crl"].read_bytes()) for r in crl}
    assert x1.serial in serials
