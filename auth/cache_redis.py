"""What auth keeps in Redis: cached decisions, revoked token ids and the token version of each user.

Keys (all under a prefix, ``ondas:auth:`` by default, so that several deployments can share one Redis):

- ``gen:<tenant>``: the tenant's policy generation, incremented by every change of its users, groups,
  permissions or relations. Decisions are cached under the generation read *before* the permissions were read,
  so a change makes every older decision unreachable at once (they expire by their TTL).
- ``dec:<tenant>:<gen>:<user id>:<method>:<sha1(path)>``: ``permit`` or ``deny``.
- ``rev:<jti>``: a revoked token, kept until the token would have expired.
- ``tv:<user id>``: the user's current token version (``gone`` once the user is deleted).
- ``rev-loaded``: set once the revocations kept in PostgreSQL were copied here; when Redis lost its data it is
  missing, and the caller copies them again.

Redis errors never reach the caller as such: reads answer "unknown" (None) and the caller falls back to
PostgreSQL; writes are logged. PostgreSQL stays the source of truth.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import redis

log = logging.getLogger("auth.cache")

PREFIX = "ondas:auth:"
GONE = "gone"


@dataclass(frozen=True)
class TokenState:
    """What Redis knows about a token, read in one round trip. None means unknown (ask PostgreSQL)."""

    revocations_loaded: bool
    revoked: bool | None
    version: int | str | None
    generation: int | None


class RedisAuthCache:
    def __init__(self, url: str, decision_ttl: int = 720, version_ttl: int = 3600, prefix: str = PREFIX) -> None:
        self._r: redis.Redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30
        )
        self._decision_ttl = decision_ttl
        self._p = prefix
        self._version_ttl = version_ttl

    def close(self) -> None:
        self._r.close()

    def ping(self) -> bool:
        return bool(self._r.ping())

    # -- tokens --------------------------------------------------------------------------------------------
    def token_state(self, tenant: str, jti: str, user_id: int) -> TokenState:
        try:
            pipe = self._r.pipeline(transaction=False)
            pipe.exists(self._p + "rev-loaded")
            pipe.exists(self._p + "rev:" + jti)
            pipe.get(f"{self._p}tv:{user_id}")
            pipe.get(self._p + "gen:" + tenant)
            loaded, revoked, version, gen = pipe.execute()
        except redis.RedisError as exc:
            log.warning("redis unavailable; checking the token against PostgreSQL", extra={"error": str(exc)})
            return TokenState(False, None, None, None)
        parsed: int | str | None
        if version is None:
            parsed = None
        elif version == GONE:
            parsed = GONE
        else:
            parsed = int(version)
        return TokenState(bool(loaded), bool(revoked) if loaded else None, parsed, int(gen or 0))

    def load_revocations(self, revocations: list[tuple[str, int]], now: int) -> None:
        try:
            pipe = self._r.pipeline(transaction=False)
            for jti, expires_at in revocations:
                if expires_at > now:
                    pipe.set(self._p + "rev:" + jti, "1", ex=expires_at - now)
            pipe.set(self._p + "rev-loaded", "1")
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not copy revocations to redis", extra={"error": str(exc)})

    def revoke(self, jti: str, ttl: int) -> None:
        self._write(lambda: self._r.set(self._p + "rev:" + jti, "1", ex=max(ttl, 1)))

    def set_version(self, user_id: int, version: int | str, only_if_absent: bool = False) -> None:
        """Record a user's token version (``GONE`` once deleted). Writers overwrite; readers that fill a miss
        from PostgreSQL pass ``only_if_absent``, so they never overwrite a newer value written meanwhile."""
        self._write(
            lambda: self._r.set(f"{self._p}tv:{user_id}", str(version), ex=self._version_ttl, nx=only_if_absent)
        )

    # -- decisions -----------------------------------------------------------------------------------------
    def _decision_key(self, tenant: str, gen: int, user_id: int, method: str, path: str) -> str:
        digest = hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()
        return f"{self._p}dec:{tenant}:{gen}:{user_id}:{method}:{digest}"

    def decision(self, tenant: str, gen: int, user_id: int, method: str, path: str) -> str | None:
        try:
            value = self._r.get(self._decision_key(tenant, gen, user_id, method, path))
        except redis.RedisError as exc:
            log.warning("redis unavailable; deciding without the cache", extra={"error": str(exc)})
            return None
        return value if isinstance(value, str) else None

    def store_decision(self, tenant: str, gen: int, user_id: int, method: str, path: str, decision: str) -> None:
        key = self._decision_key(tenant, gen, user_id, method, path)
        self._write(lambda: self._r.set(key, decision, ex=self._decision_ttl))

    def invalidate(self, tenant: str) -> None:
        """Make every cached decision of ``tenant`` unreachable (after a change of its policy)."""
        self._write(lambda: self._r.incr(self._p + "gen:" + tenant))

    def generation(self, tenant: str) -> int | None:
        try:
            return int(self._r.get(self._p + "gen:" + tenant) or 0)
        except redis.RedisError:
            return None

    @staticmethod
    def _write(op: Any) -> None:
        try:
            op()
        except redis.RedisError as exc:
            log.error("redis write failed; cached state may lag until it expires", extra={"error": str(exc)})
