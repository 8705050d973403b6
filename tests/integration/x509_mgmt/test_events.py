"""Certificate events on the real Kafka-protocol broker, published from the outbox after the commit."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
from flask.testing import FlaskClient

from tests.integration.x509_mgmt.helpers import DeviceRoute, consume_until
from tests.unit.x509_mgmt import pki
from tests.waiting import wait_for
from x509_mgmt.app import build_api, close_api
from x509_mgmt.events import certificates_topic
from x509_mgmt.settings import Settings

BASE = "/x509/v1"


def _outbox(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM outbox").fetchone()
    return int(row[0]) if row else 0


def test_issued_owner_changed_and_revoked_events(
    settings: Settings, tokens: Any, unique: str, device_route: DeviceRoute
) -> None:
    app = build_api(dataclasses.replace(settings, relay=True))
    try:
        client: FlaskClient
        with app.test_client() as client:
            headers = tokens.headers(unique, "carol")
            device_route.add(unique, "0a0a")
            resp = client.post(f"{BASE}/certificates", json={"csr": pki.csr_pem("0a0a")}, headers=headers)
            assert resp.status_code == 201
            fp = resp.get_json()["certificateFingerprint"]
            assert client.delete(f"{BASE}/certificates/{fp}/belongsto", headers=headers).status_code == 204
            assert client.delete(f"{BASE}/certificates/{fp}", headers=headers).status_code == 204
        messages = consume_until(settings.common.kafka_bootstrap, certificates_topic(unique), 3)
        wait_for(lambda: _outbox(settings.db_url) == 0, what="the outbox to drain")
    finally:
        close_api(app)
    assert [m[0] for m in messages] == [fp, fp, fp]
    issued, changed, revoked = (m[1] for m in messages)
    assert issued["event"] == "certificate.issued"
    assert issued["meta"]["service"] == unique and issued["meta"]["user"] == "carol"
    assert isinstance(issued["meta"]["timestamp"], int)
    assert issued["data"]["fingerprint"] == fp
    assert issued["data"]["belongsTo"] == {"device": "0a0a"}
    assert issued["data"]["issuedByDojotPki"] is True
    assert issued["data"]["subjectDN"].endswith(f"CN={unique}:0a0a")
    assert changed["event"] == "certificate.owner-changed"
    assert changed["data"]["belongsTo"] == {} and changed["data"]["previousBelongsTo"] == {"device": "0a0a"}
    assert revoked["event"] == "certificate.revoked"
    assert revoked["data"]["serialNumber"] == issued["data"]["serialNumber"]
    assert messages[0][2]["ondas-tenant"] == unique.encode()
    assert messages[0][2]["content-type"] == b"application/json"


def test_a_refused_request_publishes_nothing(settings: Settings, client: FlaskClient, tokens: Any, unique: str) -> None:
    resp = client.post(f"{BASE}/certificates", json={"csr": pki.csr_pem("0b0b")}, headers=tokens.headers(unique))
    assert resp.status_code == 400
    assert _outbox(settings.db_url) == 0


def test_the_relay_writes_the_crl_file(settings: Settings, tokens: Any, unique: str, device_route: DeviceRoute) -> None:
    from pathlib import Path

    from cryptography import x509

    app = build_api(dataclasses.replace(settings, relay=True))
    try:
        with app.test_client() as client:
            headers = tokens.headers(unique)
            device_route.add(unique, "0c0c")
            pem = client.post(f"{BASE}/certificates", json={"csr": pki.csr_pem("0c0c")}, headers=headers).get_json()
            serial = x509.load_pem_x509_certificate(pem["certificatePem"].encode()).serial_number
            assert (
                client.delete(f"{BASE}/certificates/{pem['certificateFingerprint']}", headers=headers).status_code
                == 204
            )
        crl_file = Path(settings.data_dir) / "crl.pem"

        def listed() -> bool:
            if not crl_file.exists():
                return False
            crl = x509.load_pem_x509_crl(crl_file.read_bytes())
            return crl.get_revoked_certificate_by_serial_number(serial) is not None

        wait_for(listed, what="the revoked serial in crl.pem")
    finally:
        close_api(app)
