"""Mutual-TLS devices end to end: a Mosquitto of this module's own from the platform's generated config (its
mutual-TLS listener with the CA's CRL), the agent with certificate revocation on, real paho TLS clients holding
certificates the platform CA issued.

Covers: identity/topic binding for certificate logins (the CN ``<tenant>:<device-id>`` is the identity),
cross-device and cross-tenant publish and subscribe attempts, a certificate of an unknown CA and no certificate
refused at the handshake, and a removed device's certificates revoked: its live session ended within 5 s, the
same certificate refused afterwards, other devices unaffected."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from confluent_kafka import Producer
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion

from agents.mqtt.provisioning import Dynsec, Provisioner
from agents.mqtt.revocation import CertificateRevoker, removal_handler
from ondas import ca as pki
from ondas.contracts import DeviceEvent, TenancyEvent
from ondas.timestamps import now_ms
from ondas.topics import TENANCY_TOPIC, device_events
from ondasctl import infra
from ondasctl.config import Config
from ondasctl.pki import device_tls_files
from tests.integration.agents_mqtt.conftest import (
    Agent,
    Broker,
    DataReader,
    Stub,
    device,
    launch_agent,
    own_broker,
    wait_until,
)

pytestmark = pytest.mark.integration

KICK_WITHIN_S = 5.0  # the issue's bound for a removed device's session to end
RECEIVED = "mqtt_agent_messages_received_total"


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[Broker]:
    """Unsecured mode, as ``make up`` runs it by default (overrides the session's shared broker here)."""
    with own_broker("unsecured") as broker:
        yield broker


@pytest.fixture(scope="module")
def tenant2() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def stub(tenant: str, tenant2: str) -> Iterator[Stub]:
    """Two tenants, so cross-tenant attempts address a tenant the agent really serves."""
    s = Stub()
    s.tenants = [tenant, tenant2]
    s.devices[tenant] = [device(d) for d in ("dev1", "dev2", "dev3")]
    s.devices[tenant2] = [device("dev1")]
    yield s
    s.close()


@pytest.fixture(scope="module")
def magent(
    mosquitto: Broker, kafka_bootstrap: str, stub: Stub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    """The agent with certificate revocation on, as ``make up`` runs it in unsecured mode: the dynamic security
    plugin of the internal listener ends sessions, the platform CA's records and CRL, Mosquitto's pid file."""
    cfg = mosquitto.cfg
    log_path = tmp_path_factory.mktemp("mqtt-agent-mtls") / "agent.log"
    a = launch_agent(
        mosquitto,  # type: ignore[arg-type]  (launch_agent reads .cfg only)
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
            # As make up: the listener reads both CAs' CRLs from one file, which the agent rewrites.
            "MQTT_AGENT_X509_CRL_FILE": str(device_tls_files(cfg.data_dir)["x509_crl"]),
            "MQTT_AGENT_DEVICE_CRL_FILE": str(device_tls_files(cfg.data_dir)["crl"]),
        },
    )
    yield a
    assert a.stop() == 0, log_path.read_text()[-5000:]


@pytest.fixture(scope="module")
def issue(mosquitto: Broker, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], pki.IssuedCert]:
    """Issue a device certificate from the broker's platform CA (what ``ondasctl device-cert`` does)."""
    pki_dir = mosquitto.cfg.data_dir / "pki"

    def make(tenant: str, device_id: str) -> pki.IssuedCert:
        return pki.issue_device_cert(pki_dir, tenant, device_id, out_dir=tmp_path_factory.mktemp("cert"))

    return make


@pytest.fixture(scope="module")
def reader2(kafka_bootstrap: str, tenant2: str) -> Iterator[DataReader]:
    r = DataReader(kafka_bootstrap, tenant2)
    yield r
    r.close()


