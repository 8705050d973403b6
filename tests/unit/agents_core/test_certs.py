from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agents.core.certs import DeviceTrust, RevocationList, certificate_identity
from agents.core.payload import DeviceRef, Drop
from ondas import ca as pki
from ondas.errors import Unavailable
from tests.unit.x509_mgmt import pki as pki_x509

pytestmark = pytest.mark.unit


def peercert(*cns: str, serial: str = "0AB12") -> dict:
    """The shape of ``SSLSocket.getpeercert()`` for a verified certificate."""
    return {"subject": tuple((("commonName", cn),) for cn in cns), "serialNumber": serial}


def test_the_cn_names_the_device_and_the_serial_is_read_as_hex() -> None:
    assert certificate_identity(peercert("t1:dev-1")) == (DeviceRef("t1", "dev-1"), 0xAB12)


@pytest.mark.parametrize(
    "cns", [(), ("dev1",), ("t1:",), (":dev1",), ("T1:dev1",), ("t1:dev/1",), ("t1:dev+",), ("t1:a", "t1:b")]
)
def test_a_cn_that_is_not_one_device_identity_is_refused(cns: tuple[str, ...]) -> None:
    with pytest.raises(Drop) as exc:
        certificate_identity(peercert(*cns))
    assert exc.value.reason == "bad_certificate"


def test_an_unreadable_serial_is_refused() -> None:
    with pytest.raises(Drop, match="serial"):
        certificate_identity(peercert("t1:dev1", serial="zz"))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    pki.ensure_ca(tmp_path)
    pki.write_crl(tmp_path)
    return tmp_path


def test_a_revocation_is_seen_once_the_recheck_interval_passed(ca: Path) -> None:
    issued = pki.issue_device_cert(ca, "t1", "dev1")
    other = pki.issue_device_cert(ca, "t1", "dev2")
    clock = Clock()
    crl = RevocationList(ca / pki.CRL_FILE, recheck_s=1.0, clock=clock)
    assert not crl.is_revoked(int(issued.serial, 16))
    pki.revoke_identity(ca, "t1:dev1")
    clock.now = 0.5
    assert not crl.is_revoked(int(issued.serial, 16))  # not looked at again yet
    clock.now = 1.5
    assert crl.is_revoked(int(issued.serial, 16))
    assert not crl.is_revoked(int(other.serial, 16))


def test_a_crl_that_cannot_be_read_lets_nobody_in(ca: Path) -> None:
    clock = Clock()
    crl = RevocationList(ca / pki.CRL_FILE, recheck_s=1.0, clock=clock)
    assert not crl.is_revoked(1)
    (ca / pki.CRL_FILE).write_text("not a CRL")
    clock.now = 2.0
    with pytest.raises(Unavailable, match="revocation list"):
        crl.is_revoked(1)
    (ca / pki.CRL_FILE).unlink()
    with pytest.raises(Unavailable):
        crl.is_revoked(1)
    pki.write_crl(ca)
    assert not crl.is_revoked(1)


