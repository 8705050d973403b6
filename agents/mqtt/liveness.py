"""Device liveness over MQTT: online/offline events on ``<tenant>.device-liveness``.

Mosquitto 2.0 has no per-client connect/disconnect notification topic, but it publishes its own log lines on
``$SYS/broker/log/<level>`` (``log_dest topic``), and with ``connection_messages true`` every connection and
every end of one is a notice-level line (``$SYS/broker/log/N``) there:

- ``New client connected from <addr> as <client-id> (p<v>, c<c>, k<keepalive>, u'<username>').``
- ``Client <client-id> disconnected.`` (the device sent DISCONNECT: a clean disconnect)
- ``Client <client-id> closed its connection.`` / ``Socket error on client <client-id>, disconnecting.`` /
  ``Bad socket read/write on client <client-id>: ...`` / ``Client <client-id> disconnected due to ...`` (the
  connection dropped or was broken)
- ``Client <client-id> has exceeded timeout, disconnecting.`` (keep-alive expired: the network went silent)
- ``Client <client-id> been disconnected by administrative action.`` / ``... disconnected, not authorised.``
  (kicked by the platform)

The agent (only the internal listener may read ``$SYS``) keeps client id -> device from the connect lines,
since the disconnect lines carry only the client id. The username is the device's identity
``<tenant>:<device-id>`` on every device listener (unsecured mode, credentials mode, and mTLS where the
certificate CN becomes the username), so the connect line names the device; lines of other clients (the
agent itself, anonymous clients) are ignored, and so are devices the device cache does not know.

A device is online while it has at least one connection: every connect publishes ``online`` (a reconnect
re-announces it), and ``offline`` is published when its last connection ends. A device's own last will is
an ordinary message on its ``attrs`` topic (the ACL allows nothing else); the broker-side offline event above
is what the platform relies on for a dropped connection.

Limits (documented in docs/kafka-contract.md): devices that connected before this agent process first
subscribed are unknown to it until they reconnect, and should the agent restart, disconnects of connections
it never saw are not attributed. Run liveness on exactly one agent process (``MQTT_AGENT_LIVENESS``):
every process that has it on publishes the events.

This module is the MQTT trigger only; the events are built, sent and counted by the agents' one liveness
publisher (agents/core/liveness.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from agents.core.cache import DeviceCache
from agents.core.delivery import until_accepted
from agents.core.liveness import Event, LivenessPublisher
from agents.core.payload import Drop, parse_device
from agents.mqtt.metrics import LIVENESS, UNKNOWN_TENANT
from ondas.contracts import DeviceLiveness
from ondas.kafka import Producer
from ondas.timestamps import now_ms

log = logging.getLogger("agents.mqtt.liveness")

LOG_TOPIC = "$SYS/broker/log/N"
PROTOCOL = "mqtt"

# Reasons on the wire (bounded: they are also metric label values).
CONNECTED = "connected"
DISCONNECTED = "disconnected"  # clean: the device sent DISCONNECT
CONNECTION_LOST = "connection_lost"  # the socket closed or broke without DISCONNECT
KEEPALIVE_TIMEOUT = "keepalive_timeout"  # nothing heard within 1.5 x keep-alive
KICKED = "kicked"  # the platform ended the session (device removed, disabled, credentials revoked)
TAKEN_OVER = "taken_over"  # another device connected with the same client id

_TIMESTAMP = re.compile(r"^\d+: ")
# Anchored at the end: the username is the last thing on the line, so a client id that imitates the
# "(p.., u'..')" part cannot pass for a username (the greedy client id group swallows the imitation).
_CONNECT = re.compile(r"^New client connected from \S+ as (?P<cid>.*) \(p\d+, c\d, k\d+(?:, u'(?P<user>.*)')?\)\.$")
_ENDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^Client (?P<cid>.*) disconnected\.$"), DISCONNECTED),
    (re.compile(r"^Client (?P<cid>.*) closed its connection\.$"), CONNECTION_LOST),
    (re.compile(r"^Client (?P<cid>.*) has exceeded timeout, disconnecting\.$"), KEEPALIVE_TIMEOUT),
    (re.compile(r"^Client (?P<cid>.*) been disconnected by administrative action\.$"), KICKED),
    (re.compile(r"^Client (?P<cid>.*) disconnected, not authorised\.$"), KICKED),
    (re.compile(r"^Socket error on client (?P<cid>.*), disconnecting\.$"), CONNECTION_LOST),
    (re.compile(r"^Bad socket read/write on client (?P<cid>.*): .*$"), CONNECTION_LOST),
    (re.compile(r"^Client (?P<cid>.*) disconnected due to .*\.$"), CONNECTION_LOST),
    (re.compile(r"^Client (?P<cid>.*) disconnected: .*\.$"), CONNECTION_LOST),
)


@dataclass(frozen=True)
class LogLine:
    """What one broker log line says about a connection: ``kind`` is ``connect`` or ``end``."""

    kind: str
    client_id: str
    username: str | None = None
    reason: str = CONNECTED


def parse_log_line(line: str) -> LogLine | None:
    """A connection's start or end, or None for any other log line."""
    text = _TIMESTAMP.sub("", line.strip(), count=1)
    m = _CONNECT.match(text)
    if m:
        return LogLine("connect", m["cid"], m["user"])
    for pattern, reason in _ENDS:
        m = pattern.match(text)
        if m:
            return LogLine("end", m["cid"], reason=reason)
    return None


