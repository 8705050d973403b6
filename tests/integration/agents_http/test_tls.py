"""The HTTP agent's TLS listener (``python -m agents.http tls``): devices log in with a client certificate of the
platform CA (CN ``<tenant>:<device-id>``) or with Basic credentials under TLS. Real gunicorn with TLS, real
Kafka-protocol broker, real Redis; certificates from ondas.ca as the platform issues them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ondas import ca as pki
from tests.integration.agents_http.conftest import MANY, URL, HttpAgent, TopicReader, launch_http_agent
from tests.integration.agents_mqtt.conftest import Stub, device, wait_until

pytestmark = pytest.mark.integration

DROPPED = "http_agent_messages_dropped_total"


@pytest.fixture(scope="module")
def stub(tenant: str, tenant_b: str) -> Iterator[Stub]:
    s = Stub()
    s.tenants = [tenant, tenant_b]
    s.devices[tenant] = [device(d) for d in ("dev1", "dev2", "rev1")] + [{**device("off1"), "disabled": True}]
    s.devices[tenant_b] = [device("devb")]
    yield s
    s.close()


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.ensure_ca_and_server_cert(d, ["localhost", "127.0.0.1"])
    pki.write_crl(d)
    return d


@pytest.fixture(scope="module")
def tls_agent(
    kafka_bootstrap: str, redis_url: str, stub: Stub, pki_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpAgent]:
    log_path = tmp_path_factory.mktemp("http-agent-tls") / "agent.log"
    a = launch_http_agent(kafka_bootstrap, redis_url, stub, log_path, pki_dir=pki_dir)
    yield a
    assert a.stop() == 0, log_path.read_text()[-5000:]


def cert_of(pki_dir: Path, tenant: str, device_id: str) -> tuple[Path, Path]:
    issued = pki.issue_device_cert(pki_dir, tenant, device_id, out_dir=pki_dir / "out" / uuid.uuid4().hex)
    return issued.cert, issued.key


def marked(reader: TopicReader, mark: str) -> list[dict]:
    return [m for m in reader.poll() if m["value"]["attrs"].get("mark") == mark]


def test_a_certificate_is_the_devices_identity(tls_agent, reader, pki_dir, tenant):
    mark = uuid.uuid4().hex
    r = tls_agent.post(URL, {"data": {"mark": mark}}, cert=cert_of(pki_dir, tenant, "dev1"))
    assert r.status_code == 204, r.text
    m = reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)
    assert (m["topic"], m["key"]) == (f"{tenant}.device-data", "dev1")
    assert m["value"]["metadata"]["deviceid"] == "dev1" and m["value"]["metadata"]["tenant"] == tenant


def test_create_many_with_a_certificate_keeps_the_order(tls_agent, reader, pki_dir, tenant):
    mark = uuid.uuid4().hex
    body = [{"data": {"mark": mark, "n": n}} for n in range(5)]
    r = tls_agent.post(MANY, body, cert=cert_of(pki_dir, tenant, "dev2"))
    assert r.status_code == 204, r.text
    wait_until(lambda: len(marked(reader, mark)) == 5, what="the 5 messages")
    assert [m["value"]["attrs"]["n"] for m in marked(reader, mark)] == [0, 1, 2, 3, 4]
    assert {m["key"] for m in marked(reader, mark)} == {"dev2"}


def test_the_certificate_wins_over_credentials_of_another_tenant(tls_agent, reader, pki_dir, tenant, tenant_b):
    """A device cannot borrow another identity: with a certificate the Authorization header is not read, so
    the message is the certificate's device's, on its tenant's topic only."""
    mark = uuid.uuid4().hex
    r = tls_agent.post(
        URL, {"data": {"mark": mark}}, cert=cert_of(pki_dir, tenant, "dev1"), auth=(tenant_b, "devb", "whatever")
    )
    assert r.status_code == 204, r.text
    m = reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)
    assert (m["topic"], m["key"]) == (f"{tenant}.device-data", "dev1")
    # Another tenant's device, by its own certificate, lands on its own tenant's topic.
    mark_b = uuid.uuid4().hex
    assert tls_agent.post(URL, {"data": {"mark": mark_b}}, cert=cert_of(pki_dir, tenant_b, "devb")).status_code == 204
    m = reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark_b)
    assert (m["topic"], m["key"]) == (f"{tenant_b}.device-data", "devb")
    assert len([x for x in marked(reader, mark) if x["topic"] == f"{tenant_b}.device-data"]) == 0


