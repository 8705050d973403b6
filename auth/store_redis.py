"""What auth keeps in Redis: cached decisions, revocation verdicts and the token version of each user.

Redis is only a cache: PostgreSQL is the source of truth, and nothing read from Redis can grant access unless
auth wrote it. Every value that can let a request through is signed: ``<value>|<expires at>|<mac>``, where
``mac`` is the hex HMAC-SHA256 of ``<full redis key>\n<value>|<expires at>`` under a key only auth holds (derived
from its service master secret with the label ``ondas-auth-cache:v1``; a per-process random key when auth has no
master secret, so that the cache only ever serves the process that wrote it). The key binds a value to its entry:
a value copied to another key (another tenant, user, token, path) does not verify. ``expires at`` (unix seconds) is
signed too, so a value written back by hand after its time is refused. A value that does not verify is treated
as absent (counted in ``ondas_auth_cache_integrity_failures_total``, logged once per process, and deleted): a read
falls back to PostgreSQL, never to "permit".

Keys (all under a prefix, ``ondas:auth:`` by default, so that several deployments can share one Redis):

- ``gen:<tenant>``: the tenant's policy generation, incremented by every change of its users, groups,
  permissions or relations. Decisions are cached under the generation read *before* the permissions were read,
  so a change makes every older decision unreachable at once (they expire by their TTL). Not signed: it grants
  nothing by itself (a decision must still be found and verify under it).
- ``dec:<tenant>:<gen>:<user id>:<method>:<sha1(path)>``: signed ``permit`` or ``deny``.
- ``rev:<tenant>:<jti>``: signed ``revoked`` (until the token would have expired) or ``ok`` (PostgreSQL had no
  revocation of this token, remembered for ``revocation_ttl`` seconds at most). A missing or forged entry means
  "unknown": the caller asks PostgreSQL. Deleting a ``revoked`` entry by hand therefore does not un-revoke.
- ``tv:<tenant>:<user id>``: signed current token version of the user (``gone`` once the user is deleted).

What the signatures cannot stop: someone who holds the Redis password can write back a value auth itself signed
earlier for the same key before its signed expiry (an ``ok`` within ``revocation_ttl``, a token version within
``version_ttl``, a decision within ``decision_ttl``). Redis has a password for that reason.

Redis errors never reach the caller as such: reads answer "unknown" (None) and the caller falls back to
PostgreSQL; writes are logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client import Counter

log = logging.getLogger("auth.cache")

PREFIX = "ondas:auth:"
GONE = "gone"
REVOKED = "revoked"
NOT_REVOKED = "ok"
KEY_LABEL = b"ondas-auth-cache:v1"

INTEGRITY_FAILURES = Counter(
    "ondas_auth_cache_integrity_failures_total",
    "Values read from auth's Redis cache whose HMAC did not verify (treated as absent)",
    ["kind"],
)


def derive_cache_key(master_secret: str) -> bytes:
    """The HMAC key of auth's cache values under ``master_secret`` (random for this process when it is empty)."""
    if not master_secret:
        return secrets.token_bytes(32)
    return hmac.new(master_secret.encode(), KEY_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class TokenState:
    """What Redis knows about a token, read in one round trip. None means unknown (ask PostgreSQL)."""

    revocations_loaded: bool
    revoked: bool | None
    version: int | str | None
    generation: int | None


class RedisAuthCache:
    def __init__(
        self,
        url: str,
        decision_ttl: int = 720,
        version_ttl: int = 3600,
        prefix: str = PREFIX,
        *,
        key: bytes | None = None,
        revocation_ttl: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``key``: the HMAC key of the values (:func:`derive_cache_key`); None: a random key of this process."""
        self._r: redis.Redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30
        )
        self._decision_ttl = decision_ttl
        self._p = prefix
        self._version_ttl = version_ttl
        self._revocation_ttl = revocation_ttl
        self._key = key if key is not None else secrets.token_bytes(32)
        self._clock = clock
        self._warned = False

    def close(self) -> None:
        self._r.close()

    def ping(self) -> bool:
        return bool(self._r.ping())

    # -- keys ----------------------------------------------------------------------------------------------
    def revocation_key(self, tenant: str, jti: str) -> str:
        return f"{self._p}rev:{tenant}:{jti}"

    def version_key(self, tenant: str, user_id: int) -> str:
        return f"{self._p}tv:{tenant}:{user_id}"

    def decision_key(self, tenant: str, gen: int, user_id: int, method: str, path: str) -> str:
        digest = hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()
        return f"{self._p}dec:{tenant}:{gen}:{user_id}:{method}:{digest}"

    # -- signed values -------------------------------------------------------------------------------------
    def _mac(self, key: str, payload: str) -> str:
        return hmac.new(self._key, f"{key}\n{payload}".encode(), hashlib.sha256).hexdigest()

    def _seal(self, key: str, value: str, ttl: int) -> str:
        payload = f"{value}|{int(self._clock()) + ttl}"
        return f"{payload}|{self._mac(key, payload)}"

    def _open(self, key: str, raw: object, kind: str) -> str | None:
        """The value of a signed entry; None when it is absent, expired or does not verify."""
        if raw is None:
            return None
        text = raw if isinstance(raw, str) else str(raw)
        payload, _, mac = text.rpartition("|")
        value, _, expires = payload.rpartition("|")
        if not value or not expires.isdigit() or not hmac.compare_digest(self._mac(key, payload), mac):
            self._integrity_failure(kind, key)
            return None
        if int(expires) <= self._clock():  # auth's own value, past its time (Redis drops it a moment later)
            return None
        return value

    def _integrity_failure(self, kind: str, key: str) -> None:
        INTEGRITY_FAILURES.labels(kind).inc()
        # Dropped, so that the value read next from PostgreSQL can be cached again (writers that fill a miss do not
        # overwrite). Deleting never grants anything: a missing entry means "ask PostgreSQL".
        self._write(lambda: self._r.delete(key))
        if not self._warned:
            self._warned = True
            log.warning(
                "a value in auth's Redis cache does not carry auth's signature; ignored (written by hand, by another "
                "deployment sharing this prefix, by a restarted auth without a master secret, or an old version)",
                extra={"key": key, "kind": kind},
            )

    # -- tokens --------------------------------------------------------------------------------------------
    def token_state(self, tenant: str, jti: str, user_id: int) -> TokenState:
        rev_key, tv_key = self.revocation_key(tenant, jti), self.version_key(tenant, user_id)
        try:
            pipe = self._r.pipeline(transaction=False)
            pipe.get(rev_key)
            pipe.get(tv_key)
            pipe.get(self._p + "gen:" + tenant)
            rev, version, gen = pipe.execute()
        except redis.RedisError as exc:
            log.warning("redis unavailable; checking the token against PostgreSQL", extra={"error": str(exc)})
            return TokenState(False, None, None, None)
        revoked: bool | None
        rev_value = self._open(rev_key, rev, "revocation")
        revoked = True if rev_value == REVOKED else False if rev_value == NOT_REVOKED else None
        tv = self._open(tv_key, version, "token_version")
        parsed: int | str | None
        if tv is None:
            parsed = None
        elif tv == GONE:
            parsed = GONE
        else:
            try:
                parsed = int(tv)
            except ValueError:
                parsed = None
        try:
            generation = int(gen or 0)
        except ValueError:
            generation = 0
        # revocations_loaded: always, since revocations are no longer copied in bulk (a miss asks PostgreSQL).
        return TokenState(True, revoked, parsed, generation)

    def load_revocations(self, revocations: list[tuple[str, int]], now: int) -> None:
        """Nothing to do: a token without a cached verdict is checked against PostgreSQL, then its verdict cached
        (:meth:`remember_revocation`). Kept so that callers of the bulk copy of earlier versions still work."""
        del revocations, now

    def remember_revocation(self, tenant: str, jti: str, revoked: bool, exp: int) -> None:
        """Cache what PostgreSQL said about the token ``jti`` (expiring at ``exp``). "Not revoked" never
        overwrites an entry written meanwhile (a revocation), and lasts ``revocation_ttl`` seconds at most."""
        ttl = exp - int(self._clock())
        if ttl < 1:
            return
        if revoked:
            self.revoke(tenant, jti, ttl)
            return
        ttl = min(ttl, self._revocation_ttl)
        key = self.revocation_key(tenant, jti)
        self._write(lambda: self._r.set(key, self._seal(key, NOT_REVOKED, ttl), ex=ttl, nx=True))

    def revoke(self, tenant: str, jti: str, ttl: int) -> None:
        key, ttl = self.revocation_key(tenant, jti), max(ttl, 1)
        self._write(lambda: self._r.set(key, self._seal(key, REVOKED, ttl), ex=ttl))

    def set_version(self, tenant: str, user_id: int, version: int | str, only_if_absent: bool = False) -> None:
        """Record a user's token version (``GONE`` once deleted). Writers overwrite; readers that fill a miss
        from PostgreSQL pass ``only_if_absent``, so they never overwrite a newer value written meanwhile."""
        key = self.version_key(tenant, user_id)
        value = self._seal(key, str(version), self._version_ttl)
        self._write(lambda: self._r.set(key, value, ex=self._version_ttl, nx=only_if_absent))

    # -- decisions -----------------------------------------------------------------------------------------
    def decision(self, tenant: str, gen: int, user_id: int, method: str, path: str) -> str | None:
        key = self.decision_key(tenant, gen, user_id, method, path)
        try:
            raw = self._r.get(key)
        except redis.RedisError as exc:
            log.warning("redis unavailable; deciding without the cache", extra={"error": str(exc)})
            return None
        return self._open(key, raw, "decision")

    def store_decision(self, tenant: str, gen: int, user_id: int, method: str, path: str, decision: str) -> None:
        key = self.decision_key(tenant, gen, user_id, method, path)
        value = self._seal(key, decision, self._decision_ttl)
        self._write(lambda: self._r.set(key, value, ex=self._decision_ttl))

    def invalidate(self, tenant: str) -> None:
        """Make every cached decision of ``tenant`` unreachable (after a change of its policy)."""
        self._write(lambda: self._r.incr(self._p + "gen:" + tenant))

    def generation(self, tenant: str) -> int | None:
        try:
            return int(self._r.get(self._p + "gen:" + tenant) or 0)
        except (redis.RedisError, ValueError):
            return None

    @staticmethod
    def _write(op: Any) -> None:
        try:
            op()
        except redis.RedisError as exc:
            log.error("redis write failed; cached state may lag until it expires", extra={"error": str(exc)})

    # -- login throttling ----------------------------------------------------------------------------------
    # Keys (not signed: tampering with them can only lift a throttle, which deleting them does anyway):
    # ``login:u:<sha256(tenant NUL username)[:32]>`` and ``login:a:<address>``, hashes of ``n`` (failures) and
    # ``until`` (ms since the epoch before which logins are refused); ``<that key>:busy``, the attempts of the
    # bucket being checked right now (so that parallel attempts cannot all pass before the first one fails).
    _LOGIN_BEGIN = """
    local now = tonumber(ARGV[1])
    for i = 0, 1 do
        local until_ms = tonumber(redis.call('HGET', KEYS[2 * i + 1], 'until') or '0')
        if now < until_ms then return {i + 1, until_ms - now} end
        local n = tonumber(redis.call('HGET', KEYS[2 * i + 1], 'n') or '0')
        local busy = tonumber(redis.call('GET', KEYS[2 * i + 2]) or '0')
        if busy > 0 and n + busy >= tonumber(ARGV[i + 2]) then return {i + 1, 1000} end
    end
    for i = 0, 1 do
        redis.call('INCR', KEYS[2 * i + 2])
        redis.call('PEXPIRE', KEYS[2 * i + 2], ARGV[4])
    end
    return {0, 0}
    """
    _LOGIN_FAILED = """
    local now = tonumber(ARGV[1])
    for i = 0, 1 do
        if tonumber(redis.call('GET', KEYS[2 * i + 2]) or '0') > 0 then redis.call('DECR', KEYS[2 * i + 2]) end
        local n = redis.call('HINCRBY', KEYS[2 * i + 1], 'n', 1)
        local threshold = tonumber(ARGV[i + 2])
        local backoff = 0
        if n >= threshold then
            backoff = math.min(tonumber(ARGV[4]) * 2 ^ math.min(n - threshold, 40), tonumber(ARGV[5]))
            redis.call('HSET', KEYS[2 * i + 1], 'until', string.format('%d', now + backoff))
        end
        redis.call('PEXPIRE', KEYS[2 * i + 1], string.format('%d', tonumber(ARGV[6]) + backoff))
    end
    return 0
    """
    _LOGIN_DONE = """
    for i = 1, #KEYS do
        if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
    end
    for i = 1, #ARGV do redis.call('DEL', ARGV[i]) end
    return 0
    """

    def login_user_key(self, tenant: str, username: str) -> str:
        digest = hashlib.sha256(f"{tenant}\0{username}".encode()).hexdigest()[:32]
        return f"{self._p}login:u:{digest}"

    def login_address_key(self, address: str) -> str:
        return f"{self._p}login:a:{address}"

    def login_begin(
        self, user_key: str, address_key: str, user_limit: int, address_limit: int, now_ms: int
    ) -> tuple[str | None, int]:
        """Admit a login attempt, or refuse it: ``(None, 0)``, or ``("user" | "address", wait in ms)``.

        Admitted attempts are counted as busy until :meth:`login_failed` or :meth:`login_done`. When Redis cannot
        be reached the attempt is admitted (logged): the gateway's limit still holds, and auth keeps serving."""
        keys = [user_key, user_key + ":busy", address_key, address_key + ":busy"]
        try:
            reason, wait = self._r.register_script(self._LOGIN_BEGIN)(
                keys=keys, args=[now_ms, user_limit, address_limit, 60_000]
            )
        except redis.RedisError as exc:
            log.error("redis unavailable; login attempt not throttled", extra={"error": str(exc)})
            return None, 0
        return {1: "user", 2: "address"}.get(int(reason)), int(wait)

    def login_failed(
        self,
        user_key: str,
        address_key: str,
        user_limit: int,
        address_limit: int,
        now_ms: int,
        backoff_ms: int,
        max_backoff_ms: int,
        window_ms: int,
    ) -> None:
        """Count a failed attempt in both buckets; from the limit on, each failure refuses logins for
        ``backoff_ms`` doubling per further failure up to ``max_backoff_ms``. A bucket is forgotten ``window_ms``
        after its last failure's backoff ends."""
        keys = [user_key, user_key + ":busy", address_key, address_key + ":busy"]
        args = [now_ms, user_limit, address_limit, backoff_ms, max_backoff_ms, window_ms]
        self._write(lambda: self._r.register_script(self._LOGIN_FAILED)(keys=keys, args=args))

    def login_done(self, user_key: str, address_key: str, forget: list[str]) -> None:
        """End an admitted attempt that did not fail (or failed before checking a password); ``forget`` the user
        buckets a success resets. The address bucket is never reset by a success."""
        keys = [user_key + ":busy", address_key + ":busy"]
        self._write(lambda: self._r.register_script(self._LOGIN_DONE)(keys=keys, args=forget))