Device = tuple[str, str]  # (tenant, device id)


class LivenessTracker:
    """Turns broker log lines into liveness events; pure state, no I/O (``emit`` does the publishing; the events
    are built by ``publisher``, by default one of its own without a producer)."""

    def __init__(
        self,
        cache: DeviceCache,
        emit: Callable[[DeviceLiveness], None],
        clock: Callable[[], int] = now_ms,
        publisher: LivenessPublisher | None = None,
    ) -> None:
        self._cache = cache
        self._emit = emit
        self._clients: dict[str, Device] = {}
        self._sessions: dict[Device, set[str]] = {}
        self._events = publisher or LivenessPublisher(None, PROTOCOL, LIVENESS, clock)

    def online(self) -> frozenset[Device]:
        return frozenset(self._sessions)

    def handle(self, line: str) -> None:
        parsed = parse_log_line(line)
        if parsed is None:
            return
        if parsed.kind == "connect":
            self._connected(parsed)
        else:
            self._ended(parsed.client_id, parsed.reason)

    def _connected(self, line: LogLine) -> None:
        previous = self._clients.get(line.client_id)
        device = self._device(line.username)
        if previous is not None and previous != device:
            # The same client id now belongs to another identity: the old connection was closed by the broker.
            self._ended(line.client_id, TAKEN_OVER)
        if device is None:
            return
        self._clients[line.client_id] = device
        self._sessions.setdefault(device, set()).add(line.client_id)
        self._publish(device, "online", CONNECTED)

    def _ended(self, client_id: str, reason: str) -> None:
        device = self._clients.pop(client_id, None)
        if device is None:
            return
        sessions = self._sessions.get(device, set())
        sessions.discard(client_id)
        if sessions:
            return  # another connection of the device is still up
        self._sessions.pop(device, None)
        self._publish(device, "offline", reason)

    def _device(self, username: str | None) -> Device | None:
        if not username:
            return None
        try:
            ref = parse_device(username)
        except Drop:
            return None
        if self._cache.get(ref.tenant, ref.device_id) is None:
            LIVENESS.labels(self._label(ref.tenant), "ignored", "unknown_device").inc()
            return None
        return ref.tenant, ref.device_id

    def _label(self, tenant: str) -> str:
        return tenant if self._cache.has_tenant(tenant) else UNKNOWN_TENANT

    def _publish(self, device: Device, event: Event, reason: str) -> None:
        tenant, device_id = device
        self._emit(self._events.message(tenant, device_id, event, reason))


class LivenessBridge:
    """The MQTT side: each broker log message is handled in arrival order (the tracker's state changes and the
    events are queued to the producer before the first await), and the handler returns, so the PUBACK goes to
    the broker, only after Kafka accepted every event the line caused."""

    def __init__(
        self,
        *,
        cache: DeviceCache,
        producer: Producer,
        clock: Callable[[], int] = now_ms,
        retry_backoff: tuple[float, float] = (0.5, 5.0),
    ) -> None:
        self._publisher = LivenessPublisher(producer, PROTOCOL, LIVENESS, clock)
        self._backoff = retry_backoff
        self._pending: list[tuple[DeviceLiveness, Future[Any]]] = []
        self.tracker = LivenessTracker(cache, self._queue, clock, self._publisher)

    def _queue(self, message: DeviceLiveness) -> None:
        self._pending.append((message, self._send(message)))

    def _send(self, message: DeviceLiveness) -> Future[Any]:
        return self._publisher.send(message)

    async def handle(self, topic: str, payload: bytes) -> int:
        try:
            self.tracker.handle(payload.decode("utf-8", errors="replace"))
        except Exception:  # a bug must not leave the broker's message unacknowledged forever
            log.exception("broker log line could not be handled", extra={"topic": topic})
        pending, self._pending = self._pending, []
        for message, delivery in pending:
            await self._deliver(message, delivery)
        return 0

    async def _deliver(self, message: DeviceLiveness, delivery: Future[Any]) -> None:
        def retrying(exc: Exception) -> None:
            log.warning("Kafka did not accept a liveness event, retrying", extra={"error": str(exc)})

        await until_accepted(delivery, lambda: self._send(message), self._backoff, retrying)
