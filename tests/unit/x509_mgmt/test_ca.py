"""The CA (x509_mgmt/ca.py) and CSR validation: real keys and certificates, no network."""

from __future__ import annotations

import datetime as dt
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ondas.errors import Invalid
from tests.unit.x509_mgmt import pki
from x509_mgmt import ca as camod
from x509_mgmt.ca import CertificateAuthority

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    base = tmp_path_factory.mktemp("ca")
    return CertificateAuthority.open(base / "data", base / "offline")


# --- bootstrap and files ----------------------------------------------------------------------------------------


def test_bootstrap_makes_a_root_and_an_issuing_ca_signed_by_it(authority: CertificateAuthority) -> None:
    root, issuing = authority.root, authority.issuing
    assert camod.issued_by(root, root)
    assert camod.issued_by(issuing, root)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    assert issuing.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert issuing.not_valid_after_utc <= root.not_valid_after_utc
    chain = x509.load_pem_x509_certificates(authority.chain_pem().encode())
    assert [c.subject for c in chain] == [issuing.subject, root.subject]


def test_keys_are_files_only_the_owner_reads_and_the_root_key_is_apart(authority: CertificateAuthority) -> None:
    data, offline = authority.paths.data_dir, authority.paths.root_key_dir
    for key in (data / camod.ISSUING_KEY, offline / camod.ROOT_KEY):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not (data / camod.ROOT_KEY).exists()
    assert stat.S_IMODE(offline.stat().st_mode) == 0o700
    assert "PRIVATE" not in repr(authority)


def test_reopening_loads_the_same_ca_without_the_root_key(tmp_path: Path) -> None:
    first = CertificateAuthority.open(tmp_path / "d", tmp_path / "r")
    (tmp_path / "r" / camod.ROOT_KEY).unlink()  # taken offline
    again = CertificateAuthority.open(tmp_path / "d", tmp_path / "r")
    assert again.issuing_fingerprint == first.issuing_fingerprint
    assert again.root_fingerprint == first.root_fingerprint


def test_encrypted_keys_need_the_passphrase(tmp_path: Path) -> None:
    CertificateAuthority.open(tmp_path / "d", tmp_path / "r", passphrase="s3cret")
    assert b"ENCRYPTED" in (tmp_path / "d" / camod.ISSUING_KEY).read_bytes()
    with pytest.raises(RuntimeError, match="PASSPHRASE"):
        CertificateAuthority.open(tmp_path / "d", tmp_path / "r", passphrase="wrong")


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    CertificateAuthority.open(tmp_path / "d", tmp_path / "r")
    (tmp_path / "d" / camod.ISSUING_KEY).chmod(0o644)
    with pytest.raises(RuntimeError, match="0600"):
        CertificateAuthority.open(tmp_path / "d", tmp_path / "r")


# --- CSR validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(lambda: pki.ec_key(ec.SECP256R1()), id="ec-p256"),
        pytest.param(lambda: pki.ec_key(ec.SECP384R1()), id="ec-p384"),
        pytest.param(lambda: pki.ec_key(ec.SECP521R1()), id="ec-p521"),
        pytest.param(lambda: pki.rsa_key(2048), id="rsa-2048"),
        pytest.param(lambda: pki.rsa_key(3072), id="rsa-3072"),
    ],
)
def test_accepted_keys(key: object) -> None:
    csr = camod.load_csr(pki.csr_pem("a1b2c3", key()))  # type: ignore[operator]
    assert camod.csr_common_name(csr) == "a1b2c3"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        pytest.param(lambda: pki.rsa_key(1024), "at least 2048", id="rsa-1024"),
        pytest.param(lambda: pki.ec_key(ec.SECP256K1()), "curve secp256k1", id="ec-secp256k1"),
        pytest.param(lambda: pki.ec_key(ec.SECP224R1()), "curve secp224r1", id="ec-p224"),
        pytest.param(ed25519.Ed25519PrivateKey.generate, "unsupported key type", id="ed25519"),
        pytest.param(lambda: dsa.generate_private_key(2048), "unsupported key type", id="dsa"),
    ],
)
def test_refused_keys(key: object, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        camod.load_csr(pki.csr_pem("a1b2c3", key()))  # type: ignore[operator]


def test_a_csr_with_a_wrong_signature_is_refused() -> None:
    with pytest.raises(Invalid, match="signature is wrong"):
        camod.load_csr(pki.wrong_signature_csr("a1b2c3"))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not a csr", id="text"),
        pytest.param(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", id="garbage-base64"
        ),
        pytest.param(
            "-----BEGIN CERTIFICATE REQUEST-----\n" + "QUJD" * 10 + "\n-----END CERTIFICATE REQUEST-----\n",
            id="not-der",
        ),
        pytest.param("", id="empty"),
    ],
)
def test_garbage_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(Invalid, match="cannot be read"):
        camod.load_csr(text)


@pytest.mark.parametrize(
    ("cn", "extra"),
    [
        pytest.param(None, [], id="no-cn"),
        pytest.param("a1", [x509.NameAttribute(NameOID.COMMON_NAME, "b2")], id="two-cns"),
    ],
)
def test_the_subject_needs_exactly_one_cn(cn: str | None, extra: list[x509.NameAttribute]) -> None:
    csr = camod.load_csr(pki.csr_pem(cn, pki.ec_key(), extra))
    with pytest.raises(Invalid, match="exactly one CN"):
        camod.csr_common_name(csr)


