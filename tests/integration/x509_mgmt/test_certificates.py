"""dojot's x509-identity-mgmt flow against the real app and PostgreSQL: issue from a CSR, read, list with
paging, fields and filters, associate, revoke, and the CRL."""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient

from tests.integration.x509_mgmt.helpers import DeviceRoute
from tests.unit.x509_mgmt import pki
from x509_mgmt.settings import Settings

BASE = "/x509/v1"


def issue(client: FlaskClient, headers: dict[str, str], cn: str, **body: Any) -> dict[str, Any]:
    resp = client.post(f"{BASE}/certificates", json={"csr": pki.csr_pem(cn), **body}, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()  # type: ignore[no-any-return]


def test_the_dojot_flow(client: FlaskClient, tokens: Any, unique: str, device_route: DeviceRoute) -> None:
    headers = tokens.headers(unique, "alice")
    device_route.add(unique, "a1b2c3")
    key = pki.ec_key(ec.SECP384R1())
    csr = pki.csr_pem("a1b2c3", key).replace("\n", "\r\n")  # dojot's README sends \r\n line breaks
    resp = client.post(f"{BASE}/certificates", json={"csr": csr}, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"certificateFingerprint", "certificatePem"}
    cert = x509.load_pem_x509_certificate(body["certificatePem"].encode())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    assert body["certificateFingerprint"] == ":".join(digest[i : i + 2] for i in range(0, 64, 2))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"{unique}:a1b2c3"
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    fp = body["certificateFingerprint"]

    # The CA that signed it: GET /ca gives its fingerprint and the chain to the root.
    ca = client.get(f"{BASE}/ca", headers=headers).get_json()
    chain = x509.load_pem_x509_certificates(ca["caPem"].encode())
    assert pki.fingerprint(chain[0]) == ca["certificateFingerprint"]
    cert.verify_directly_issued_by(chain[0])
    chain[0].verify_directly_issued_by(chain[1])

    # GET by fingerprint (any case, with or without colons), with and without fields.
    record = client.get(f"{BASE}/certificates/{fp}", headers=headers).get_json()
    assert record["fingerprint"] == fp
    assert record["pem"] == body["certificatePem"]
    assert record["issuedByDojotPki"] is True
    assert record["autoRegistered"] is False
    assert record["belongsTo"] == {"device": "a1b2c3"}
    assert record["tenant"] == unique
    assert record["createdAt"].endswith("Z")
    same = client.get(f"{BASE}/certificates/{fp.replace(':', '').lower()}", headers=headers).get_json()
    assert same == record
    some = client.get(f"{BASE}/certificates/{fp}?fields=pem,createdAt", headers=headers).get_json()
    assert some == {"pem": record["pem"], "createdAt": record["createdAt"]}

    # Revoke: 204, then 404, and the serial is on the CRL signed by the issuing CA.
    assert client.delete(f"{BASE}/certificates/{fp}", headers=headers).status_code == 204
    gone = client.get(f"{BASE}/certificates/{fp}", headers=headers)
    assert gone.status_code == 404
    assert "message" in gone.get_json()
    assert client.delete(f"{BASE}/certificates/{fp}", headers=headers).status_code == 404
    crl = x509.load_pem_x509_crl(client.get(f"{BASE}/ca/crl", headers=headers).get_json()["crl"].encode())
    assert crl.is_signature_valid(chain[0].public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert crl.next_update_utc is not None


def test_listing_pages_fields_and_filters(
    client: FlaskClient, tokens: Any, unique: str, device_route: DeviceRoute
) -> None:
    headers = tokens.headers(unique)
    device_route.add(unique, "d1", "d2", "d3", "d4", "d5")
    fps = sorted(issue(client, headers, d)["certificateFingerprint"] for d in ("d1", "d2", "d3", "d4", "d5"))

    first = client.get(f"{BASE}/certificates?limit=2", headers=headers).get_json()
    assert [c["fingerprint"] for c in first["certificates"]] == fps[:2]  # ordered by fingerprint, as dojot
    assert first["paging"] == {
        "previous": None,
        "current": {"number": 1, "url": f"{BASE}/certificates?page=1&limit=2"},
        "next": {"number": 2, "url": f"{BASE}/certificates?page=2&limit=2"},
        "totalItems": 5,
        "totalPages": 3,
        "limitPerPage": 2,
    }
    last = client.get(f"{BASE}/certificates?page=3&limit=2&fields=fingerprint", headers=headers).get_json()
    assert last["certificates"] == [{"fingerprint": fps[4]}]
    assert last["paging"]["next"] is None
    assert last["paging"]["previous"] == {"number": 2, "url": f"{BASE}/certificates?page=2&limit=2&fields=fingerprint"}
    default = client.get(f"{BASE}/certificates", headers=headers).get_json()
    assert default["paging"]["limitPerPage"] == 25 and len(default["certificates"]) == 5
    capped = client.get(f"{BASE}/certificates?limit=100000", headers=headers).get_json()
    assert capped["paging"]["limitPerPage"] == 250

    # Filters: key=val, ^prefix, ~contains, and on belongsTo.device.
    one = client.get(f"{BASE}/certificates?fingerprint={fps[2]}", headers=headers).get_json()
    assert [c["fingerprint"] for c in one["certificates"]] == [fps[2]]
    prefix = fps[3][:5]
    starting = client.get(f"{BASE}/certificates", query_string={"fingerprint": f"^{prefix}"}, headers=headers)
    assert fps[3] in [c["fingerprint"] for c in starting.get_json()["certificates"]]
    by_device = client.get(f"{BASE}/certificates?belongsTo.device=d4&fields=belongsTo", headers=headers).get_json()
    assert by_device["certificates"] == [{"belongsTo": {"device": "d4"}}]
    contains = client.get(f"{BASE}/certificates", query_string={"subjectDN": "~:D5"}, headers=headers).get_json()
    assert [c["belongsTo"] for c in contains["certificates"]] == [{"device": "d5"}]
    assert client.get(f"{BASE}/certificates?issuedByDojotPki=false", headers=headers).get_json()["certificates"] == []

    for bad in ("page=0", "limit=-1", "page=x", "fields=nope", "color=blue", "issuedByDojotPki=maybe"):
        resp = client.get(f"{BASE}/certificates?{bad}", headers=headers)
        assert resp.status_code == 400, bad
        assert resp.get_json()["message"]


def test_associating_a_certificate_with_a_device(
    client: FlaskClient, tokens: Any, unique: str, device_route: DeviceRoute
) -> None:
    headers = tokens.headers(unique)
    device_route.add(unique, "e1", "e2")
    fp = issue(client, headers, "e1")["certificateFingerprint"]
    url = f"{BASE}/certificates/{fp}"

    assert client.delete(f"{url}/belongsto", headers=headers).status_code == 204
    assert client.get(url, headers=headers).get_json()["belongsTo"] == {}
    assert client.patch(url, json={"belongsTo": {"device": None}}, headers=headers).status_code == 204
    assert client.get(url, headers=headers).get_json()["belongsTo"] == {"device": None}
    assert client.patch(url, json={"belongsTo": {"device": "e1"}}, headers=headers).status_code == 204
    assert client.get(url, headers=headers).get_json()["belongsTo"] == {"device": "e1"}

    # A platform certificate names its device in its CN: it cannot be moved to another one.
    moved = client.patch(url, json={"belongsTo": {"device": "e2"}}, headers=headers)
    assert moved.status_code == 400
    assert "request a certificate for e2" in moved.get_json()["message"]
    unknown = client.patch(url, json={"belongsTo": {"device": "ffff"}}, headers=headers)
    assert unknown.status_code == 400
    for bad in ({}, {"belongsTo": "e1"}, {"belongsTo": {"device": "e1"}, "x": 1}, {"belongsTo": {"device": "zz!"}}):
        resp = client.patch(url, json=bad, headers=headers)
        assert resp.status_code == 400, bad
        assert resp.get_json()["message"]


def test_every_issue_and_revocation_is_recorded_with_who_and_when(
    client: FlaskClient, tokens: Any, unique: str, device_route: DeviceRoute, settings: Settings
) -> None:
    device_route.add(unique, "f1")
    fp = issue(client, tokens.headers(unique, "alice"), "f1")["certificateFingerprint"]
    assert client.delete(f"{BASE}/certificates/{fp}", headers=tokens.headers(unique, "bob")).status_code == 204
    with psycopg.connect(settings.db_url) as conn:
        rows = conn.execute(
            "SELECT tenant, actor, action, device_id, at FROM audit WHERE fingerprint = %s ORDER BY seq", (fp,)
        ).fetchall()
        revoked = conn.execute("SELECT tenant, revoked_by FROM revocations WHERE fingerprint = %s", (fp,)).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (unique, "alice", "issued", "f1"),
        (unique, "bob", "revoked", "f1"),
    ]
    assert rows[0][4] <= rows[1][4]
    assert revoked == [(unique, "bob")]


def test_the_device_manager_is_asked_with_the_service_identity(
    client: FlaskClient, tokens: Any, unique: str, device_route: DeviceRoute, monkeypatch: Any, settings: Settings
) -> None:
    from x509_mgmt.app import build_api, close_api

    monkeypatch.setenv("ONDAS_SERVICE_NAME", "x509-mgmt")
    monkeypatch.setenv("ONDAS_SERVICE_KEY", "k3y")
    app = build_api(settings)
    try:
        device_route.add(unique, "abc")
        before = len(device_route.authorizations)
        with app.test_client() as c:
            issue(c, tokens.headers(unique), "abc")
        assert device_route.authorizations[before:] == ["Service x509-mgmt:k3y"]
    finally:
        close_api(app)


def test_health_and_metrics(client: FlaskClient) -> None:
    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.get_json()
    assert b"ondas_http_requests_total" in client.get("/metrics").data
