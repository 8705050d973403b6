"""Device passwords, in one home every agent reads: Redis.

What is stored is never a password: a salted scrypt hash per device, in one Redis hash per tenant
(``ondas:device-credentials:<tenant>``, field = device id, value ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` with
base64 salt and hash). The MQTT agent's credentials API writes it (:meth:`CredentialStore.set_password`); the
HTTP agent verifies it (:meth:`CredentialStore.verify`) and deletes a removed device's entry.

Hot path: a slow hash on every request would cost tens of milliseconds of CPU, so successful verifications are
remembered in the process for a short time (``cache_ttl`` seconds), keyed by a keyed fast hash (HMAC-SHA256
with a per-process random key) of the password; the password itself is never kept. Failed verifications are
remembered the same way, so a device that keeps sending a wrong password does not cost a slow hash each time.
Every change of a device's credentials (new password, removal) is announced on the Redis channel
``ondas:device-credentials:changed`` (message ``<tenant>:<device-id>``); :meth:`CredentialStore.listen` drops
the cached verdicts of that device, and the whole cache whenever the subscription had to be reopened (changes
may have been missed meanwhile). The short lifetime bounds how long a missed announcement can matter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from ondas.errors import Unavailable

log = logging.getLogger("agents.core.credentials")

KEY_PREFIX = "ondas:device-credentials:"
CHANGES_CHANNEL = "ondas:device-credentials:changed"
SCHEME = "scrypt"
# scrypt cost: 16 MiB of memory and some tens of milliseconds per hash.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024
_SALT_BYTES = 16
_HASH_BYTES = 32


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The stored form of ``password``: ``scrypt$n$r$p$<salt>$<hash>``."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=_HASH_BYTES)
    return "$".join((SCHEME, str(n), str(r), str(p), _b64(salt), _b64(digest)))


def check_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a value made by :func:`hash_password` (False for anything unreadable)."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, OverflowError):  # wrong field count, bad base64 or numbers, parameters scrypt refuses
        return False
    return hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tenant_key(tenant: str) -> str:
    return KEY_PREFIX + tenant


class CredentialStore:
    """Device credentials in Redis, with a short in-process cache of verdicts. Thread-safe."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        cache_ttl: float = 10.0,
        cache_size: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        hasher: Callable[[str], str] = hash_password,
    ) -> None:
        self._redis = client
        self._ttl = cache_ttl
        self._size = cache_size
        self._clock = clock
        self._hash = hasher
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        # (tenant, device) -> {fast hash of a password: (verdict, valid until)}
        self._verdicts: dict[tuple[str, str], dict[bytes, tuple[bool, float]]] = {}
        self.listening = threading.Event()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> CredentialStore:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)
        return cls(client, **kwargs)

    # -- writers -------------------------------------------------------------------------------------------
    def set_password(self, tenant: str, device_id: str, password: str) -> None:
        """Store (or replace) the device's password hash and announce the change."""
        encoded = self._hash(password)
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(tenant_key(tenant), device_id, encoded)
            pipe.publish(CHANGES_CHANNEL, f"{tenant}:{device_id}")
            pipe.execute()
        except redis.RedisError as exc:
            raise Unavailable(f"the credential store is not reachable: {exc}") from exc
        self.invalidate(tenant, device_id)

    def delete(self, tenant: str, device_id: str) -> bool:
        """Forget the device's password (True when it had one) and announce the change."""
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hdel(tenant_key(tenant), device_id)
            pipe.publish(CHANGES_CHANNEL, f"{tenant}:{device_id}")
            removed, _ = pipe.execute()
        except redis.RedisError as exc:
            raise Unavailable(f"the credential store is not reachable: {exc}") from exc
        self.invalidate(tenant, device_id)
        return bool(removed)

    # -- readers -------------------------------------------------------------------------------------------
    def device_ids(self, tenant: str) -> list[str]:
        """The devices of ``tenant`` that have a stored password."""
        try:
            keys = self._redis.hkeys(tenant_key(tenant))
        except redis.RedisError as exc:
            raise Unavailable(f"the credential store is not reachable: {exc}") from exc
        return sorted(k.decode() if isinstance(k, bytes) else str(k) for k in keys)

    def has_password(self, tenant: str, device_id: str) -> bool:
        try:
            return bool(self._redis.hexists(tenant_key(tenant), device_id))
        except redis.RedisError as exc:
            raise Unavailable(f"the credential store is not reachable: {exc}") from exc

    def verify(self, tenant: str, device_id: str, password: str) -> bool:
        """Whether ``password`` is the device's password. Raises Unavailable when Redis cannot be asked."""
        device = (tenant, device_id)
        fast = hmac.new(self._key, password.encode(), hashlib.sha256).digest()
        now = self._clock()
        with self._lock:
            cached = self._verdicts.get(device, {}).get(fast)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            raw = self._redis.hget(tenant_key(tenant), device_id)
        except redis.RedisError as exc:
            raise Unavailable(f"the credential store is not reachable: {exc}") from exc
        encoded = raw.decode() if isinstance(raw, bytes) else raw
        verdict = isinstance(encoded, str) and check_password(password, encoded)
        self._remember(device, fast, verdict, now + self._ttl)
        return verdict

    def _remember(self, device: tuple[str, str], fast: bytes, verdict: bool, until: float) -> None:
        with self._lock:
            if len(self._verdicts) >= self._size and device not in self._verdicts:
                self._verdicts.clear()  # crude but bounded; entries only ever save work
            entries = self._verdicts.setdefault(device, {})
            if len(entries) >= 8:  # a device guessing many passwords keeps only its latest verdicts
                entries.clear()
            entries[fast] = (verdict, until)

    def invalidate(self, tenant: str, device_id: str) -> None:
        with self._lock:
            self._verdicts.pop((tenant, device_id), None)

    def invalidate_all(self) -> None:
        with self._lock:
            self._verdicts.clear()

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False

    # -- change announcements --------------------------------------------------------------------------------
    def listen(self, stop: threading.Event, retry_backoff: float = 1.0) -> None:
        """Follow the change announcements until ``stop`` is set (run it on a thread of its own)."""
        while not stop.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(CHANGES_CHANNEL)
                # Whatever changed while not subscribed is unknown: start from an empty cache.
                self.invalidate_all()
                self.listening.set()
                while not stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None or message.get("type") != "message":
                        continue
                    data = message.get("data")
                    text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
                    tenant, _, device_id = text.partition(":")
                    self.invalidate(tenant, device_id)
            except redis.RedisError as exc:
                self.listening.clear()
                log.warning("credential change announcements interrupted", extra={"error": str(exc)})
                stop.wait(retry_backoff)
            finally:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass
        self.listening.clear()

    def close(self) -> None:
        self._redis.close()
