from __future__ import annotations

from pathlib import Path

import pytest

from agents.core.certs import RevocationList, certificate_identity
from agents.core.payload import DeviceRef, Drop
from ondas import ca as pki
from ondas.errors import Unavailable

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
