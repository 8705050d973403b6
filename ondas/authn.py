"""Bearer tokens: what every service needs to know about the caller.

The gateway lets a request through only after auth accepted its token; services still verify the signature
with the platform's public key (defence in depth) and take the tenant from the ``service`` claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jwt

from ondas.errors import Unauthenticated
from ondas.tenant import validate_tenant

ALGORITHM = "RS256"


@dataclass(frozen=True)
class Principal:
    tenant: str
    username: str
    profile: str = "user"
    groups: tuple[Any, ...] = ()
    claims: dict[str, Any] = field(default_factory=dict, compare=False)


@lru_cache(maxsize=4)
def load_public_key(path: str) -> str:
    return Path(path).read_text()


def decode(token: str, public_key: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "iat", "service", "username"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("the token has expired; get a new one from POST /auth") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid token: {exc}") from exc
    return claims


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    try:
        tenant = validate_tenant(str(claims["service"]))
    except Exception as exc:
        raise Unauthenticated("the token names no valid tenant in claim 'service'") from exc
    return Principal(
        tenant=tenant,
        username=str(claims["username"]),
        profile=str(claims.get("profile", "user")),
        groups=tuple(claims.get("groups", ())),
        claims=claims,
    )


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("missing Authorization header; send 'Authorization: Bearer <jwt>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <jwt>'")
    return token.strip()


def authenticate(authorization: str | None, public_key: str) -> Principal:
    return principal_from_claims(decode(bearer_token(authorization), public_key))
