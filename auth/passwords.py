"""Password hashing and the password policy.

New hashes are Argon2id (argon2-cffi). Hashes written by earlier versions (scrypt, ``scrypt$...``) still verify;
:meth:`Hasher.needs_rehash` tells the caller to replace them after a successful login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ondas.errors import Invalid

MAX_PASSWORD = 256  # longer inputs are refused before hashing (hashing cost is the caller's to pay)
# Never the hash of any password: an account with it cannot log in until a password is set.
UNUSABLE = "!unusable"


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = 8
    history: int = 4  # how many recent passwords (the current one included) may not be used again

    def check_shape(self, password: object) -> str:
        if not isinstance(password, str):
            raise Invalid("the password must be a string")
        if len(password) < self.min_length:
            raise Invalid(f"passwords have at least {self.min_length} characters")
        if len(password) > MAX_PASSWORD:
            raise Invalid(f"passwords have at most {MAX_PASSWORD} characters")
        if not password.strip():
            raise Invalid("the password must not be blank")
        return password


class Hasher:
    """Argon2id with the given cost; OWASP's minimum (19 MiB, 2 passes, 1 lane) by default."""

    def __init__(self, time_cost: int = 2, memory_kib: int = 19456, parallelism: int = 1) -> None:
        self._ph = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)

    def hash(self, password: str) -> str:
        return self._ph.hash(password)

    def verify(self, password: str, encoded: str) -> bool:
        if encoded.startswith("scrypt$"):
            return _verify_scrypt(password, encoded)
        if not encoded.startswith("$argon2"):
            return False
        try:
            return self._ph.verify(encoded, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, encoded: str) -> bool:
        if not encoded.startswith("$argon2"):
            return True
        try:
            return self._ph.check_needs_rehash(encoded)
        except InvalidHashError:
            return True


def _verify_scrypt(password: str, encoded: str) -> bool:
    """Hashes of the first version: ``scrypt$N$r$p$salt$digest`` (base64)."""
    try:
        _scheme, n, r, p, salt, digest = encoded.split("$")
        expected = base64.b64decode(digest)
        candidate = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(candidate, expected)


def legacy_scrypt_hash(password: str, salt: bytes) -> str:
    """A hash in the first version's format (kept to test that such hashes still verify and get migrated)."""
    n, r, p = 2**14, 8, 1
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
