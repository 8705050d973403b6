"""The local runtime's keys and device TLS files: the JWT signing key pair that auth signs tokens with, and (for
``make up``, before Mosquitto starts) the device listeners' CA bundle, combined CRL and server certificate.

Two CAs sign device certificates: x509_mgmt's (root plus issuing CA in ``<data>/x509``, the service's API issues
from it) and the older on-disk platform CA, the library module :mod:`ondas.ca` (``<data>/pki``; ``ondasctl
device-cert`` and the MQTT agent's revocation of a removed device's certificates call it directly). Runtime code
never imports this module (``make lint`` checks that nothing but ondasctl does).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ondas.ca import write_private_key
from x509_mgmt.ca import TRUST_FILE as X509_TRUST_FILE
from x509_mgmt.ca import TRUSTED_DIR as X509_TRUSTED_DIR


def ensure_jwt_keys(keys_dir: Path) -> tuple[Path, Path]:
    """RSA key pair that auth signs tokens with (RS256); everyone else gets the public half."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    private, public = keys_dir / "jwt-private.pem", keys_dir / "jwt-public.pem"
    if not private.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private_key(private, key)
        public.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return private, public


# -- the device listeners' TLS files (make up) ----------------------------------------------------------------
# The device-facing TLS listeners (Mosquitto's mutual-TLS listener, the HTTP agent's TLS listener) trust two CAs:
# x509_mgmt's (root plus issuing CA, <data>/x509: what devices get certificates from, dojot's certreq flow) and the
# older on-disk platform CA (<data>/pki, ondas.ca: ``ondasctl device-cert``). Their server certificate is signed by
# x509_mgmt's issuing CA, so a device that trusts ``GET /x509/v1/ca`` (certreq's ca/ca.pem) verifies the broker.
TLS_DIR = "tls"
DEVICE_CA_BUNDLE = "device-ca.pem"  # every CA whose device certificates are accepted (also verifies the server)
DEVICE_CRL_BUNDLE = "device-crl.pem"  # the CRL of each of them, one after the other (the MQTT agent rewrites it)
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
SERVER_CERT_DAYS = 825


def x509_data_dir(data_dir: Path) -> Path:
    return data_dir / "x509"


def device_tls_files(data_dir: Path) -> dict[str, Path]:
    d = data_dir / TLS_DIR
    return {
        "ca": d / DEVICE_CA_BUNDLE,
        "crl": d / DEVICE_CRL_BUNDLE,
        "cert": d / SERVER_CERT,
        "key": d / SERVER_KEY,
        "pki_crl": data_dir / "pki" / "crl.pem",
        "x509_crl": x509_data_dir(data_dir) / "crl.pem",
        "x509_trust": x509_data_dir(data_dir) / X509_TRUST_FILE,
        "x509_trusted_dir": x509_data_dir(data_dir) / X509_TRUSTED_DIR,
    }


def prepare_device_tls(data_dir: Path, hostnames: list[str]) -> dict[str, Path]:
    """Bootstrap both CAs (x509_mgmt's root and issuing CA as the service itself would, under its lock), the
    server certificate, the CA bundle and the combined CRL; returns :func:`device_tls_files`."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from ondas.ca import combine_crls, ensure_ca, write_crl
    from x509_mgmt.ca import CHAIN_FILE, CertificateAuthority

    files = device_tls_files(data_dir)
    pki_dir = data_dir / "pki"
    pki_ca, _ = ensure_ca(pki_dir)
    # Rewritten at every start: always present (empty at first) and never past its nextUpdate.
    write_crl(pki_dir)
    x509_dir = x509_data_dir(data_dir)
    # The service's own passphrase setting, when the user gave one (the service reads the same variable).
    authority = CertificateAuthority.open(x509_dir, x509_dir / "root", os.environ.get("X509_MGMT_KEY_PASSPHRASE", ""))
    tls_dir = files["ca"].parent
    tls_dir.mkdir(parents=True, exist_ok=True)
    files["ca"].write_bytes(pki_ca.read_bytes() + (x509_dir / CHAIN_FILE).read_bytes())
    if not _signed_by(files["cert"], authority.issuing):
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for h in hostnames:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        cert = authority.issue_server(key.public_key(), names, SERVER_CERT_DAYS, dt.datetime.now(dt.UTC))
        write_private_key(files["key"], key)
        # The leaf, then the issuing CA: a client that has only the root completes the chain.
        files["cert"].write_bytes(
            cert.public_bytes(serialization.Encoding.PEM) + authority.issuing.public_bytes(serialization.Encoding.PEM)
        )
    combine_crls([files["pki_crl"], files["x509_crl"]], files["crl"])
    return files


def _signed_by(cert_file: Path, issuer: object) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        cert.verify_directly_issued_by(issuer)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001  (missing, damaged, another issuer: issue a new one)
        return False
    return True
