"""The platform CA's device certificates, records file and CRL (ondas/ca.py): files only, no servers."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ondas import ca as pki
from ondas.errors import Invalid

pytestmark = pytest.mark.unit


def load_crl(path: Path) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(path.read_bytes())


def ca_cert(pki_dir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((pki_dir / pki.CA_CERT).read_bytes())


def test_a_device_certificate_names_the_device_and_is_signed_by_the_ca(tmp_path):
    issued = pki.issue_device_cert(tmp_path, "acme", "dev-1")
    cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "acme:dev-1"
    assert issued.cn == "acme:dev-1" and issued.ca == tmp_path / pki.CA_CERT
    ca = ca_cert(tmp_path)
    cert.verify_directly_issued_by(ca)  # raises when the CA did not sign it
    assert format(cert.serial_number, "x") == issued.serial
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert issued.key.stat().st_mode & 0o077 == 0, "the private key is readable by others"
    key = serialization.load_pem_private_key(issued.key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_the_default_and_an_explicit_output_directory(tmp_path):
    default = pki.issue_device_cert(tmp_path / "pki", "acme", "dev-1")
    assert default.cert == tmp_path / "pki" / "devices" / "acme" / "dev-1" / "cert.pem"
    explicit = pki.issue_device_cert(tmp_path / "pki", "acme", "dev-1", out_dir=tmp_path / "out")
    assert explicit.cert == tmp_path / "out" / "cert.pem" and explicit.key == tmp_path / "out" / "key.pem"
    assert explicit.serial != default.serial


def test_the_validity_is_the_requested_one(tmp_path):
    issued = pki.issue_device_cert(tmp_path, "acme", "dev-1", days=30)
    cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
    days = (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
    assert days in (29, 30)
    assert dt.datetime.fromisoformat(issued.not_after) == cert.not_valid_after_utc


@pytest.mark.parametrize(
    ("tenant", "device_id", "what"),
    [
        ("Acme", "dev1", "tenant"),
        ("", "dev1", "tenant"),
        ("acme", "", "device"),
        ("acme", "a/b", "device"),
        ("acme", "a:b", "device"),
        ("acme", "+", "device"),
        ("acme", "#", "device"),
    ],
    ids=["uppercase-tenant", "empty-tenant", "empty-id", "slash", "colon", "plus", "hash"],
)
def test_identities_no_device_could_log_in_with_are_refused(tmp_path, tenant, device_id, what):
    with pytest.raises(Invalid) as info:
        pki.issue_device_cert(tmp_path, tenant, device_id)
    assert what in str(info.value)
    assert pki.read_records(tmp_path) == []


def test_the_records_keep_every_issued_certificate(tmp_path):
    a1 = pki.issue_device_cert(tmp_path, "acme", "dev1")
    a2 = pki.issue_device_cert(tmp_path, "acme", "dev1")
    b = pki.issue_device_cert(tmp_path, "other", "dev1")
    records = pki.read_records(tmp_path)
    assert [(r.serial, r.cn, r.revoked) for r in records] == [
        (a1.serial, "acme:dev1", False),
        (a2.serial, "acme:dev1", False),
        (b.serial, "other:dev1", False),
    ]
    assert records[0].not_after == a1.not_after
    # The file on disk is plain JSON that an operator can read.
    on_disk = json.loads((tmp_path / pki.RECORDS_FILE).read_text())
    assert {c["serial"] for c in on_disk["certificates"]} == {a1.serial, a2.serial, b.serial}
    assert not list(tmp_path.glob(f".{pki.RECORDS_FILE}.*")), "a temporary file was left behind"


def test_the_first_crl_is_empty_and_signed_by_the_ca(tmp_path):
    path = pki.write_crl(tmp_path)
    assert path == tmp_path / pki.CRL_FILE
    crl = load_crl(path)
    assert len(crl) == 0
    assert crl.is_signature_valid(ca_cert(tmp_path).public_key())
    assert crl.issuer == ca_cert(tmp_path).subject
    assert crl.next_update_utc is not None and crl.next_update_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=30)


def test_revoking_an_identity_revokes_all_its_certificates_and_only_them(tmp_path):
    a1 = pki.issue_device_cert(tmp_path, "acme", "dev1")
    a2 = pki.issue_device_cert(tmp_path, "acme", "dev1")
    keep = pki.issue_device_cert(tmp_path, "acme", "dev10")  # a prefix of another identity is not that identity
    other = pki.issue_device_cert(tmp_path, "other", "dev1")
    before = load_crl(pki.write_crl(tmp_path))

    newly, every = pki.revoke_identity(tmp_path, "acme:dev1")

    assert sorted(newly) == sorted(every) == sorted([a1.serial, a2.serial])
    crl = load_crl(tmp_path / pki.CRL_FILE)
    assert crl.is_signature_valid(ca_cert(tmp_path).public_key())
    assert {format(r.serial_number, "x") for r in crl} == {a1.serial, a2.serial}
    for kept in (keep, other):
        assert crl.get_revoked_certificate_by_serial_number(int(kept.serial, 16)) is None
    # The CRL number grows with every new CRL.
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    revoked = {r.serial: r for r in pki.read_records(tmp_path)}
    assert revoked[a1.serial].revoked and revoked[a1.serial].revoked_at
    assert not revoked[keep.serial].revoked and not revoked[other.serial].revoked


def test_revoking_again_revokes_nothing_new_but_names_the_certificates(tmp_path):
    a = pki.issue_device_cert(tmp_path, "acme", "dev1")
    pki.revoke_identity(tmp_path, "acme:dev1")
    assert pki.revoke_identity(tmp_path, "acme:dev1") == ([], [a.serial])
    assert pki.revoke_identity(tmp_path, "acme:never-issued") == ([], [])
    assert {format(r.serial_number, "x") for r in load_crl(tmp_path / pki.CRL_FILE)} == {a.serial}


def test_a_crl_rewritten_later_keeps_the_revoked_certificates(tmp_path):
    a = pki.issue_device_cert(tmp_path, "acme", "dev1")
    pki.revoke_identity(tmp_path, "acme:dev1")
    pki.issue_device_cert(tmp_path, "acme", "dev2")
    crl = load_crl(pki.write_crl(tmp_path))  # what every start does
    assert {format(r.serial_number, "x") for r in crl} == {a.serial}


def test_the_crl_can_be_written_elsewhere(tmp_path):
    a = pki.issue_device_cert(tmp_path / "pki", "acme", "dev1")
    target = tmp_path / "broker" / "crl.pem"
    target.parent.mkdir()
    pki.revoke_identity(tmp_path / "pki", "acme:dev1", crl_file=target)
    assert {format(r.serial_number, "x") for r in load_crl(target)} == {a.serial}


def test_concurrent_issuers_lose_no_record(tmp_path):
    pki.ensure_ca(tmp_path)
    serials: list[str] = []
    errors: list[BaseException] = []

    def issue(n: int) -> None:
        try:
            serials.append(pki.issue_device_cert(tmp_path, "acme", f"dev{n}", out_dir=tmp_path / f"o{n}").serial)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=issue, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(r.serial for r in pki.read_records(tmp_path)) == sorted(serials)
