"""The platform's local certificate authority: the MQTT TLS listener's server certificate and the JWT
signing key pair. (x509_mgmt will take over device certificates.)"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def ensure_jwt_keys(keys_dir: Path) -> tuple[Path, Path]:
    """RSA key pair that auth signs tokens with (RS256); everyone else gets the public half."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    private, public = keys_dir / "jwt-private.pem", keys_dir / "jwt-public.pem"
    if not private.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(private, key)
        public.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return private, public


def ensure_ca_and_server_cert(pki_dir: Path, hostnames: list[str]) -> tuple[Path, Path, Path]:
    """Return (ca.pem, server.pem, server.key), creating them the first time."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca_cert_p, ca_key_p = pki_dir / "ca.pem", pki_dir / "ca.key"
    srv_cert_p, srv_key_p = pki_dir / "server.pem", pki_dir / "server.key"
    now = dt.datetime.now(dt.UTC)
    if not ca_cert_p.exists():
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
        _write_key(ca_key_p, ca_key)
        ca_cert_p.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        srv_cert_p.unlink(missing_ok=True)
    if not srv_cert_p.exists():
        loaded = serialization.load_pem_private_key(ca_key_p.read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_p} is not an EC key")
        ca_key = loaded
        ca_cert = x509.load_pem_x509_certificate(ca_cert_p.read_bytes())
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
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(srv_key_p, key)
        srv_cert_p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca_cert_p, srv_cert_p, srv_key_p
