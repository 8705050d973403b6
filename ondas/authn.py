"""Bearer tokens and service identities: what every service needs to know about the caller.

The gateway lets a request through only after auth accepted its token, but a service's own port can be reached
without the gateway, so every service checks each caller itself with :class:`TokenCheck`:

- ``full`` (``ONDAS_AUTHZ=full``, the default of :meth:`CommonSettings.from_env`): the signature, algorithm,
  issuer (``iss`` = ``ondas-auth``) and expiry locally, then the very question the gateway asks: auth's
  ``/pdp/gateway`` with the caller's ``Authorization`` and the request's method and path *as the gateway sees it*
  (``gateway_path``: history is routed under ``/history``). So revocation, deleted users, password changes
  (token version) and the permission decision are auth's, and a direct call gets the gateway's answer. Verdicts
  (permit, 401, 403) are cached in-process for ``cache_seconds`` per (tenant, token id, method, path); when auth
  does not answer, the request is refused with 503 (fail closed; never cached).
- ``signature``: the signature (and ``iss`` when present) and expiry only, and internal routes are not checked.
  For tests with tokens signed by a test key and no auth; never in production.

Internal routes (``/internal/...``) take a service identity (``Authorization: Service <name>:<key>``) and
nothing else, verified by auth (see :class:`ondas.service_identity.ServiceIdentityVerifier`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jwt
import requests

from ondas.errors import Forbidden, Unauthenticated, Unavailable
from ondas.service_identity import ServiceIdentityVerifier, TtlCache
from ondas.tenant import validate_tenant

if TYPE_CHECKING:
    from ondas.settings import CommonSettings

log = logging.getLogger("ondas.authn")

ALGORITHM = "RS256"
#: The ``iss`` claim of every token auth issues (auth/service.py ``ISSUER``).
ISSUER = "ondas-auth"
FULL = "full"
SIGNATURE = "signature"
MODES = (FULL, SIGNATURE)


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


def decode(token: str, public_key: str, issuer: str | None = None) -> dict[str, Any]:
    """The claims of a token signed with ``public_key``'s pair (RS256 only), not expired; with ``issuer``, its
    ``iss`` must be that issuer."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            issuer=issuer,
            options={"require": ["exp", "iat", "service", "username", *(["iss"] if issuer else [])]},
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


def _identity_path(path: str) -> str:
    return path


class TokenCheck:
    """How a service checks its callers (see the module's docstring). Thread-safe; one per process."""

    def __init__(
        self,
        public_key: Callable[[], str],
        mode: str = FULL,
        auth_url: str = "",
        *,
        gateway_path: Callable[[str], str] = _identity_path,
        cache_seconds: float = 5.0,
        identity_cache_seconds: float = 60.0,
        timeout_seconds: float = 3.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"token check mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == FULL and not auth_url:
            raise ValueError("the full token check needs auth's URL")
        self.mode = mode
        self._public_key = public_key
        self._auth_url = auth_url.rstrip("/")
        self._gateway_path = gateway_path
        self._timeout = timeout_seconds
        self._verdicts: TtlCache[tuple[str, str, str, str], tuple[int, str]] = TtlCache(cache_seconds)
        self._identities = ServiceIdentityVerifier(auth_url, identity_cache_seconds, timeout_seconds)
        self._local = threading.local()
        if mode == SIGNATURE:
            log.warning(
                "ONDAS_AUTHZ=signature: tokens are checked by signature and expiry only and internal routes are "
                "not checked (a mode for tests; never in production)"
            )

    @classmethod
    def from_settings(
        cls,
        common: CommonSettings,
        public_key: Callable[[], str] | None = None,
        gateway_path: Callable[[str], str] = _identity_path,
    ) -> TokenCheck:
        """The check ``common`` configures; ``public_key`` defaults to the key file it names."""
        key_file = common.jwt_public_key_file
        return cls(
            public_key if public_key is not None else (lambda: load_public_key(key_file)),
            common.authz,
            common.auth_url,
            gateway_path=gateway_path,
            cache_seconds=common.authz_cache_seconds,
            identity_cache_seconds=common.service_identity_cache_seconds,
            timeout_seconds=common.auth_timeout_seconds,
        )

    # -- user tokens -------------------------------------------------------------------------------------------
    def principal(self, authorization: str | None, method: str, path: str) -> Principal:
        """The caller of ``method`` on ``path`` (this service's own path): 401 for no, bad, expired, revoked or
        outdated token, 403 when its permissions do not allow the request, 503 when auth cannot be asked."""
        token = bearer_token(authorization)
        if self.mode == SIGNATURE:
            claims = decode(token, self._public_key())
            if "iss" in claims and claims["iss"] != ISSUER:
                raise Unauthenticated("invalid token: Invalid issuer")
            return principal_from_claims(claims)
        principal = principal_from_claims(decode(token, self._public_key(), issuer=ISSUER))
        if any(seg in (".", "..") for seg in path.split("/")):
            raise Forbidden("refused: the path has '.' or '..' segments")
        method = method.upper()
        outside = self._gateway_path(path)
        jti = principal.claims.get("jti")
        token_id = jti if isinstance(jti, str) and jti else hashlib.sha256(token.encode()).hexdigest()
        key = (principal.tenant, token_id, method, outside)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._ask_auth(authorization or "", method, outside, principal.tenant)
            self._verdicts.put(key, verdict)
        status, message = verdict
        if status == 401:
            raise Unauthenticated(message)
        if status == 403:
            raise Forbidden(message)
        return principal

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _ask_auth(self, authorization: str, method: str, path: str, tenant: str) -> tuple[int, str]:
        """auth's verdict on the request (the gateway's question): ``(200|401|403, reason)``."""
        url = f"{self._auth_url}/pdp/gateway"
        headers = {
            "Authorization": authorization,
            "X-Original-Method": method,
            "X-Original-URI": quote(path, safe="/"),
        }
        try:
            resp = self._session().get(url, headers=headers, timeout=self._timeout)
        except requests.RequestException as exc:
            log.warning("auth did not answer a token check", extra={"error": f"{type(exc).__name__}: {exc}"})
            raise Unavailable("cannot check the token: auth does not answer; try again later") from exc
        if resp.status_code == 200:
            if resp.headers.get("X-Ondas-Tenant", tenant) != tenant:
                return 401, "the token's tenant is not the one auth knows; log in again"
            return 200, "permit"
        if resp.status_code in (401, 403):
            return resp.status_code, _reason(resp)
        log.warning("auth answered a token check with an error", extra={"status": resp.status_code})
        raise Unavailable(f"cannot check the token: auth answered {resp.status_code}; try again later")

    # -- service identities ------------------------------------------------------------------------------------
    def service(self, authorization: str | None) -> str | None:
        """The calling service's name (``Authorization: Service <name>:<key>``, verified by auth): 401 for anything
        else, user tokens included; 503 when auth cannot be asked. None in signature mode (not checked)."""
        if self.mode == SIGNATURE:
            return None
        return self._identities.verify(authorization)


def _reason(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return resp.headers.get("X-Ondas-Reason") or f"refused by auth ({resp.status_code})"
