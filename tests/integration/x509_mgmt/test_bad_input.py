"""Bad input is a 400 with a message that says what is wrong, never a 5xx (issue 13, acceptance 5)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.integration.x509_mgmt.helpers import DeviceRoute
from tests.unit.x509_mgmt import pki

BASE = "/x509/v1"
GARBAGE_PEM = "-----BEGIN CERTIFICATE REQUEST-----\nTm90IGEgcmVxdWVzdCBhdCBhbGw=\n-----END CERTIFICATE REQUEST-----\n"


def _cases(tenant: str) -> list[Any]:
    return [
        pytest.param({"csr": "garbage"}, "not a certificate request in PEM", id="not-pem"),
        pytest.param({"csr": GARBAGE_PEM}, "cannot be read", id="garbage-pem"),
        pytest.param({"csr": pki.csr_pem("b0b0", pki.rsa_key(1024))}, "at least 2048", id="rsa-1024"),
        pytest.param({"csr": pki.wrong_signature_csr("b0b0")}, "signature is wrong", id="wrong-signature"),
        pytest.param({"csr": pki.csr_pem("b0b0"), "color": "blue"}, "unknown field", id="unknown-field"),
        pytest.param({"csr": pki.csr_pem("b0b0"), "certificateChain": "x"}, "either", id="both"),
        pytest.param({}, "either", id="empty-object"),
        pytest.param({"csr": 42}, "must be a string", id="csr-not-string"),
        pytest.param({"csr": pki.csr_pem("ffff")}, "no device ffff", id="unknown-device"),
        pytest.param({"csr": pki.csr_pem("not-hex")}, "device id", id="cn-not-a-device-id"),
        pytest.param({"csr": pki.csr_pem(None)}, "exactly one CN", id="no-cn"),
        pytest.param({"csr": pki.csr_pem("other_tenant:b0b0")}, "caller's tenant", id="cn-of-another-tenant"),
        pytest.param({"csr": pki.csr_pem("b0b0"), "belongsTo": {"device": "b1b1"}}, "is not the device", id="owner"),
        pytest.param({"csr": pki.csr_pem("b0b0"), "belongsTo": {"application": "x"}}, "application", id="app"),
        pytest.param({"csr": pki.csr_pem("b0b0"), "caFingerprint": "AB" * 32}, "goes with", id="csr-with-ca"),
        pytest.param(
            {"certificateChain": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
            "cannot be read",
            id="garbage-chain",
        ),
        pytest.param({"csr": "x" * 70000}, "longer than", id="long-csr"),
    ]


@pytest.mark.parametrize(("body", "reason"), _cases("t"))
def test_bad_certificate_requests(
    client: FlaskClient, tokens: Any, unique: str, device_route: DeviceRoute, body: dict[str, Any], reason: str
) -> None:
    device_route.add(unique, "b0b0")
    resp = client.post(f"{BASE}/certificates", json=body, headers=tokens.headers(unique))
    assert resp.status_code == 400, resp.get_json()
    assert reason in resp.get_json()["message"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"{not json", "not valid JSON", id="not-json"),
        pytest.param(b"[1, 2]", "JSON object", id="array"),
        pytest.param(b"\xff\xfe", "UTF-8", id="not-utf8"),
        pytest.param(json.dumps({"csr": "A" * 1_000_000}).encode(), "longer than", id="1MB-body"),
        pytest.param(b"", "needs a JSON body", id="empty"),
    ],
)
def test_bad_bodies(client: FlaskClient, tokens: Any, unique: str, data: bytes, reason: str) -> None:
    resp = client.post(
        f"{BASE}/certificates", data=data, content_type="application/json", headers=tokens.headers(unique)
    )
    assert resp.status_code == 400, resp.get_json()
    assert reason in resp.get_json()["message"]


def test_a_body_over_the_limit_is_413_with_a_message(client: FlaskClient, tokens: Any, unique: str) -> None:
    resp = client.post(
        f"{BASE}/certificates", data=b"x" * (2 << 20), content_type="application/json", headers=tokens.headers(unique)
    )
    assert resp.status_code == 413
    assert resp.get_json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/certificates/xyz", None),
        ("delete", "/certificates/12:34", None),
        ("patch", "/certificates/" + "G" * 64, {"belongsTo": {"device": "ab"}}),
        ("get", "/trusted-cas/nope", None),
        ("post", "/trusted-cas", {"caPem": "garbage"}),
        ("post", "/trusted-cas", {"caPem": pki.pem(pki.ca_cert("x")[0]), "extra": 1}),
        ("post", "/trusted-cas", {"caPem": pki.pem(pki.ca_cert("x")[0]), "allowAutoRegistration": "yes"}),
        ("post", "/trusted-cas", {}),
    ],
)
def test_bad_fingerprints_and_trusted_ca_bodies(
    client: FlaskClient, tokens: Any, unique: str, method: str, path: str, body: dict[str, Any] | None
) -> None:
    resp = getattr(client, method)(f"{BASE}{path}", json=body, headers=tokens.headers(unique))
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["message"]


def test_no_token_is_401(client: FlaskClient) -> None:
    for path in ("/ca", "/ca/crl", "/certificates", "/trusted-cas"):
        resp = client.get(f"{BASE}{path}")
        assert resp.status_code == 401, path
