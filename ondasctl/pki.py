"""The local runtime's keys: the JWT signing key pair that auth signs tokens with.

The platform's certificate authority (CA, server certificate, device certificates and their records,
revocation, CRL) is the library module :mod:`ondas.ca`, which services may import; ondasctl's bootstrap
(``infra.mosquitto_prepare``) and CLI (``device-cert``) call it directly. Runtime code never imports this module
(``make lint`` checks that nothing but ondasctl does).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ondas.ca import write_private_key


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
