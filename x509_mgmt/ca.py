"""The platform's certificate authority: a root CA and an issuing (intermediate) CA that signs device certificates
and the CRL, on the ``cryptography`` package.

Why two: the root is the trust anchor devices and brokers install; its key signs only the issuing CA (at
bootstrap, and again when the issuing CA is renewed or replaced), so it is written to a directory of its own
(``X509_MGMT_ROOT_KEY_DIR``) that can be moved offline once the service has bootstrapped: the running service
never loads it. The issuing CA's key is the one in use, every day; if it ever leaks, the root replaces it and
every device keeps the same trust anchor.

Files (keys mode 0600, in directories mode 0700; encrypted with ``X509_MGMT_KEY_PASSPHRASE`` when it is set):

- ``<data dir>/issuing-ca.key``, ``issuing-ca.pem``: the issuing CA;
- ``<data dir>/root-ca.pem``: the root certificate; ``<data dir>/ca-chain.pem``: issuing CA then root (what a
  TLS listener's CA file holds to verify device certificates);
- ``<root key dir>/root-ca.key``: the root's key (only at bootstrap);
- ``<data dir>/crl.pem``: the latest CRL the service generated (for a broker that reads a file).

Private keys never leave this module except into those files. Serial numbers are random 159-bit integers
(``x509.random_serial_number``).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import datetime as dt
import fcntl
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ondas.errors import Invalid
from x509_mgmt.models import format_fingerprint

ROOT_CERT = "root-ca.pem"
ROOT_KEY = "root-ca.key"
ISSUING_CERT = "issuing-ca.pem"
ISSUING_KEY = "issuing-ca.key"
CHAIN_FILE = "ca-chain.pem"
CRL_FILE = "crl.pem"
# What the device listeners trust beyond the platform CAs (written by the relay's upkeep, read by the broker's
# ondas_certauth plugin and the HTTP agent): one line per tenant CA ``ca TAB <tenant> TAB <base64 DER>`` and per
# external certificate that belongs to a device ``cert TAB <SHA-256 hex> TAB <tenant>:<device-id>``.
TRUST_FILE = "device-trust.tsv"
# The tenant CAs again, as an OpenSSL hashed directory (``<subject hash>.<n>``): the listeners' ``capath``, which
# OpenSSL searches at each handshake, so a CA registered while they run is trusted without a restart.
TRUSTED_DIR = "trusted-cas"
LOCK_FILE = ".ca.lock"

ROOT_CN = "Ondas Root CA"
ISSUING_CN = "Ondas Device Issuing CA"
ORGANIZATION = "Ondas IoT Platform"
ROOT_DAYS = 20 * 365
ISSUING_DAYS = 10 * 365
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
#: Certificates are backdated this much, for devices whose clocks run a little behind.
BACKDATE = dt.timedelta(minutes=5)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def fingerprint(cert: x509.Certificate) -> str:
    return format_fingerprint(cert.fingerprint(hashes.SHA256()))


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def subject_dn(name: x509.Name) -> str:
    """A name as dojot shows it: its attributes in certificate order, ``C=US, O=DigiCert Inc, CN=...``."""
    return ", ".join(attr.rfc4514_string() for rdn in name.rdns for attr in rdn)


def subject_of(cert: x509.Certificate) -> x509.Name:
    try:
        return cert.subject
    except ValueError as exc:
        raise Invalid(f"the certificate's subject cannot be read ({exc})") from exc


# --- input: CSRs and certificates ---------------------------------------------------------------------------------


def load_csr(text: str) -> x509.CertificateSigningRequest:
    """A CSR from PEM that is well formed, correctly self-signed and has an acceptable key; 400 otherwise."""
    try:
        csr = x509.load_pem_x509_csr(text.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise Invalid(f"the CSR cannot be read: it is not a valid PKCS#10 request in PEM format ({exc})") from exc
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise Invalid(f"the CSR's signature cannot be checked ({exc})") from exc
    if not valid:
        raise Invalid("the CSR's signature is wrong: it was not signed with the key it holds")
    check_public_key(_public_key(csr))
    return csr


def _public_key(item: x509.CertificateSigningRequest | x509.Certificate) -> object:
    try:
        return item.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise Invalid(f"the public key cannot be read ({exc})") from exc


def check_public_key(key: object) -> None:
    """RSA of 2048 to 8192 bits, or EC on P-256, P-384 or P-521 (dojot's rule); 400 for anything else."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise Invalid(f"the RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required")
        if key.key_size > MAX_RSA_BITS:
            raise Invalid(f"the RSA key has {key.key_size} bits; at most {MAX_RSA_BITS} are accepted")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in CURVES:
            raise Invalid(f"the EC key is on curve {key.curve.name}; accepted curves are P-256, P-384 and P-521")
        return
    raise Invalid(
        f"unsupported key type {type(key).__name__.lstrip('_')}: use RSA (at least 2048 bits) or EC (P-256, "
        "P-384, P-521)"
    )


def csr_common_name(csr: x509.CertificateSigningRequest) -> str:
    try:
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError as exc:
        raise Invalid(f"the CSR's subject cannot be read ({exc})") from exc
    if len(names) != 1:
        raise Invalid("the CSR's subject must hold exactly one CN (the device id)")
    value = names[0].value
    return value if isinstance(value, str) else value.decode(errors="replace")


def load_certificates(text: str, what: str = "certificateChain") -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(text.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise Invalid(f"{what} cannot be read: not valid X.509 certificates in PEM format ({exc})") from exc
    if not certs:
        raise Invalid(f"{what} holds no certificate")
    return certs


def is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    except ValueError as exc:  # duplicate or malformed extensions
        raise Invalid(f"the certificate's extensions cannot be read ({exc})") from exc
    return bool(bc.ca)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``cert`` names ``issuer`` as its issuer and carries a valid signature of its key."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def verify_chain(chain: Sequence[x509.Certificate], anchor: x509.Certificate) -> None:
    """Each certificate of ``chain`` is signed by the next, and the last by ``anchor`` (or is ``anchor``)."""
    certs = list(chain)
    if len(certs) > 1 and certs[-1].fingerprint(hashes.SHA256()) == anchor.fingerprint(hashes.SHA256()):
        certs = certs[:-1]
    for i, cert in enumerate(certs):
        issuer = certs[i + 1] if i + 1 < len(certs) else anchor
        if i + 1 < len(certs) and not is_ca(issuer):
            raise Invalid(f"certificate {i + 2} of the chain is not a CA certificate")
        if not issued_by(cert, issuer):
            raise Invalid(
                f"certificate {i + 1} of the chain is not signed by "
                + (f"certificate {i + 2} of the chain" if i + 1 < len(certs) else "the trusted CA")
            )


# --- the CA -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaPaths:
    data_dir: Path
    root_key_dir: Path

    def data(self, name: str) -> Path:
        return self.data_dir / name


class CertificateAuthority:
    """The loaded issuing CA (and the root's certificate). Build with :meth:`open`."""

    def __init__(self, root: x509.Certificate, issuing: x509.Certificate, key: PrivateKey, paths: CaPaths) -> None:
        self.root = root
        self.issuing = issuing
        self._key = key
        self.paths = paths

    def __repr__(self) -> str:  # never the key
        return f"CertificateAuthority(issuing={self.issuing.subject.rfc4514_string()!r})"

    @classmethod
    def open(cls, data_dir: Path, root_key_dir: Path, passphrase: str = "") -> CertificateAuthority:
        """Load the issuing CA, bootstrapping the root and the issuing CA first when there is none (serialised
        with a file lock, so several workers starting at once make one CA)."""
        paths = CaPaths(Path(data_dir), Path(root_key_dir))
        _private_dir(paths.data_dir)
        with _locked(paths.data(LOCK_FILE)):
            if not paths.data(ISSUING_KEY).exists():
                _bootstrap(paths, passphrase)
            root = x509.load_pem_x509_certificate(paths.data(ROOT_CERT).read_bytes())
            issuing = x509.load_pem_x509_certificate(paths.data(ISSUING_CERT).read_bytes())
            key = _load_key(paths.data(ISSUING_KEY), passphrase)
        if _spki(key.public_key()) != _spki(issuing.public_key()):
            raise RuntimeError(f"{paths.data(ISSUING_KEY)} is not the key of {paths.data(ISSUING_CERT)}")
        return cls(root, issuing, key, paths)

    # -- what the API shows ----------------------------------------------------------------------------------
    @property
    def issuing_fingerprint(self) -> str:
        return fingerprint(self.issuing)

    @property
    def root_fingerprint(self) -> str:
        return fingerprint(self.root)

    def chain_pem(self) -> str:
        """The issuing CA's certificate, then the root's."""
        return pem(self.issuing) + pem(self.root)

    def is_platform_ca(self, cert: x509.Certificate) -> bool:
        fp = fingerprint(cert)
        if fp in (self.issuing_fingerprint, self.root_fingerprint):
            return True
        return cert.subject in (self.issuing.subject, self.root.subject)

    # -- signing -----------------------------------------------------------------------------------------------
    def issue(
        self, csr: x509.CertificateSigningRequest, identity: str, days: int, now: dt.datetime
    ) -> x509.Certificate:
        """A client certificate for ``identity`` (the CN, ``<tenant>:<device-id>``) with the CSR's key (checked by
        :func:`load_csr`), valid ``days`` days (never past the issuing CA)."""
        key = csr.public_key()
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise Invalid("unsupported key type")
        not_after = min(now + dt.timedelta(days=days), self.issuing.not_valid_after_utc)
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=isinstance(key, rsa.RSAPublicKey),
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                        x509.NameAttribute(NameOID.COMMON_NAME, identity),
                    ]
                )
            )
            .issuer_name(self.issuing.subject)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
            .add_extension(_aki(self.issuing), critical=False)
        )
        return builder.sign(self._key, _hash_for(self._key))

    def issue_server(
        self, key: ec.EllipticCurvePublicKey, names: Sequence[x509.GeneralName], days: int, now: dt.datetime
    ) -> x509.Certificate:
        """A TLS server certificate (the platform's device listeners: Mosquitto's mutual-TLS listener, the HTTP
        agent's TLS listener) for ``names`` (the first is also the CN), so that a device trusting the chain of
        ``GET /ca`` (dojot's certreq writes it to ``ca/ca.pem``) verifies the broker. The local runtime calls it
        at ``make up``; the API never does."""
        first = names[0].value
        not_after = min(now + dt.timedelta(days=days), self.issuing.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(str(first)))
            .issuer_name(self.issuing.subject)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
            .add_extension(_aki(self.issuing), critical=False)
        )
        return builder.sign(self._key, _hash_for(self._key))

    def crl(
        self, revoked: Sequence[tuple[int, dt.datetime]], number: int, now: dt.datetime, valid_for: dt.timedelta
    ) -> x509.CertificateRevocationList:
        """The issuing CA's CRL: ``revoked`` (serial, revocation time), CRL number ``number``, next update after
        ``valid_for``."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.issuing.subject)
            .last_update(now)
            .next_update(now + valid_for)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(_aki(self.issuing), critical=False)
        )
        for serial, at in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at).build()
            )
        return builder.sign(self._key, _hash_for(self._key))

    def write_crl_file(self, crl_pem: str) -> Path:
        path = self.paths.data(CRL_FILE)
        _write_atomic(path, crl_pem.encode(), 0o644)
        return path


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _ca_cert(
    subject: x509.Name,
    key: PrivateKey,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    issuer_cert: x509.Certificate | None,
    path_length: int,
    days: int,
    now: dt.datetime,
) -> x509.Certificate:
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = (
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        if issuer_cert is None
        else _aki(issuer_cert)
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
        .sign(issuer_key, _hash_for(issuer_key))
    )


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _bootstrap(paths: CaPaths, passphrase: str) -> None:
    """Make the root (or reuse it when its key is there) and a new issuing CA signed by it."""
    now = dt.datetime.now(dt.UTC)
    root_key_p = paths.root_key_dir / ROOT_KEY
    root_cert_p = paths.data(ROOT_CERT)
    if root_cert_p.exists():
        if not root_key_p.exists():
            raise RuntimeError(
                f"the issuing CA is missing and the root's key is not at {root_key_p}: put the root key back there "
                "(it signs a new issuing CA) or remove the CA files to start a new CA"
            )
        root_key = _load_key(root_key_p, passphrase)
        root = x509.load_pem_x509_certificate(root_cert_p.read_bytes())
    else:
        root_key = ec.generate_private_key(ec.SECP384R1())
        root = _ca_cert(_name(ROOT_CN), root_key, _name(ROOT_CN), root_key, None, 1, ROOT_DAYS, now)
        _private_dir(paths.root_key_dir)
        _write_key(root_key_p, root_key, passphrase)
        _write_atomic(root_cert_p, pem(root).encode(), 0o644)
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing = _ca_cert(_name(ISSUING_CN), issuing_key, root.subject, root_key, root, 0, ISSUING_DAYS, now)
    _write_key(paths.data(ISSUING_KEY), issuing_key, passphrase)
    _write_atomic(paths.data(ISSUING_CERT), pem(issuing).encode(), 0o644)
    _write_atomic(paths.data(CHAIN_FILE), (pem(issuing) + pem(root)).encode(), 0o644)


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def _write_key(path: Path, key: PrivateKey, passphrase: str) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    _write_atomic(path, data, 0o600)


def _load_key(path: Path, passphrase: str) -> PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise RuntimeError(f"{path} is readable by others (mode {mode:o}); it must be 0600")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), passphrase.encode() if passphrase else None)
    except (TypeError, ValueError) as exc:
        raise RuntimeError(f"cannot load {path}: wrong or missing X509_MGMT_KEY_PASSPHRASE? ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise RuntimeError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def _spki(key: object) -> bytes:
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return b""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# --- the device listeners' trust files ---------------------------------------------------------------------------


def subject_hash(cert: x509.Certificate) -> str:
    """OpenSSL's subject name hash of ``cert`` (``openssl x509 -subject_hash``): the file name a hashed CA
    directory needs. Computed by the system's libcrypto, the library the listeners verify with."""
    lib = _libcrypto()
    der = cert.public_bytes(serialization.Encoding.DER)
    buf = ctypes.create_string_buffer(der, len(der))
    ptr = ctypes.c_char_p(ctypes.addressof(buf))
    handle = lib.d2i_X509(None, ctypes.byref(ptr), len(der))
    if not handle:
        raise ValueError("libcrypto cannot parse the certificate")
    try:
        return f"{lib.X509_subject_name_hash(handle) & 0xFFFFFFFF:08x}"
    finally:
        lib.X509_free(handle)


