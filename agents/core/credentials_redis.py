"""Device passwords, in one home every agent reads: the Redis adapter of the device credential store.

One owner: the MQTT agent writes the store (its credentials API, :meth:`RedisCredentialStore.set_password`) and
is the one that deletes from it (a removed device's entry on the device-removal event, before committing it; a
deleted tenant's entries on the tenant purge). Every other agent only reads it, through
:class:`CredentialReader` (the HTTP agent verifies passwords, :meth:`RedisCredentialStore.verify`).

What is stored is never a password: a salted scrypt hash per device, in one Redis hash per tenant
(``ondas:device-credentials:<tenant>``, field = device id, value ``scrypt$<n>$<r>$<p>$<salt>$<hash>|<mac>`` with
base64 salt and hash).

Integrity: ``<mac>`` is the hex HMAC-SHA256 of ``ondas-device-credential:v1\n<tenant>\n<device id>\n<hash>`` under a
key only the agents hold (:func:`derive_integrity_key` of the setting ``*_CREDENTIALS_KEY``, which ``make up``
generates once). A hash planted in Redis by hand, or copied from another device or tenant, does not verify, and
the device is refused as if it had no password. Entries of earlier versions (no ``|<mac>``) are treated the same:
after an upgrade such devices need new credentials (set them again through the credentials API).

Hot path: a slow hash on every request would cost tens of milliseconds of CPU, so successful verifications are
remembered in the process for a short time (``cache_ttl`` seconds), keyed by a keyed fast hash (HMAC-SHA256
with a per-process random key) of the password; the password itself is never kept. Failed verifications are
remembered the same way, so a device that keeps sending a wrong password does not cost a slow hash each time.
Every change of a device's credentials (new password, removal) is announced on the Redis channel
``ondas:device-credentials:changed`` (message ``<tenant>:<device-id>``); :meth:`RedisCredentialStore.listen` drops
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
from typing import Any, Protocol

import redis
from prometheus_client import Counter

from ondas.errors import Unavailable

log = logging.getLogger("agents.core.credentials_redis")

KEY_PREFIX = "ondas:device-credentials:"
INTEGRITY_LABEL = b"ondas-device-credentials:v1"
CHANGES_CHANNEL = "ondas:device-credentials:changed"
SCHEME = "scrypt"
INTEGRITY_FAILURES = Counter(
    "ondas_device_credential_integrity_failures_total",
    "Stored device password hashes not bound to their device by the agents' key (treated as absent)",
)
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


def derive_integrity_key(secret: str) -> bytes:
    """The HMAC key that binds stored hashes to their tenant and device, from the agents' shared secret."""
    if not secret:
        raise ValueError("the device credential key is empty (MQTT_AGENT_CREDENTIALS_KEY / HTTP_AGENT_CREDENTIALS_KEY)")
    return hmac.new(secret.encode(), INTEGRITY_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tenant_key(tenant: str) -> str:
    return KEY_PREFIX + tenant


class CredentialReader(Protocol):
    """What a reading agent may do with the store (the HTTP agent): verify, follow the changes, be health-checked."""

    listening: threading.Event

    def verify(self, tenant: str, device_id: str, password: str) -> bool: ...

    def listen(self, stop: threading.Event, retry_backoff: float = 1.0) -> None: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


class RedisCredentialStore:
    """Device credentials in Redis, with a short in-process cache of verdicts. Thread-safe."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        integrity_key: str,
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
        self._integrity = derive_integrity_key(integrity_key)
        self._warned = False
        self._lock = threading.Lock()
        # (tenant, device) -> {fast hash of a password: (verdict, valid until)}
        self._verdicts: dict[tuple[str, str], dict[bytes, tuple[bool, float]]] = {}
        self.listening = threading.Event()

    @classmethod
    def from_url(cls, url: str, *, integrity_key: str, **kwargs: Any) -> RedisCredentialStore:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)
        return cls(client, integrity_key=integrity_key, **kwargs)

    # -- integrity -----------------------------------------------------------------------------------------
    def _mac(self, tenant: str, device_id: str, encoded: str) -> str:
        message = f"ondas-device-credential:v1\n{tenant}\n{device_id}\n{encoded}".encode()
        return hmac.new(self._integrity, message, hashlib.sha256).hexdigest()

    def stored_form(self, tenant: str, device_id: str, encoded: str) -> str:
        """What is kept in Redis for the hash ``encoded`` of the device: the hash bound to the device by an HMAC."""
        return f"{encoded}|{self._mac(tenant, device_id, encoded)}"

    def _opened(self, tenant: str, device_id: str, raw: object) -> str | None:
        """The hash of a stored entry, or None when it is absent or not bound to this device by our key."""
        if raw is None:
            return None
        stored = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        encoded, sep, mac = stored.rpartition("|")
        if sep and hmac.compare_digest(self._mac(tenant, device_id, encoded), mac):
            return encoded
        INTEGRITY_FAILURES.inc()
        if not self._warned:
            self._warned = True
            log.warning(
                "a stored device password hash is not bound to its device by the agents' key; treated as absent "
                "(written by hand, copied from another device, or from a version before the binding: set the "
                "device's credentials again)",
                extra={"tenant": tenant, "device_id": device_id},
            )
        return None

    # -- writers -------------------------------------------------------------------------------------------
    def set_password(self, tenant: str, device_id: str, password: str) -> None:
        """Store (or replace) the device's password hash and announce the change."""
        encoded = self.stored_form(tenant, device_id, self._hash(password))
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
            raw = self._redis.hget(tenant_key(tenant), device_id)
        except redis.RedisError as exc:
            raise Unavailable(f"the credential store is not reachable: {exc}") from exc
        return self._opened(tenant, device_id, raw) is not None

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
        encoded = self._opened(tenant, device_id, raw)
        verdict = encoded is not None and check_password(password, encoded)
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