# --- issuing and the CRL -----------------------------------------------------------------------------------------


def test_a_device_certificate_names_the_identity_and_is_for_clients(authority: CertificateAuthority) -> None:
    key = pki.ec_key()
    csr = camod.load_csr(pki.csr_pem("a1b2c3", key, [x509.NameAttribute(NameOID.COUNTRY_NAME, "BR")]))
    cert = authority.issue(csr, "admin:a1b2c3", 30, NOW)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin:a1b2c3"
    assert not cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)  # the platform builds the subject
    assert camod.issued_by(cert, authority.issuing)
    assert not camod.is_ca(cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc - NOW <= dt.timedelta(days=30)
    assert cert.serial_number.bit_length() > 64
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    camod.verify_chain([cert, authority.issuing], authority.root)


def test_serials_are_random(authority: CertificateAuthority) -> None:
    csr = camod.load_csr(pki.csr_pem("a1", pki.ec_key()))
    serials = {authority.issue(csr, "t:a1", 1, NOW).serial_number for _ in range(20)}
    assert len(serials) == 20


def test_the_crl_is_signed_by_the_issuing_ca_and_lists_the_revoked(authority: CertificateAuthority) -> None:
    csr = camod.load_csr(pki.csr_pem("a1", pki.ec_key()))
    cert = authority.issue(csr, "t:a1", 10, NOW)
    crl = authority.crl([(cert.serial_number, NOW)], 7, NOW, dt.timedelta(days=2))
    assert crl.is_signature_valid(authority.issuing.public_key())  # type: ignore[arg-type]
    assert crl.issuer == authority.issuing.subject
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert crl.next_update_utc is not None and crl.last_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=2)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7


# --- chains -------------------------------------------------------------------------------------------------------


def test_a_chain_through_an_intermediate_verifies_and_a_foreign_one_does_not() -> None:
    root, root_key = pki.ca_cert("Factory Root")
    inter, inter_key = pki.leaf_cert("Factory Line 1", root, root_key, ca=True)
    leaf, _ = pki.leaf_cert("device 7", inter, inter_key)  # type: ignore[arg-type]
    camod.verify_chain([leaf, inter], root)
    camod.verify_chain([leaf, inter, root], root)
    other, _ = pki.ca_cert("Someone Else")
    with pytest.raises(Invalid, match="not signed by the trusted CA"):
        camod.verify_chain([leaf, inter], other)
    other_inter, _ = pki.leaf_cert("Factory Line 2", root, root_key, ca=True)
    with pytest.raises(Invalid, match="not signed by certificate 2"):
        camod.verify_chain([leaf, other_inter], root)


def test_subject_dn_is_in_certificate_order() -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DigiCert Inc"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Root"),
        ]
    )
    assert camod.subject_dn(name) == "C=US, O=DigiCert Inc, CN=Root"


# --- the device listeners' trust files ----------------------------------------------------------------------------


def test_the_subject_hash_is_the_one_openssl_looks_a_ca_up_by(tmp_path: Path) -> None:
    ca, _ = pki.ca_cert("Factory Root Ü")
    (tmp_path / "ca.pem").write_text(pki.pem(ca))
    openssl = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash", "-in", str(tmp_path / "ca.pem")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert camod.subject_hash(ca) == openssl.stdout.strip()


def test_device_trust_files_follow_the_registered_cas_and_certificates(tmp_path: Path) -> None:
    (a, _), (b, _) = pki.ca_cert("Factory A"), pki.ca_cert("Factory B")
    fp = "AB:" * 31 + "CD"
    assert camod.write_device_trust(
        tmp_path, [("t1", pki.pem(a)), ("t2", pki.pem(b)), ("t3", pki.pem(a))], [(fp, "t1", "dev1")]
    )
    lines = (tmp_path / camod.TRUST_FILE).read_text().splitlines()
    assert [line.split("\t")[:2] for line in lines] == [
        ["ca", "t1"],
        ["ca", "t2"],
        ["ca", "t3"],
        ["cert", fp.replace(":", "")],
    ]
    assert lines[-1].endswith("\tt1:dev1")
    hashed = sorted(p.name for p in (tmp_path / camod.TRUSTED_DIR).iterdir())
    assert hashed == sorted([f"{camod.subject_hash(a)}.0", f"{camod.subject_hash(b)}.0"])  # a once, for t1 and t3
    # Nothing changed: nothing rewritten.
    assert not camod.write_device_trust(
        tmp_path, [("t1", pki.pem(a)), ("t2", pki.pem(b)), ("t3", pki.pem(a))], [(fp, "t1", "dev1")]
    )
    # B deleted and the certificate revoked: both leave the files.
    assert camod.write_device_trust(tmp_path, [("t1", pki.pem(a))], [])
    assert [p.name for p in (tmp_path / camod.TRUSTED_DIR).iterdir()] == [f"{camod.subject_hash(a)}.0"]
    assert (tmp_path / camod.TRUST_FILE).read_text().count("\n") == 1
