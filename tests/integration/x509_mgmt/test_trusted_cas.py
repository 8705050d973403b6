"""Trusted CAs and external certificates (dojot's "register an external certificate issued by a trusted CA")."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.integration.x509_mgmt.helpers import DeviceRoute
from tests.unit.x509_mgmt import pki

BASE = "/x509/v1"


def test_register_list_get_update_delete(client: FlaskClient, tokens: Any, unique: str) -> None:
    headers = tokens.headers(unique)
    roots = [pki.ca_cert(f"Factory Root {i}")[0] for i in range(3)]
    fps = []
    for i, root in enumerate(roots):
        body = {"caPem": pki.pem(root), "allowAutoRegistration": i == 0}
        resp = client.post(f"{BASE}/trusted-cas", json=body, headers=headers)
        assert resp.status_code == 201, resp.get_json()
        assert resp.get_json() == {"caFingerprint": pki.fingerprint(root)}
        fps.append(pki.fingerprint(root))
    again = client.post(f"{BASE}/trusted-cas", json={"caPem": pki.pem(roots[0])}, headers=headers)
    assert again.status_code == 400
    assert "registered already" in again.get_json()["message"]

    listed = client.get(f"{BASE}/trusted-cas?limit=2", headers=headers).get_json()
    assert [c["caFingerprint"] for c in listed["trusted-cas"]] == sorted(fps)[:2]
    assert listed["paging"]["totalItems"] == 3 and listed["paging"]["totalPages"] == 2
    auto = client.get(f"{BASE}/trusted-cas?allowAutoRegistration=true&fields=caFingerprint", headers=headers)
    assert auto.get_json()["trusted-cas"] == [{"caFingerprint": fps[0]}]

    one = client.get(f"{BASE}/trusted-cas/{fps[1]}", headers=headers).get_json()
    assert set(one) == {
        "allowAutoRegistration",
        "caFingerprint",
        "caPem",
        "subjectDN",
        "validity",
        "tenant",
        "createdAt",
        "modifiedAt",
    }
    assert one["subjectDN"] == "CN=Factory Root 1" and one["tenant"] == unique
    assert set(one["validity"]) == {"notBefore", "notAfter"}

    url = f"{BASE}/trusted-cas/{fps[1]}"
    assert client.patch(url, json={"allowAutoRegistration": True}, headers=headers).status_code == 204
    assert client.get(url, headers=headers).get_json()["allowAutoRegistration"] is True
    assert client.patch(url, json={}, headers=headers).status_code == 400
    assert client.delete(url, headers=headers).status_code == 204
    assert client.get(url, headers=headers).status_code == 404
    assert client.delete(url, headers=headers).status_code == 404


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(lambda: pki.leaf_cert("not a ca", *pki.ca_cert("R"))[0], "not a CA certificate", id="leaf"),
        pytest.param(
            lambda: pki.leaf_cert("intermediate", *pki.ca_cert("R"), ca=True)[0], "not self-signed", id="intermediate"
        ),
        pytest.param(lambda: pki.ca_cert("Short", days=0)[0], "at least 1 more day", id="expiring"),
    ],
)
def test_refused_cas(client: FlaskClient, tokens: Any, unique: str, make: Any, reason: str) -> None:
    resp = client.post(f"{BASE}/trusted-cas", json={"caPem": pki.pem(make())}, headers=tokens.headers(unique))
    assert resp.status_code == 400, resp.get_json()
    assert reason in resp.get_json()["message"]


def test_the_platform_ca_cannot_be_a_trusted_ca(client: FlaskClient, tokens: Any, unique: str) -> None:
    headers = tokens.headers(unique)
    chain = client.get(f"{BASE}/ca", headers=headers).get_json()["caPem"]
    root = "-----BEGIN CERTIFICATE-----" + chain.split("-----BEGIN CERTIFICATE-----")[2]
    resp = client.post(f"{BASE}/trusted-cas", json={"caPem": root}, headers=headers)
    assert resp.status_code == 400
    assert "platform's own CA" in resp.get_json()["message"]


def test_external_certificates(client: FlaskClient, tokens: Any, unique: str, device_route: DeviceRoute) -> None:
    headers = tokens.headers(unique)
    device_route.add(unique, "cafe01")
    root, root_key = pki.ca_cert("Factory Root")
    inter, inter_key = pki.leaf_cert("Factory Line", root, root_key, ca=True)
    ca_fp = client.post(f"{BASE}/trusted-cas", json={"caPem": pki.pem(root)}, headers=headers).get_json()[
        "caFingerprint"
    ]

    # Through an intermediate, naming the CA by fingerprint, for a device.
    leaf, _ = pki.leaf_cert("serial-0001", inter, inter_key)  # type: ignore[arg-type]
    body = {
        "certificateChain": pki.pem(leaf) + pki.pem(inter),
        "caFingerprint": ca_fp,
        "belongsTo": {"device": "cafe01"},
    }
    resp = client.post(f"{BASE}/certificates", json=body, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json() == {"certificateFingerprint": pki.fingerprint(leaf)}
    record = client.get(f"{BASE}/certificates/{pki.fingerprint(leaf)}", headers=headers).get_json()
    assert record["issuedByDojotPki"] is False
    assert record["caFingerprint"] == ca_fp
    assert record["belongsTo"] == {"device": "cafe01"}
    assert record["subjectDN"] == "CN=serial-0001"

    # Signed by the root directly, with the root in the chain, no device yet; then associated.
    leaf2, _ = pki.leaf_cert("serial-0002", root, root_key)
    resp = client.post(
        f"{BASE}/certificates", json={"certificateChain": pki.pem(leaf2) + pki.pem(root)}, headers=headers
    )
    assert resp.status_code == 201, resp.get_json()
    fp2 = pki.fingerprint(leaf2)
    assert client.get(f"{BASE}/certificates/{fp2}", headers=headers).get_json()["belongsTo"] == {}
    patch = client.patch(f"{BASE}/certificates/{fp2}", json={"belongsTo": {"device": "cafe01"}}, headers=headers)
    assert patch.status_code == 204
    external = client.get(f"{BASE}/certificates?issuedByDojotPki=false&fields=fingerprint", headers=headers).get_json()
    assert sorted(c["fingerprint"] for c in external["certificates"]) == sorted([pki.fingerprint(leaf), fp2])

    # Refusals: registered twice, a foreign chain, a missing intermediate, a CA certificate, an unknown device.
    twice = client.post(f"{BASE}/certificates", json={"certificateChain": pki.pem(leaf2)}, headers=headers)
    assert twice.status_code == 400 and "registered already" in twice.get_json()["message"]
    stranger_root, stranger_key = pki.ca_cert("Stranger")
    foreign, _ = pki.leaf_cert("x", stranger_root, stranger_key)
    resp = client.post(f"{BASE}/certificates", json={"certificateChain": pki.pem(foreign)}, headers=headers)
    assert resp.status_code == 400 and "trusts" in resp.get_json()["message"]
    leaf3, _ = pki.leaf_cert("serial-0003", inter, inter_key)  # type: ignore[arg-type]
    resp = client.post(
        f"{BASE}/certificates", json={"certificateChain": pki.pem(leaf3), "caFingerprint": ca_fp}, headers=headers
    )
    assert resp.status_code == 400 and "not signed by the trusted CA" in resp.get_json()["message"]
    resp = client.post(f"{BASE}/certificates", json={"certificateChain": pki.pem(inter)}, headers=headers)
    assert resp.status_code == 400 and "is a CA certificate" in resp.get_json()["message"]
    leaf4, _ = pki.leaf_cert("serial-0004", root, root_key)
    resp = client.post(
        f"{BASE}/certificates",
        json={"certificateChain": pki.pem(leaf4), "belongsTo": {"device": "dead"}},
        headers=headers,
    )
    assert resp.status_code == 400 and "no device dead" in resp.get_json()["message"]
    resp = client.post(
        f"{BASE}/certificates", json={"certificateChain": pki.pem(leaf4), "caFingerprint": "00" * 32}, headers=headers
    )
    assert resp.status_code == 400 and "no trusted CA" in resp.get_json()["message"]

    # Deleting the trusted CA removes the certificates registered under it: the platform no longer trusts them.
    assert client.delete(f"{BASE}/trusted-cas/{ca_fp}", headers=headers).status_code == 204
    assert client.get(f"{BASE}/certificates/{fp2}", headers=headers).status_code == 404
    assert client.get(f"{BASE}/certificates?issuedByDojotPki=false", headers=headers).get_json()["certificates"] == []