def test_a_certificate_of_an_unknown_or_disabled_device_is_refused(tls_agent, pki_dir, tenant):
    r = tls_agent.post(URL, {"data": {"a": 1}}, cert=cert_of(pki_dir, tenant, "ghost"))
    assert r.status_code == 404 and r.json()["error"] == "unknown_device", r.text
    r = tls_agent.post(URL, {"data": {"a": 1}}, cert=cert_of(pki_dir, tenant, "off1"))
    assert r.status_code == 403 and r.json()["error"] == "device_disabled", r.text
    unknown_tenant = "t" + uuid.uuid4().hex[:10]
    r = tls_agent.post(URL, {"data": {"a": 1}}, cert=cert_of(pki_dir, unknown_tenant, "dev1"))
    assert r.status_code == 403 and r.json()["error"] == "tenant_disabled", r.text


def test_a_certificate_of_another_ca_fails_the_handshake(tls_agent, tenant, tmp_path):
    other = tmp_path / "other-ca"
    pki.ensure_ca(other)
    issued = pki.issue_device_cert(other, tenant, "dev1")
    with pytest.raises(requests.exceptions.SSLError):
        tls_agent.post(URL, {"data": {"a": 1}}, cert=(issued.cert, issued.key))


def test_a_revoked_certificate_is_refused_without_a_restart(tls_agent, pki_dir, tenant):
    old = cert_of(pki_dir, tenant, "rev1")
    assert tls_agent.post(URL, {"data": {"a": 1}}, cert=old).status_code == 204
    before = tls_agent.metric(DROPPED, tenant=tenant, reason="revoked_certificate")
    pki.revoke_identity(pki_dir, f"{tenant}:rev1")

    def refused() -> list[requests.Response]:  # a list: a 4xx Response is falsy
        r = tls_agent.post(URL, {"data": {"a": 1}}, cert=old)
        return [r] if r.status_code != 204 else []

    [r] = wait_until(refused, 10, "the revoked certificate to be refused")
    assert r.status_code == 401 and r.json()["error"] == "revoked_certificate", r.text
    assert tls_agent.metric(DROPPED, tenant=tenant, reason="revoked_certificate") > before
    # A certificate issued after the revocation is a new one, and works.
    assert tls_agent.post(URL, {"data": {"a": 1}}, cert=cert_of(pki_dir, tenant, "rev1")).status_code == 204


def test_without_a_certificate_basic_credentials_work_under_tls(tls_agent, reader, store, tenant):
    password = "pw-" + uuid.uuid4().hex
    store.set_password(tenant, "dev2", password)
    mark = uuid.uuid4().hex
    r = tls_agent.post(URL, {"data": {"mark": mark}}, auth=(tenant, "dev2", password))
    assert r.status_code == 204, r.text
    assert reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)["key"] == "dev2"
    r = tls_agent.post(URL, {"data": {"a": 1}}, auth=(tenant, "dev2", "wrong"))
    assert r.status_code == 401 and r.json()["error"] == "bad_credentials"
    r = tls_agent.post(URL, {"data": {"a": 1}})
    assert r.status_code == 401 and r.json()["error"] == "no_credentials"


def test_the_listener_speaks_tls_only(tls_agent):
    plain = tls_agent.base.replace("https://", "http://", 1)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(plain + URL, json={"data": {"a": 1}}, timeout=5)
    assert tls_agent.ready()  # and it keeps serving
