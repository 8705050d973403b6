"""Keys, CSRs and certificates for the x509_mgmt tests (made with the cryptography package, as a device or an
external CA would make them)."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import NameOID

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | dsa.DSAPrivateKey


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def csr_pem(cn: str | None, key: Key | None = None, extra: list[x509.NameAttribute] | None = None) -> str:
    key = key or ec_key()
    attrs = ([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else []) + (extra or [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[arg-type]


def wrong_signature_csr(cn: str) -> str:
    """A CSR whose signature does not match its key: the signature of another CSR with the same subject spliced in."""
    good = x509.load_pem_x509_csr(csr_pem(cn, ec_key()).encode())
    other = x509.load_pem_x509_csr(csr_pem(cn, ec_key()).encode())
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    sig, other_sig = good.signature, other.signature
    # Same curve, same subject: the DER differs only in key and signature; replace the signature bytes when the
    # lengths agree (retry otherwise).
    if len(sig) != len(other_sig):
        return wrong_signature_csr(cn)
    start = bytes(der).rfind(sig)
    der[start : start + len(sig)] = other_sig
    loaded = x509.load_der_x509_csr(bytes(der))
    return loaded.public_bytes(serialization.Encoding.PEM).decode()


def ca_cert(
    cn: str, key: ec.EllipticCurvePrivateKey | None = None, days: int = 3650
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed root CA (an external, 'factory' CA)."""
    key = key or ec_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def leaf_cert(
    cn: str,
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: Key | None = None,
    days: int = 365,
    ca: bool = False,
) -> tuple[x509.Certificate, Key]:
    key = key or ec_key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert, key


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def fingerprint(cert: x509.Certificate) -> str:
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
