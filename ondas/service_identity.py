"""Service identity: how one platform service proves to another (auth's internal routes) who it is.

Services never hold user passwords. The platform keeps one master secret that only auth receives; every other
service receives its own key, derived from the master secret and the service's name with HMAC-SHA256. A caller
sends ``Authorization: Service <name>:<key>``; auth derives the key for ``<name>`` again and compares. A leaked key
names the one service it belongs to and cannot be turned into the key of another service.

Other services cannot verify a key (they do not hold the master secret): a service that serves internal routes
(the device manager's ``/internal/...``) asks auth's ``GET /admin/service-identity`` with its caller's header
(:class:`ServiceIdentityVerifier`, which caches the answer).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections import OrderedDict
from typing import Generic, TypeVar

import requests

from ondas.errors import Unauthenticated, Unavailable

log = logging.getLogger("ondas.service_identity")

SCHEME = "Service"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def derive_service_key(master_secret: str, service: str) -> str:
    """The key of ``service`` under ``master_secret`` (hex)."""
    if not master_secret:
        raise ValueError("the master secret of service identities is empty")
    if not _NAME_RE.match(service):
        raise ValueError(f"invalid service name {service!r}")
    return hmac.new(master_secret.encode(), f"ondas-service:{service}".encode(), hashlib.sha256).hexdigest()


def service_authorization(service: str, key: str) -> str:
    """The value of the ``Authorization`` header a service sends on internal calls."""
    return f"{SCHEME} {service}:{key}"


def parse_service_authorization(header: str | None) -> tuple[str, str] | None:
    """``(name, key)`` from an ``Authorization: Service <name>:<key>`` header; None when it is not one."""
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != SCHEME.lower():
        return None
    name, sep, key = rest.strip().partition(":")
    if not sep or not _NAME_RE.match(name) or not key:
        return None
    return name, key


def verify_service_key(master_secret: str, service: str, key: str) -> bool:
    """True when ``key`` is the key of ``service`` under ``master_secret``."""
    if not master_secret:
        return False
    try:
        expected = derive_service_key(master_secret, service)
    except ValueError:
        return False
    return hmac.compare_digest(expected, key)


K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A small thread-safe cache whose entries expire ``ttl`` seconds after they were put (0: caches nothing);
    at most ``max_entries``, the oldest going first."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._entries[key]
                return None
            return entry[1]

    def put(self, key: K, value: V) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (time.monotonic() + self.ttl, value)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


class ServiceIdentityVerifier:
    """Verifies a caller's ``Authorization: Service <name>:<key>`` by asking auth (``GET /admin/service-identity``
    with that header), caching auth's answer (the name, or the refusal) for ``ttl`` seconds. Anything that is not
    a service identity (no header, a user's Bearer token) is refused with 401 without asking; 503 (fail closed,
    not cached) when auth does not answer."""

    def __init__(self, auth_url: str, ttl: float = 60.0, timeout: float = 3.0) -> None:
        self._url = f"{auth_url.rstrip('/')}/admin/service-identity"
        self._timeout = timeout
        self._cache: TtlCache[str, str] = TtlCache(ttl)  # sha256 of the header -> name, or "" for a refusal

    def verify(self, authorization: str | None) -> str:
        if parse_service_authorization(authorization) is None:
            raise Unauthenticated(f"internal routes need a service identity: '{SCHEME} <name>:<key>'")
        assert authorization is not None
        key = hashlib.sha256(authorization.encode()).hexdigest()
        name = self._cache.get(key)
        if name is None:
            name = self._ask(authorization)
            self._cache.put(key, name)
        if not name:
            raise Unauthenticated("unknown service identity")
        return name

    def _ask(self, authorization: str) -> str:
        try:
            resp = requests.get(self._url, headers={"Authorization": authorization}, timeout=self._timeout)
        except requests.RequestException as exc:
            log.warning("auth did not answer a service identity check", extra={"error": type(exc).__name__})
            raise Unavailable("cannot check the service identity: auth does not answer; try again later") from exc
        if resp.status_code == 401:
            return ""
        if resp.status_code == 200:
            try:
                name = resp.json().get("service")
            except (ValueError, AttributeError):
                name = None
            if isinstance(name, str) and name:
                return name
        raise Unavailable(f"cannot check the service identity: auth answered {resp.status_code}; try again later")
