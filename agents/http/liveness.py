"""Device liveness over HTTP: ``online`` / ``offline`` events on ``<tenant>.device-liveness``.

HTTP has no connection to watch, so liveness is last-seen: a device is online from its first authenticated
request after being offline (``online``, reason ``message``) until nothing arrived from it for
``timeout`` seconds (``offline``, reason ``timeout``).

Last-seen times live in Redis, one sorted set per tenant (``ondas:http-agent:last-seen:<tenant>``, member =
device id, score = agent time in epoch ms), so every agent process (and a restarted one) shares them:

- a request does ``ZADD``; the member being new means the device was offline, and this request publishes
  ``online`` (exactly one request does, however many processes serve the device);
- a sweeper removes the members older than the timeout with one atomic script and publishes ``offline`` for
  exactly the members it removed (two sweepers never both take a device).

A removed device is forgotten without an event. If Kafka does not accept an ``online`` event the device is
forgotten again, so its next request announces it anew; an ``offline`` event is retried while the process
runs.

This module is the HTTP trigger only; the events are built, sent and counted by the agents' one liveness
publisher (agents/core/liveness.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

import redis

from agents.core.liveness import Event, LivenessPublisher
from agents.http.metrics import LIVENESS
from ondas.contracts import DeviceLiveness
from ondas.errors import Unavailable
from ondas.kafka import Producer
from ondas.timestamps import now_ms

log = logging.getLogger("agents.http.liveness")

PROTOCOL = "http"
KEY_PREFIX = "ondas:http-agent:last-seen:"
ONLINE_REASON = "message"
OFFLINE_REASON = "timeout"

# Members of KEYS[1] scored at most ARGV[1], at most ARGV[2] of them, removed and returned in one step.
_EXPIRE = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #expired > 0 then redis.call('ZREM', KEYS[1], unpack(expired)) end
return expired
"""


class LastSeen:
    """Last-seen times in Redis (see the module docstring)."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._expire = client.register_script(_EXPIRE)

    def seen(self, tenant: str, device_id: str, at_ms: int) -> bool:
        """Record a request of the device; True when it was offline (it had no last-seen time)."""
        try:
            return bool(self._redis.zadd(KEY_PREFIX + tenant, {device_id: at_ms}))
        except redis.RedisError as exc:
            raise Unavailable(f"the last-seen store is not reachable: {exc}") from exc

    def forget(self, tenant: str, device_id: str) -> None:
        try:
            self._redis.zrem(KEY_PREFIX + tenant, device_id)
        except redis.RedisError as exc:
            raise Unavailable(f"the last-seen store is not reachable: {exc}") from exc

    def expire(self, tenant: str, cutoff_ms: int, limit: int = 1000) -> list[str]:
        """Take the devices of ``tenant`` last seen at or before ``cutoff_ms``."""
        try:
            members = self._expire(keys=[KEY_PREFIX + tenant], args=[cutoff_ms, limit])
        except redis.RedisError as exc:
            raise Unavailable(f"the last-seen store is not reachable: {exc}") from exc
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]


class Liveness:
    def __init__(
        self,
        last_seen: LastSeen,
        producer: Producer,
        timeout_s: float,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._last_seen = last_seen
        self._publisher = LivenessPublisher(producer, PROTOCOL, LIVENESS, clock)
        self._timeout_ms = int(timeout_s * 1000)
        self._clock = clock
        self._lock = threading.Lock()
        self._retry: list[DeviceLiveness] = []

    # -- request path --------------------------------------------------------------------------------------
    def seen(self, tenant: str, device_id: str) -> Future[Any] | None:
        """Record a request; the delivery of the ``online`` event when this request brought the device online."""
        if not self._last_seen.seen(tenant, device_id, self._clock()):
            return None
        return self._send(self._event(tenant, device_id, "online", ONLINE_REASON))

    def online_failed(self, tenant: str, device_id: str) -> None:
        """Kafka did not take the ``online`` event: forget the device so its next request announces it."""
        try:
            self._last_seen.forget(tenant, device_id)
        except Unavailable as exc:
            log.warning("could not forget a device", extra={"tenant": tenant, "device": device_id, "error": str(exc)})

    def forget(self, tenant: str, device_id: str) -> None:
        """A removed device: no longer tracked, no event."""
        self._last_seen.forget(tenant, device_id)
        self._publisher.forget(tenant, device_id)

    # -- sweeper -------------------------------------------------------------------------------------------
    def sweep(self, tenants: Iterable[str]) -> int:
        """Announce offline every device of ``tenants`` silent for longer than the timeout; the number of
        offline events Kafka accepted. Events Kafka refused are retried by the next sweep."""
        with self._lock:
            events, self._retry = self._retry, []
        cutoff = self._clock() - self._timeout_ms
        for tenant in sorted(tenants):
            events += [
                self._event(tenant, d, "offline", OFFLINE_REASON) for d in self._last_seen.expire(tenant, cutoff)
            ]
        sent = 0
        for event, delivery in [(e, self._send(e)) for e in events]:
            try:
                delivery.result(30)
                sent += 1
            except Exception as exc:  # noqa: BLE001  (Unavailable or a timeout: try again on the next sweep)
                log.warning("Kafka did not accept an offline event, retrying", extra={"error": str(exc)})
                with self._lock:
                    self._retry.append(event)
        return sent

    def run(self, tenants: Callable[[], Iterable[str]], stop: threading.Event) -> None:
        """Sweep until ``stop`` is set (on a thread of its own), a few times per timeout."""
        interval = max(0.2, min(5.0, self._timeout_ms / 4000))
        while not stop.wait(interval):
            try:
                self.sweep(tenants())
            except Exception:  # Redis away: keep sweeping once it is back
                log.exception("liveness sweep failed")

    # -- events --------------------------------------------------------------------------------------------
    def _event(self, tenant: str, device_id: str, event: Event, reason: str) -> DeviceLiveness:
        return self._publisher.message(tenant, device_id, event, reason)

    def _send(self, message: DeviceLiveness) -> Future[Any]:
        return self._publisher.send(message)