def test_every_crl_of_a_combined_file_counts(tmp_path: Path) -> None:
    """The TLS listeners trust two CAs and read one file with both CRLs (ondas.ca.combine_crls)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        pki.ensure_ca(d)
        pki.write_crl(d)
    in_a, in_b = pki.issue_device_cert(a, "t1", "dev1"), pki.issue_device_cert(b, "t1", "dev2")
    combined = tmp_path / "combined.pem"
    assert pki.combine_crls([a / pki.CRL_FILE, b / pki.CRL_FILE, tmp_path / "missing.pem"], combined)
    assert not pki.combine_crls([a / pki.CRL_FILE, b / pki.CRL_FILE], combined)  # unchanged: not rewritten
    assert len(pki.load_crls(combined.read_bytes())) == 2
    clock = Clock()
    crl = RevocationList(combined, recheck_s=1.0, clock=clock)
    assert not crl.is_revoked(int(in_a.serial, 16)) and not crl.is_revoked(int(in_b.serial, 16))
    pki.revoke_identity(b, "t1:dev2")
    assert pki.combine_crls([a / pki.CRL_FILE, b / pki.CRL_FILE], combined)
    clock.now = 2.0
    assert crl.is_revoked(int(in_b.serial, 16))  # the second CRL of the file
    assert not crl.is_revoked(int(in_a.serial, 16))
    (b / pki.CRL_FILE).write_text("damaged")
    with pytest.raises(ValueError):
        pki.combine_crls([a / pki.CRL_FILE, b / pki.CRL_FILE], combined)
    assert len(pki.load_crls(combined.read_bytes())) == 2  # left as it was


# -- DeviceTrust: which CA issued a certificate decides the identity it carries ----------------------------------
def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return pki_x509.ca_cert(name, days=2)


def _leaf(issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], cn: str) -> x509.Certificate:
    return pki_x509.leaf_cert(cn, issuer[0], issuer[1], days=1)[0]


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _fp(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex().upper()


def _trust_line(tenant: str, cert: x509.Certificate) -> str:
    return f"ca\t{tenant}\t{base64.b64encode(_der(cert)).decode()}\n"


@pytest.fixture()
def cas(tmp_path: Path):
    platform, tenant_a, tenant_b = _ca("platform"), _ca("factory a"), _ca("factory b")
    (tmp_path / "platform.pem").write_bytes(platform[0].public_bytes(serialization.Encoding.PEM))
    return tmp_path, platform, tenant_a, tenant_b


def test_a_platform_certificate_carries_its_cn_and_its_serial_for_the_crl(cas) -> None:
    d, platform, _, _ = cas
    trust = DeviceTrust(d / "platform.pem", d / "missing.tsv")
    leaf = _leaf(platform, "t1:dev1")
    assert trust.identity(_der(leaf)) == (DeviceRef("t1", "dev1"), leaf.serial_number)
    with pytest.raises(Drop, match="CN"):
        trust.identity(_der(_leaf(platform, "no-tenant")))


def test_a_tenant_ca_certificate_acts_only_for_the_device_its_tenant_registered(cas) -> None:
    d, _, tenant_a, tenant_b = cas
    sensor, forged, stray = _leaf(tenant_a, "SN-1"), _leaf(tenant_a, "t2:dev9"), _leaf(tenant_a, "SN-2")
    (d / "trust.tsv").write_text(
        _trust_line("t1", tenant_a[0])
        + _trust_line("t2", tenant_b[0])
        + f"cert\t{_fp(sensor)}\tt1:dev1\n"
        + f"cert\t{_fp(stray)}\tt2:dev9\n"  # registered by t2, but t2 does not trust factory a
    )
    trust = DeviceTrust(d / "platform.pem", d / "trust.tsv")
    assert trust.identity(_der(sensor)) == (DeviceRef("t1", "dev1"), None)  # no serial: not on a CRL
    with pytest.raises(Drop, match="not registered"):
        trust.identity(_der(forged))  # its CN names t2's device: irrelevant, and it is not registered
    with pytest.raises(Drop, match="another tenant"):
        trust.identity(_der(stray))
    with pytest.raises(Drop, match="no CA"):
        trust.identity(_der(_leaf(_ca("unknown"), "t1:dev1")))


def test_the_trust_file_is_reread_when_it_changes(cas) -> None:
    d, _, tenant_a, _ = cas
    now = [0.0]
    sensor = _leaf(tenant_a, "SN-1")
    registered = _trust_line("t1", tenant_a[0]) + f"cert\t{_fp(sensor)}\tt1:dev1\n"
    (d / "trust.tsv").write_text(registered)
    trust = DeviceTrust(d / "platform.pem", d / "trust.tsv", recheck_s=1.0, clock=lambda: now[0])
    assert trust.identity(_der(sensor))[0] == DeviceRef("t1", "dev1")
    (d / "trust.tsv").write_text(_trust_line("t1", tenant_a[0]))  # the registration revoked
    assert trust.identity(_der(sensor))[0] == DeviceRef("t1", "dev1")  # within recheck_s: not re-read yet
    now[0] = 2.0
    with pytest.raises(Drop, match="not registered"):
        trust.identity(_der(sensor))
    (d / "trust.tsv").write_text("")  # the CA deleted
    now[0] = 4.0
    with pytest.raises(Drop, match="no CA"):
        trust.identity(_der(sensor))


def test_an_unreadable_platform_ca_file_refuses_rather_than_trusts(tmp_path: Path) -> None:
    trust = DeviceTrust(tmp_path / "absent.pem", None)
    with pytest.raises(Unavailable):
        trust.identity(_der(_leaf(_ca("x"), "t1:dev1")))