_LIBCRYPTO: ctypes.CDLL | None = None


def _libcrypto() -> ctypes.CDLL:
    global _LIBCRYPTO
    if _LIBCRYPTO is None:
        name = ctypes.util.find_library("crypto")
        if not name:
            raise RuntimeError("the system's libcrypto (OpenSSL) is not installed")
        lib = ctypes.CDLL(name)
        lib.d2i_X509.restype = ctypes.c_void_p
        lib.d2i_X509.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
        lib.X509_subject_name_hash.restype = ctypes.c_ulong
        lib.X509_subject_name_hash.argtypes = [ctypes.c_void_p]
        lib.X509_free.restype = None
        lib.X509_free.argtypes = [ctypes.c_void_p]
        _LIBCRYPTO = lib
    return _LIBCRYPTO


def write_device_trust(data_dir: Path, cas: Sequence[tuple[str, str]], certs: Sequence[tuple[str, str, str]]) -> bool:
    """Make :data:`TRUST_FILE` and :data:`TRUSTED_DIR` of ``data_dir`` hold ``cas`` ((tenant, PEM)) and ``certs``
    ((fingerprint, tenant, device)); True when something changed. The hashed directory is updated before the
    trust file, so the listener's TLS layer knows a CA by the time the plugin accepts its certificates."""
    loaded = [(tenant, x509.load_pem_x509_certificate(text.encode())) for tenant, text in cas]
    lines = [f"ca\t{t}\t{base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()}" for t, c in loaded]
    lines += [f"cert\t{fp.replace(':', '').upper()}\t{t}:{d}" for fp, t, d in certs]
    text = ("".join(f"{line}\n" for line in lines)).encode()
    changed = _sync_hashed_dir(data_dir / TRUSTED_DIR, [c for _, c in loaded])
    target = data_dir / TRUST_FILE
    try:
        same = target.read_bytes() == text
    except FileNotFoundError:
        same = False
    if not same:
        _write_atomic(target, text, 0o644)
    return changed or not same


def _sync_hashed_dir(directory: Path, certs: Sequence[x509.Certificate]) -> bool:
    wanted: dict[str, bytes] = {}
    seen: set[bytes] = set()
    for cert in certs:
        body = cert.public_bytes(serialization.Encoding.PEM)
        if body in seen:  # two tenants trust the same CA: one file
            continue
        seen.add(body)
        h = subject_hash(cert)
        n = 0
        while f"{h}.{n}" in wanted:
            n += 1
        wanted[f"{h}.{n}"] = body
    directory.mkdir(mode=0o755, exist_ok=True)
    changed = False
    for name, body in wanted.items():
        path = directory / name
        try:
            if path.read_bytes() == body:
                continue
        except FileNotFoundError:
            pass
        _write_atomic(path, body, 0o644)
        changed = True
    for path in directory.iterdir():
        if path.name not in wanted:
            path.unlink(missing_ok=True)
            changed = True
    return changed
