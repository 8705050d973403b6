"""Parsing of dojot's bodies, fingerprints, paging, fields and filters (x509_mgmt/models.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ondas.errors import Invalid
from tests.unit.x509_mgmt import pki
from x509_mgmt import models as m

pytestmark = pytest.mark.unit

FP = "D3:20:80:C7:89:B6:5D:B9:83:BF:D1:7E:93:6A:F2:CB:0B:57:CF:33:30:ED:9E:4A:7C:05:4D:D4:D0:8E:3D:2F"


@pytest.mark.parametrize(
    "raw",
    [FP, FP.lower(), FP.replace(":", ""), FP.replace(":", "").lower()],
    ids=["dojot", "lower", "bare", "bare-lower"],
)
def test_fingerprints_in_any_accepted_form(raw: str) -> None:
    assert m.parse_fingerprint(raw) == FP


@pytest.mark.parametrize("raw", ["", "xyz", FP[:-3], FP + ":00", "G" * 64, FP.replace(":", "::"), 7])
def test_bad_fingerprints(raw: Any) -> None:
    with pytest.raises(Invalid, match="fingerprint"):
        m.parse_fingerprint(raw)


def test_format_fingerprint() -> None:
    assert m.format_fingerprint(bytes(range(32))).startswith("00:01:02:03")


def test_iso_is_dojots_form() -> None:
    assert m.iso(dt.datetime(2020, 6, 5, 20, 1, 11, 286999, tzinfo=dt.UTC)) == "2020-06-05T20:01:11.286Z"


@pytest.mark.parametrize(
    ("page", "limit", "expected"),
    [
        (None, None, m.PageRequest(1, 25)),
        ("2", "5", m.PageRequest(2, 5)),
        ("1", "1000", m.PageRequest(1, 250)),
    ],
)
def test_paging(page: str | None, limit: str | None, expected: m.PageRequest) -> None:
    assert m.parse_page(page, limit, 25, 250) == expected


@pytest.mark.parametrize(("page", "limit"), [("0", None), ("-1", None), ("x", None), (None, "0"), ("1.5", None)])
def test_bad_paging(page: str | None, limit: str | None) -> None:
    with pytest.raises(Invalid):
        m.parse_page(page, limit, 25, 250)


def test_fields_and_projection() -> None:
    fields = m.parse_fields("pem, createdAt,pem", m.CERTIFICATE_FIELDS)
    assert fields == ("pem", "createdAt")
    assert m.project({"fingerprint": 1, "pem": 2, "createdAt": 3}, fields) == {"pem": 2, "createdAt": 3}
    assert m.parse_fields("", m.CERTIFICATE_FIELDS) is None
    with pytest.raises(Invalid, match="unknown field"):
        m.parse_fields("pem,nope", m.CERTIFICATE_FIELDS)


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("fingerprint", "AB", m.Condition("fingerprint", "eq", "AB")),
        ("fingerprint", "^AF:9B", m.Condition("fingerprint", "prefix", "AF:9B")),
        ("fingerprint", "~:44", m.Condition("fingerprint", "contains", ":44")),
        ("fingerprint", "$2F", m.Condition("fingerprint", "suffix", "2F")),
        ("belongsTo.device", "!abc", m.Condition("belongsTo.device", "ne", "abc")),
        ("issuedByDojotPki", "true", m.Condition("issuedByDojotPki", "eq", True)),
        ("autoRegistered", "!false", m.Condition("autoRegistered", "ne", False)),
        (
            "createdAt",
            ">=2020-06-05T20:01:11Z",
            m.Condition("createdAt", "gte", dt.datetime(2020, 6, 5, 20, 1, 11, tzinfo=dt.UTC)),
        ),
    ],
)
def test_filters(key: str, raw: str, expected: m.Condition) -> None:
    assert m.parse_filters([(key, raw), ("page", "1"), ("fields", "pem")], m.CERTIFICATE_FILTERS) == [expected]


@pytest.mark.parametrize(
    ("key", "raw"), [("color", "blue"), ("issuedByDojotPki", "yes"), ("createdAt", ">soon"), ("subjectDN", "x" * 201)]
)
def test_bad_filters(key: str, raw: str) -> None:
    with pytest.raises(Invalid):
        m.parse_filters([(key, raw)], m.CERTIFICATE_FILTERS)


def test_create_bodies() -> None:
    csr = pki.csr_pem("a1")
    assert m.parse_create({"csr": csr}) == m.CsrRequest(csr=csr, device_id=None)
    assert m.parse_create({"csr": csr, "belongsTo": {"device": "A1"}}) == m.CsrRequest(csr=csr, device_id="a1")
    chain = pki.pem(pki.ca_cert("x")[0])
    parsed = m.parse_create({"certificateChain": chain, "caFingerprint": FP.lower()})
    assert parsed == m.ExternalRequest(chain=chain, ca_fingerprint=FP, device_id=None)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "either"),
        ({"csr": "x", "certificateChain": "y"}, "either"),
        ({"csr": pki.csr_pem("a"), "nope": 1}, "unknown field"),
        ({"csr": pki.csr_pem("a"), "belongsTo": {"device": "a", "application": "b"}}, "application"),
        ({"csr": pki.csr_pem("a"), "belongsTo": {"device": "not hex"}}, "device id"),
        ({"csr": pki.csr_pem("a"), "belongsTo": []}, "must be an object"),
        ({"csr": None}, "must be a string"),
        ({"certificateChain": "-----BEGIN CERTIFICATE-----\nAA\n"}, "PEM format"),
    ],
)
def test_bad_create_bodies(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        m.parse_create(body)


def test_owner_change_and_trusted_ca_bodies() -> None:
    assert m.parse_owner_change({"belongsTo": {"device": None}}).belongs_to == {"device": None}
    assert m.parse_trusted_ca_update({"allowAutoRegistration": True}) is True
    with pytest.raises(Invalid):
        m.parse_trusted_ca_update({"allowAutoRegistration": 1})
    pem = pki.pem(pki.ca_cert("x")[0])
    assert m.parse_trusted_ca({"caPem": pem}) == m.TrustedCaRequest(pem=pem, allow_auto_registration=False)