@pytest.fixture
def events(kafka_bootstrap: str) -> Iterator[Callable[[DeviceEvent], None]]:
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def send(event: DeviceEvent) -> None:
        producer.produce(device_events(event.tenant), event.to_bytes(), key=event.device_id)
        assert producer.flush(10) == 0

    yield send
    producer.flush(10)


class TlsDevice:
    """A paho MQTT v5 client on the mutual-TLS listener with a client certificate (or none); records how its
    connection went and does not reconnect once it lost it."""

    def __init__(self, cfg: Any, ca: Path, cert: Path | None, key: Path | None) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.connack: list[Any] = []
        self.disconnected = threading.Event()
        self._subacks: list[int] = []
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"tls-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
        )
        self.client.tls_set(ca_certs=str(ca), certfile=cert and str(cert), keyfile=key and str(key))
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.append(rc)
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subacks.append(mid)
        try:
            self.client.connect(cfg.host, cfg.ports["mqtts"])
        except (ssl.SSLError, OSError):
            self.disconnected.set()  # refused during the handshake, as seen by the client
            return
        self.client.loop_start()
        wait_until(lambda: self.connack or self.disconnected.is_set(), 10, "CONNACK or the connection's end")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnected.set()
        client.disconnect()  # no automatic reconnection: each attempt in these tests is explicit

    @property
    def accepted(self) -> bool:
        return bool(self.connack) and not self.connack[0].is_failure

    @property
    def refused(self) -> bool:
        return not self.accepted and self.disconnected.is_set()

    def publish(self, payload: str, topic: str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def subscribe(self, topic: str) -> None:
        _, mid = self.client.subscribe(topic, qos=1)
        wait_until(lambda: mid in self._subacks, 10, "SUBACK")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def connect(mosquitto: Broker) -> Iterator[Callable[..., TlsDevice]]:
    opened: list[TlsDevice] = []
    ca = device_tls_files(mosquitto.cfg.data_dir)["ca"]

    def make(cert: pki.IssuedCert | None, ca_file: Path | None = None) -> TlsDevice:
        d = TlsDevice(mosquitto.cfg, ca_file or ca, cert and cert.cert, cert and cert.key)
        opened.append(d)
        return d

    yield make
    for d in opened:
        d.close()


def handshake_alert(cfg: Any, ca: Path, cert: pki.IssuedCert | None) -> str:
    """Open a TLS connection to the mutual-TLS listener and send an MQTT CONNECT: the broker's verdict on the
    client certificate: "" when it answered with an accepting CONNACK, else why not. The TLS layer refuses a
    certificate no trusted CA signed (with TLS 1.3 the verdict arrives on the first read; the broker's alert,
    "unknown ca" or "certificate required", is often lost as it closes the connection at once); the broker's
    certificate plugin refuses a revoked one, or one whose CA is not trusted for the tenant, with CONNACK 5
    "not authorised". Tests rely only on the refusal itself."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    connect_packet = bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 1]) + b"x"  # MQTT 3.1.1, id "x"
    try:
        with (
            socket.create_connection((cfg.host, cfg.ports["mqtts"]), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=cfg.host) as tls,
        ):
            tls.sendall(connect_packet)
            answer = tls.recv(4)
    except ssl.SSLError as exc:
        return (exc.reason or str(exc)).replace("_", " ").lower()
    except (ConnectionError, TimeoutError) as exc:
        return f"connection closed: {exc}"
    if not answer:
        return "connection closed"
    assert answer[:1] == b"\x20" and len(answer) == 4, f"not a CONNACK: {answer!r}"
    return "" if answer[3] == 0 else f"CONNACK {answer[3]} (not authorised)"


def marks(reader: DataReader, mark: str) -> list[dict[str, Any]]:
    return [m for m in reader.messages if m["value"]["attrs"].get("mark") == mark]


def test_a_certificate_device_publishes_as_itself(magent, tenant, issue, connect, reader):
    dev1 = connect(issue(tenant, "dev1"))
    assert dev1.accepted, dev1.connack
    mark = uuid.uuid4().hex
    dev1.publish(json.dumps({"mark": mark}), f"{tenant}:dev1/attrs")
    got = reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)
    assert got["key"] == "dev1"
    assert got["value"]["metadata"]["deviceid"] == "dev1" and got["value"]["metadata"]["tenant"] == tenant


def test_a_certificate_cannot_publish_as_another_device_or_tenant(
    magent, tenant, tenant2, issue, connect, reader, reader2
):
    dev2 = connect(issue(tenant, "dev2"))
    other = connect(issue(tenant2, "dev1"))
    assert dev2.accepted and other.accepted
    foreign = magent.metric(RECEIVED, tenant="_unknown")
    spoof = uuid.uuid4().hex
    dev2.publish(json.dumps({"mark": spoof}), f"{tenant}:dev1/attrs")  # another device of its tenant
    dev2.publish(json.dumps({"mark": spoof}), f"{tenant2}:dev1/attrs")  # the same id in another tenant
    dev2.publish(json.dumps({"mark": spoof}), f"{tenant2}:dev2/attrs")  # an id the other tenant does not have
    other.publish(json.dumps({"mark": spoof}), f"{tenant}:dev1/attrs")  # and the other way round
    # Both devices' own messages, sent after the spoofs on the same connections, arrive: the spoofs had their
    # chance to arrive before them.
    after, after2 = uuid.uuid4().hex, uuid.uuid4().hex
    dev2.publish(json.dumps({"mark": after}), f"{tenant}:dev2/attrs")
    other.publish(json.dumps({"mark": after2}), f"{tenant2}:dev1/attrs")
    assert reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == after)["key"] == "dev2"
    assert reader2.wait_for(lambda m: m["value"]["attrs"].get("mark") == after2)["key"] == "dev1"
    assert marks(reader, spoof) == [] and marks(reader2, spoof) == []
    assert magent.metric(RECEIVED, tenant="_unknown") == foreign


def test_a_certificate_receives_only_its_own_configuration(magent, tenant, tenant2, issue, connect, events):
    dev1 = connect(issue(tenant, "dev1"))
    dev2 = connect(issue(tenant, "dev2"))
    other = connect(issue(tenant2, "dev1"))
    dev1.subscribe(f"{tenant}:dev1/config")
    other.subscribe(f"{tenant2}:dev1/config")
    # dev2 tries another device's, another tenant's and every config topic, and its own.
    for topic in (f"{tenant}:dev1/config", f"{tenant2}:dev1/config", "+/config", f"{tenant}:dev2/config"):
        dev2.subscribe(topic)
    events(DeviceEvent.configure(tenant, "dev1", {"fan": 1}, now_ms()))
    events(DeviceEvent.configure(tenant2, "dev1", {"fan": 2}, now_ms()))
    events(DeviceEvent.configure(tenant, "dev2", {"fan": 3}, now_ms()))
    wait_until(lambda: dev1.received and other.received and dev2.received, what="the three configurations")
    assert [(t, json.loads(p)) for t, p in dev1.received] == [(f"{tenant}:dev1/config", {"fan": 1})]
    assert [(t, json.loads(p)) for t, p in other.received] == [(f"{tenant2}:dev1/config", {"fan": 2})]
    # Overlapping subscriptions (its own topic and +/config) may each deliver a copy: only its own, though.
    assert {(t, p) for t, p in dev2.received} == {(f"{tenant}:dev2/config", b'{"fan":3}')}


def test_a_certificate_of_another_ca_is_refused(mosquitto, tenant, connect, tmp_path):
    stranger = pki.issue_device_cert(tmp_path / "other-ca", tenant, "dev1")  # same CN, a CA of its own
    assert connect(stranger).refused
    ca = device_tls_files(mosquitto.cfg.data_dir)["ca"]
    assert handshake_alert(mosquitto.cfg, ca, stranger) != ""


def test_no_client_certificate_is_refused(mosquitto, connect):
    assert connect(None).refused
    ca = device_tls_files(mosquitto.cfg.data_dir)["ca"]
    assert handshake_alert(mosquitto.cfg, ca, None) != ""


def test_a_removed_device_is_kicked_and_its_certificates_refused(
    magent, mosquitto, tenant, issue, connect, events, reader
):
    cfg = mosquitto.cfg
    ca = device_tls_files(cfg.data_dir)["ca"]
    first, second = issue(tenant, "dev3"), issue(tenant, "dev3")  # e.g. a replaced certificate
    keeper_cert = issue(tenant, "dev2")
    dev3, keeper = connect(second), connect(keeper_cert)
    assert dev3.accepted and keeper.accepted
    assert handshake_alert(cfg, ca, first) == ""  # both of its certificates work before the removal
    revoked_before = magent.metric("mqtt_agent_certificates_revoked_total", tenant=tenant)

    events(DeviceEvent.removed(tenant, "dev3"))

    wait_until(dev3.disconnected.is_set, KICK_WITHIN_S, f"dev3's session to end within {KICK_WITHIN_S} s")
    for cert in (first, second):
        assert connect(cert).refused
        assert handshake_alert(cfg, ca, cert) != ""
    # The CA's CRL names both certificates; the records say so too.
    crl = x509.load_pem_x509_crl((cfg.data_dir / "pki" / pki.CRL_FILE).read_bytes())
    assert {first.serial, second.serial} <= {format(r.serial_number, "x") for r in crl}
    records = {r.serial: r for r in pki.read_records(cfg.data_dir / "pki")}
    assert records[first.serial].revoked and records[second.serial].revoked
    assert not records[keeper_cert.serial].revoked
    assert magent.metric("mqtt_agent_certificates_revoked_total", tenant=tenant) == revoked_before + 2

    # Another device is untouched: its live session stays up and works, and it can connect again.
    assert not keeper.disconnected.is_set()
    mark = uuid.uuid4().hex
    keeper.publish(json.dumps({"mark": mark}), f"{tenant}:dev2/attrs")
    assert reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)["key"] == "dev2"
    assert connect(keeper_cert).accepted
    assert handshake_alert(cfg, ca, keeper_cert) == ""


def test_a_deleted_tenant_loses_every_certificate_and_session(
    magent, mosquitto, stub, tenant, tenant2, issue, connect, kafka_bootstrap
):
    cfg = mosquitto.cfg
    ca = device_tls_files(cfg.data_dir)["ca"]
    doomed, keeper_cert = issue(tenant2, "dev1"), issue(tenant, "dev1")
    dev, keeper = connect(doomed), connect(keeper_cert)
    assert dev.accepted and keeper.accepted

    # As auth does it: the tenant is gone from auth's answers, then the deletion is announced.
    stub.tenants = [t for t in stub.tenants if t != tenant2]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(TENANCY_TOPIC, TenancyEvent(type="DELETE", tenant=tenant2).to_bytes(), key=tenant2)
    assert producer.flush(10) == 0

    wait_until(dev.disconnected.is_set, KICK_WITHIN_S * 4, "the deleted tenant's session to end")
    assert connect(doomed).refused
    assert handshake_alert(cfg, ca, doomed) != ""
    records = {r.serial: r for r in pki.read_records(cfg.data_dir / "pki")}
    assert all(r.revoked for r in records.values() if r.cn.startswith(f"{tenant2}:"))
    assert not records[keeper_cert.serial].revoked
    # The other tenant's device is untouched.
    assert not keeper.disconnected.is_set()
    assert handshake_alert(cfg, ca, keeper_cert) == ""


# -- credentials mode: the dynamic security plugin is on the device listener ----------------------------------
@pytest.fixture(scope="module")
def credentials_broker() -> Iterator[Config]:
    with own_broker("credentials") as broker:
        yield broker.cfg


def dynsec_call(cfg: Config, action: Callable[[Provisioner], Any]) -> None:
    """Run one Provisioner action over a connection of its own to the device listener's plugin."""

    async def run() -> None:
        dynsec = Dynsec(
            host=cfg.host,
            port=cfg.ports["mqtt"],
            username=infra.MQTT_DYNSEC_ADMIN,
            password=cfg.secret("mqtt-dynsec"),
            client_id=f"test-dynsec-{uuid.uuid4().hex[:6]}",
        )
        await dynsec.start(timeout=10)
        try:
            await action(Provisioner(dynsec))
        finally:
            await dynsec.stop()

    asyncio.run(run())


def test_in_credentials_mode_a_removal_ends_certificate_and_password_sessions(credentials_broker, tmp_path):
    """The agent's removal path (revoker, then the plugin ending sessions), run in-process against a
    credentials-mode broker: one identity logged in with a certificate and with its password."""
    cfg = credentials_broker
    pki_dir = cfg.data_dir / "pki"
    ca = device_tls_files(cfg.data_dir)["ca"]
    gone = pki.issue_device_cert(pki_dir, "acme", "gone", out_dir=tmp_path / "gone")
    kept = pki.issue_device_cert(pki_dir, "acme", "kept", out_dir=tmp_path / "kept")
    solo = pki.issue_device_cert(pki_dir, "acme", "solo", out_dir=tmp_path / "solo")  # no password
    password = uuid.uuid4().hex
    dynsec_call(cfg, lambda p: p.set_password("acme:gone", password))

    opened: list[TlsDevice] = []

    def tls(cert: pki.IssuedCert) -> TlsDevice:
        opened.append(TlsDevice(cfg, ca, cert.cert, cert.key))
        return opened[-1]

    by_cert, keeper, solo_device = tls(gone), tls(kept), tls(solo)
    by_password = paho.Client(CallbackAPIVersion.VERSION2, client_id="pw-gone", protocol=paho.MQTTv5)
    by_password.username_pw_set("acme:gone", password)
    password_up, password_down = threading.Event(), threading.Event()
    by_password.on_connect = lambda c, u, f, rc, p: (not rc.is_failure) and password_up.set()
    by_password.on_disconnect = lambda c, u, f, rc, p: (password_down.set(), c.disconnect())
    by_password.connect(cfg.host, cfg.ports["mqtt"])
    by_password.loop_start()
    try:
        assert by_cert.accepted and keeper.accepted and solo_device.accepted
        wait_until(password_up.is_set, 10, "the password login")

        on_remove = removal_handler(
            CertificateRevoker(
                pki_dir,
                pki_dir / pki.CRL_FILE,
                infra.mosquitto_pid_file(cfg),
                device_tls_files(cfg.data_dir)["crl"],
                [pki_dir / pki.CRL_FILE, device_tls_files(cfg.data_dir)["x509_crl"]],
            ),
            lambda identity: dynsec_call(cfg, lambda p: p.remove(identity)),
        )
        assert on_remove is not None
        on_remove("acme:gone")

        wait_until(
            lambda: by_cert.disconnected.is_set() and password_down.is_set(),
            KICK_WITHIN_S,
            f"both sessions of acme:gone to end within {KICK_WITHIN_S} s",
        )
        assert tls(gone).refused
        assert handshake_alert(cfg, ca, gone) != ""
        # An identity the plugin never knew (a certificate, no password) is ended just the same.
        on_remove("acme:solo")
        wait_until(solo_device.disconnected.is_set, KICK_WITHIN_S, "acme:solo's session to end")
        assert tls(solo).refused

        assert not keeper.disconnected.is_set()
        assert tls(kept).accepted
    finally:
        by_password.disconnect()
        by_password.loop_stop()
        for d in opened:
            d.close()
