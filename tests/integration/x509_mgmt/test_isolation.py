"""Tenant isolation (issue 13, acceptance 4): tenant B cannot list, read, revoke or re-associate A's certificates
or trusted CAs, nor get a certificate for one of A's devices."""

from __future__ import annotations

import uuid
from typing import Any

from flask.testing import FlaskClient

from tests.integration.x509_mgmt.helpers import DeviceRoute
from tests.unit.x509_mgmt import pki

BASE = "/x509/v1"


def test_tenant_b_cannot_touch_tenant_a(client: FlaskClient, tokens: Any, device_route: DeviceRoute) -> None:
    a, b = "ta" + uuid.uuid4().hex[:8], "tb" + uuid.uuid4().hex[:8]
    ha, hb = tokens.headers(a), tokens.headers(b)
    device_route.add(a, "aa01")
    device_route.add(b, "bb01")
    resp = client.post(f"{BASE}/certificates", json={"csr": pki.csr_pem("aa01")}, headers=ha)
    assert resp.status_code == 201
    fp = resp.get_json()["certificateFingerprint"]
    ca, ca_key = pki.ca_cert(f"Factory of {a}")
    ca_fp = client.post(f"{BASE}/trusted-cas", json={"caPem": pki.pem(ca)}, headers=ha).get_json()["caFingerprint"]

    # B sees nothing of A's.
    assert client.get(f"{BASE}/certificates", headers=hb).get_json()["certificates"] == []
    assert client.get(f"{BASE}/certificates?tenant={a}", headers=hb).get_json()["certificates"] == []
    assert client.get(f"{BASE}/certificates/{fp}", headers=hb).status_code == 404
    assert client.delete(f"{BASE}/certificates/{fp}", headers=hb).status_code == 404
    assert (
        client.patch(f"{BASE}/certificates/{fp}", json={"belongsTo": {"device": "bb01"}}, headers=hb).status_code == 404
    )
    assert client.delete(f"{BASE}/certificates/{fp}/belongsto", headers=hb).status_code == 404
    assert client.get(f"{BASE}/trusted-cas", headers=hb).get_json()["trusted-cas"] == []
    assert client.get(f"{BASE}/trusted-cas/{ca_fp}", headers=hb).status_code == 404
    assert (
        client.patch(f"{BASE}/trusted-cas/{ca_fp}", json={"allowAutoRegistration": True}, headers=hb).status_code == 404
    )
    assert client.delete(f"{BASE}/trusted-cas/{ca_fp}", headers=hb).status_code == 404

    # B cannot get a certificate for A's device, by its id or naming A's tenant.
    for cn in ("aa01", f"{a}:aa01"):
        resp = client.post(f"{BASE}/certificates", json={"csr": pki.csr_pem(cn)}, headers=hb)
        assert resp.status_code == 400, cn
        assert resp.get_json()["message"]
    # Nor register a certificate of A's trusted CA (B does not trust it), nor move one to A's device.
    leaf, _ = pki.leaf_cert("factory device", ca, ca_key)
    resp = client.post(f"{BASE}/certificates", json={"certificateChain": pki.pem(leaf)}, headers=hb)
    assert resp.status_code == 400
    assert "does not end at a CA your tenant trusts" in resp.get_json()["message"]

    # A's records are intact.
    record = client.get(f"{BASE}/certificates/{fp}", headers=ha).get_json()
    assert record["belongsTo"] == {"device": "aa01"} and record["tenant"] == a
    assert client.get(f"{BASE}/trusted-cas/{ca_fp}", headers=ha).get_json()["allowAutoRegistration"] is False
