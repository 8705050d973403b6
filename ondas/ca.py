"""The platform's certificate authority: the CA itself, the TLS server certificate it signs for the MQTT and
HTTP agents' listeners, device client certificates with their records, and the revocation list.

A library module, so that the services that need it at run time may import it (the MQTT agent revokes a removed
device's certificates); the local runtime tool wraps it (``python -m ondasctl device-cert``, ``make up``'s
bootstrap in ``ondasctl.pki``). The ``x509_mgmt`` service is the platform's device CA now; this one stays trusted
next to it (the TLS listeners get both CAs and both CRLs, :func:`combine_crls`), and its own server certificate is
no longer used by ``make up`` (x509_mgmt's issuing CA signs the listeners'). Its files, all in one directory
(``<data>/pki/`` locally):

- ``ca.pem`` / ``ca.key``: the CA; ``server.pem`` / ``server.key``: the TLS listeners' server certificate.
- ``crl.pem``: the CA's certificate revocation list. Always present (empty at first), so the mutual-TLS
  listener has its ``crlfile`` from the start; rewritten at every start and every revocation.
- ``issued.json``: one record per issued device certificate (serial, CN, not_after, revoked?). Every change is
  a read-modify-write under an exclusive lock (``issued.lock``) and lands atomically (temporary file, then
  rename), so the CLI and the MQTT agent can both change it.
- ``devices/<tenant>/<device-id>/cert.pem`` and ``key.pem``: a device's newest certificate, by default.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ondas.errors import Invalid
from ondas.tenant import validate_tenant

CA_CERT, CA_KEY = "ca.pem", "ca.key"
CRL_FILE = "crl.pem"
RECORDS_FILE = "issued.json"
LOCK_FILE = "issued.lock"
DEVICE_CERT_DAYS = 365
# A CRL past its nextUpdate makes OpenSSL refuse every client certificate: keep it long, and rewrite it at every
# start (mosquitto_prepare) and every revocation.
CRL_VALID_DAYS = 365
# What a device id may be (the same rule as the agents': no MQTT wildcards, separators or control characters).
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    """Write ``key`` to ``path`` as unencrypted PKCS#8 PEM, readable by its owner only."""
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` so readers see either the old or the new content, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_ca(pki_dir: Path) -> tuple[Path, Path]:
    """Return (ca.pem, ca.key), creating the CA the first time."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca_cert_p, ca_key_p = pki_dir / CA_CERT, pki_dir / CA_KEY
    if ca_cert_p.exists():
        return ca_cert_p, ca_key_p
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ondas local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private_key(ca_key_p, ca_key)
    ca_cert_p.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (pki_dir / "server.pem").unlink(missing_ok=True)  # signed by a CA that is gone
    return ca_cert_p, ca_key_p


def _load_ca(pki_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert_p, ca_key_p = ensure_ca(pki_dir)
    loaded = serialization.load_pem_private_key(ca_key_p.read_bytes(), None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_key_p} is not an EC key")
    return x509.load_pem_x509_certificate(ca_cert_p.read_bytes()), loaded


def ensure_ca_and_server_cert(pki_dir: Path, hostnames: list[str]) -> tuple[Path, Path, Path]:
    """Return (ca.pem, server.pem, server.key), creating them the first time."""
    ca_cert_p, _ = ensure_ca(pki_dir)
    srv_cert_p, srv_key_p = pki_dir / "server.pem", pki_dir / "server.key"
    if not srv_cert_p.exists():
        ca_cert, ca_key = _load_ca(pki_dir)
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for h in hostnames:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write_private_key(srv_key_p, key)
        srv_cert_p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca_cert_p, srv_cert_p, srv_key_p


# -- device certificates and their records --------------------------------------------------------------------
@dataclass(frozen=True)
class CertRecord:
    """One issued device certificate. ``serial`` is lowercase hex, times are ISO 8601 UTC."""

    serial: str
    cn: str
    not_after: str
    issued_at: str
    revoked: bool = False
    revoked_at: str | None = None


@dataclass(frozen=True)
class IssuedCert:
    cn: str
    serial: str
    not_after: str
    cert: Path
    key: Path
    ca: Path


def device_identity(tenant: str, device_id: str) -> str:
    """The certificate CN (and MQTT username) of a device: ``<tenant>:<device-id>``; raises Invalid."""
    validate_tenant(tenant)
    if not DEVICE_ID_RE.match(device_id):
        raise Invalid(
            "device ids are 1-128 characters of letters, digits, '_', '.' and '-', starting with a letter or digit",
            device=device_id,
        )
    return f"{tenant}:{device_id}"


@contextlib.contextmanager
def _records_locked(pki_dir: Path) -> Iterator[dict[str, Any]]:
    """The records file's content under an exclusive lock; what the block leaves in it is written back."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    with open(pki_dir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = _read_records_file(pki_dir)
            yield data
            _write_atomic(pki_dir / RECORDS_FILE, (json.dumps(data, indent=2) + "\n").encode(), 0o600)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_records_file(pki_dir: Path) -> dict[str, Any]:
    path = pki_dir / RECORDS_FILE
    if not path.exists():
        return {"crl_number": 0, "certificates": []}
    data: dict[str, Any] = json.loads(path.read_text())
    data.setdefault("crl_number", 0)
    data.setdefault("certificates", [])
    return data


def read_records(pki_dir: Path) -> list[CertRecord]:
    """Every issued device certificate, oldest first."""
    return [CertRecord(**r) for r in _read_records_file(pki_dir)["certificates"]]


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds")


def issue_device_cert(
    pki_dir: Path, tenant: str, device_id: str, out_dir: Path | None = None, days: int = DEVICE_CERT_DAYS
) -> IssuedCert:
    """A client certificate for a device (CN ``<tenant>:<device-id>``, signed by the platform CA), recorded in
    the records file. Writes ``cert.pem`` and ``key.pem`` (0600) into ``out_dir`` (default
    ``<pki>/devices/<tenant>/<device-id>/``), replacing what was there; earlier certificates stay valid until
    revoked."""
    cn = device_identity(tenant, device_id)
    if days < 1:
        raise Invalid("a certificate must be valid for at least one day", days=days)
    ca_cert, ca_key = _load_ca(pki_dir)
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = out_dir or pki_dir / "devices" / tenant / device_id
    out.mkdir(parents=True, exist_ok=True)
    cert_p, key_p = out / "cert.pem", out / "key.pem"
    record = CertRecord(serial=format(serial, "x"), cn=cn, not_after=_iso(not_after), issued_at=_iso(now))
    with _records_locked(pki_dir) as data:
        data["certificates"].append(asdict(record))
        key_bytes = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_atomic(key_p, key_bytes, 0o600)
        _write_atomic(cert_p, cert.public_bytes(serialization.Encoding.PEM))
    return IssuedCert(
        cn=cn, serial=record.serial, not_after=record.not_after, cert=cert_p, key=key_p, ca=pki_dir / CA_CERT
    )


# -- revocation -----------------------------------------------------------------------------------------------
def _write_crl(pki_dir: Path, data: dict[str, Any], crl_file: Path | None = None) -> Path:
    """Sign and write the CRL from ``data`` (the records, lock held); bumps its CRL number."""
    ca_cert, ca_key = _load_ca(pki_dir)
    now = dt.datetime.now(dt.UTC)
    data["crl_number"] = int(data.get("crl_number", 0)) + 1
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=CRL_VALID_DAYS))
        .add_extension(x509.CRLNumber(data["crl_number"]), critical=False)
    )
    for r in data["certificates"]:
        if r.get("revoked"):
            revoked_at = dt.datetime.fromisoformat(r.get("revoked_at") or r["issued_at"])
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(int(r["serial"], 16)).revocation_date(revoked_at).build()
            )
    path = crl_file or pki_dir / CRL_FILE
    _write_atomic(path, builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


def write_crl(pki_dir: Path, crl_file: Path | None = None) -> Path:
    """(Re)write the CRL (default ``<pki>/crl.pem``) from the records: every revoked certificate, signed by the
    CA, valid for CRL_VALID_DAYS. Empty when nothing was revoked."""
    with _records_locked(pki_dir) as data:
        return _write_crl(pki_dir, data, crl_file)


def revoke_identity(pki_dir: Path, cn: str, crl_file: Path | None = None) -> tuple[list[str], list[str]]:
    """Revoke every certificate issued to ``cn`` and rewrite the CRL when that revoked anything.

    Returns (newly revoked serials, every serial ever issued to ``cn``): a caller that finds the second list
    non-empty must make the broker reload the CRL, even when the first is empty (a retry after a failure)."""
    newly, every, _ = _revoke(pki_dir, lambda r: bool(r["cn"] == cn), crl_file)
    return newly, every


def revoke_tenant(
    pki_dir: Path, tenant: str, issued_before: dt.datetime | None = None, crl_file: Path | None = None
) -> tuple[list[str], list[str], list[str]]:
    """Revoke every certificate of a deleted tenant's devices (CN ``<tenant>:...``), or only those issued before
    ``issued_before``, and rewrite the CRL when that revoked anything. Returns (newly revoked serials, every
    matching serial, the identities they were issued to)."""
    prefix = validate_tenant(tenant) + ":"

    def match(r: dict[str, Any]) -> bool:
        if not str(r["cn"]).startswith(prefix):
            return False
        return issued_before is None or dt.datetime.fromisoformat(r["issued_at"]) < issued_before

    return _revoke(pki_dir, match, crl_file)


def _revoke(
    pki_dir: Path, match: Callable[[dict[str, Any]], bool], crl_file: Path | None
) -> tuple[list[str], list[str], list[str]]:
    with _records_locked(pki_dir) as data:
        now = _iso(dt.datetime.now(dt.UTC))
        newly: list[str] = []
        every: list[str] = []
        cns: list[str] = []
        for r in data["certificates"]:
            if not match(r):
                continue
            every.append(r["serial"])
            if r["cn"] not in cns:
                cns.append(r["cn"])
            if not r.get("revoked"):
                r["revoked"], r["revoked_at"] = True, now
                newly.append(r["serial"])
        if newly or not (crl_file or pki_dir / CRL_FILE).exists():
            _write_crl(pki_dir, data, crl_file)
        return newly, every, cns


# -- several CAs' CRLs in one file ----------------------------------------------------------------------------
_CRL_BLOCK = re.compile(r"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.S)


def load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    """Every CRL of a PEM file (OpenSSL's ``crlfile`` loads each one of a file); raises ValueError when there is
    none or one is damaged."""
    blocks = _CRL_BLOCK.findall(data.decode("ascii", errors="replace"))
    if not blocks:
        raise ValueError("no CRL in the file")
    return [x509.load_pem_x509_crl(b.encode()) for b in blocks]


def combine_crls(sources: list[Path], target: Path) -> bool:
    """Write the CRLs of ``sources`` (PEM files, each with one CRL or more; a missing one is skipped) one after
    the other into ``target`` (atomically): the CRL file of a TLS listener that trusts several CAs. True when
    ``target`` changed. A damaged source raises ValueError and leaves ``target`` as it was."""
    blocks: list[str] = []
    for src in sources:
        try:
            data = src.read_bytes()
        except FileNotFoundError:
            continue
        for crl in load_crls(data):
            blocks.append(crl.public_bytes(serialization.Encoding.PEM).decode())
    new = "".join(blocks).encode()
    try:
        if target.read_bytes() == new:
            return False
    except FileNotFoundError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(target, new)
    return True
