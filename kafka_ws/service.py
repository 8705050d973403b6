"""The rules of kafka_ws: issuing and redeeming tickets, who may read which topic, and the fan-out of each Kafka
message to the connections of this process (bounded queue per connection; a full queue closes that connection
only, with 4429, and never waits)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from kafka_ws.models import CloseCode, CloseError, Filter, TicketPayload, is_ticket, sign_payload, verify_payload
from kafka_ws.store_redis import SOCKETIO_PREFIX, TICKET_PREFIX, RedisTicketStore
from ondas.topics import DEVICE_DATA, NOTIFICATIONS
from ondas.topics import parse as parse_topic

log = logging.getLogger("kafka_ws.service")

CONNECTIONS = Gauge("kafka_ws_connections", "Open connections", ["tenant", "interface"])
SENT = Counter("kafka_ws_messages_sent_total", "Messages sent to clients", ["tenant", "interface"])
DROPPED = Counter(
    "kafka_ws_messages_dropped_total", "Messages not sent to a client that could not keep up", ["tenant", "interface"]
)
CLOSED = Counter("kafka_ws_connections_closed_total", "Connections closed by the server, by close code", ["code"])
SLOW_CLIENTS = Counter("kafka_ws_slow_clients_total", "Connections closed because they could not keep up", ["tenant"])
FANNED_OUT = Counter("kafka_ws_kafka_messages_total", "Kafka messages handed to the fan-out", ["tenant"])


class Tickets:
    """Tickets (websocket) and one-time tokens (socket.io): signed payloads in Redis, taken once."""

    def __init__(self, store: RedisTicketStore, secret: str, ttl_seconds: int) -> None:
        self._store = store
        self._secret = secret.encode()
        self.ttl_seconds = ttl_seconds

    async def issue(self, tenant: str, user: str) -> str:
        ticket = secrets.token_hex(32)
        await self._put(TICKET_PREFIX, ticket, tenant, user)
        return ticket

    async def issue_socketio(self, tenant: str, user: str) -> str:
        token = str(uuid.uuid4())
        await self._put(SOCKETIO_PREFIX, token, tenant, user)
        return token

    async def _put(self, prefix: str, ticket: str, tenant: str, user: str) -> None:
        payload = TicketPayload(tenant, user, time.time() + self.ttl_seconds)
        await self._store.put(prefix, ticket, sign_payload(payload, self._secret), self.ttl_seconds)

    async def redeem(self, ticket: str) -> TicketPayload:
        """The payload of a websocket ticket, which can never be used again; CloseError(INVALID_TICKET) for a
        missing, malformed, unknown, used, expired or altered one. Redis away: Unavailable."""
        if not ticket:
            raise CloseError(CloseCode.INVALID_TICKET, "the query parameter 'ticket' is required")
        if not is_ticket(ticket):
            raise CloseError(CloseCode.INVALID_TICKET, "a ticket is 64 hexadecimal characters")
        return await self._take(TICKET_PREFIX, ticket)

    async def redeem_socketio(self, token: str) -> TicketPayload:
        if not token:
            raise CloseError(CloseCode.INVALID_TICKET, "the query parameter 'token' is required")
        return await self._take(SOCKETIO_PREFIX, token)

    async def _take(self, prefix: str, ticket: str) -> TicketPayload:
        stored = await self._store.take(prefix, ticket)
        if stored is None:
            raise CloseError(CloseCode.INVALID_TICKET, "unknown ticket: never issued, expired, or used already")
        payload = verify_payload(stored, self._secret)
        if payload.expires_at < time.time():
            raise CloseError(CloseCode.INVALID_TICKET, "the ticket has expired")
        return payload


def authorize_topic(tenant: str, name: str) -> None:
    """A tenant reads only its own topics (``<tenant>.<subject>``): CloseError(INVALID_PATHNAME) for a name that
    is not a topic, CloseError(FORBIDDEN_TOPIC) for another tenant's (or a platform-wide) topic."""
    try:
        parsed = parse_topic(name)
    except ValueError as exc:
        raise CloseError(CloseCode.INVALID_PATHNAME, f"{name!r} is not a topic name <tenant>.<subject>") from exc
    if parsed.tenant != tenant:
        raise CloseError(CloseCode.FORBIDDEN_TOPIC, f"tenant {tenant!r} may not read topic {name!r}")


class WsSubscriber:
    """One websocket connection's place in the fan-out: its topic, filter and bounded queue of frames."""

    def __init__(
        self, tenant: str, topic: str, flt: Filter, queue_size: int, on_slow: Callable[[WsSubscriber], None]
    ) -> None:
        self.tenant = tenant
        self.topic = topic
        self.filter = flt
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self.slow = False
        self._on_slow = on_slow

    def offer(self, frame: str) -> None:
        """Queue a frame without waiting; a full queue marks the connection slow and has it closed."""
        if self.slow:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.slow = True
            DROPPED.labels(self.tenant, "websocket").inc()
            SLOW_CLIENTS.labels(self.tenant).inc()
            self._on_slow(self)


class RealtimeSink(Protocol):
    """Where device data and notifications of a tenant go besides websocket subscribers (the socket.io side)."""

    def wants(self, tenant: str, subject: str) -> bool:
        """Whether anyone of ``tenant`` listens to ``subject`` (device-data or notifications) here."""
        ...

    def topics(self) -> frozenset[str]:
        """The topics someone listens to through this sink."""
        ...

    def device_data(self, tenant: str, message: Any) -> None: ...

    def notification(self, tenant: str, message: Any) -> None: ...


class Hub:
    """The fan-out of one process. Every method runs on the event loop's thread."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._by_topic: dict[str, set[WsSubscriber]] = {}
        self.sinks: list[RealtimeSink] = []
        #: called when a topic gets its first subscriber or loses its last one
        self.on_change = on_change

    def add(self, sub: WsSubscriber) -> None:
        subs = self._by_topic.setdefault(sub.topic, set())
        subs.add(sub)
        if len(subs) == 1 and self.on_change is not None:
            self.on_change()

    def remove(self, sub: WsSubscriber) -> None:
        subs = self._by_topic.get(sub.topic)
        if subs is not None and sub in subs:
            subs.discard(sub)
            if not subs:
                del self._by_topic[sub.topic]
                if self.on_change is not None:
                    self.on_change()

    def topics(self) -> frozenset[str]:
        """The topics that have websocket subscribers here."""
        return frozenset(self._by_topic)

    def subscribers(self, topic: str) -> int:
        return len(self._by_topic.get(topic, ()))

    def dispatch(self, batch: Iterable[tuple[str, bytes]]) -> None:
        for topic, value in batch:
            self._dispatch_one(topic, value)

    def _dispatch_one(self, topic: str, value: bytes) -> None:
        try:
            parsed = parse_topic(topic)
        except ValueError:
            return
        FANNED_OUT.labels(parsed.tenant).inc()
        subs = self._by_topic.get(topic)
        sinks = (
            [k for k in self.sinks if k.wants(parsed.tenant, parsed.subject)]
            if parsed.subject in (DEVICE_DATA, NOTIFICATIONS)
            else []
        )
        wants_sink = bool(sinks)
        if not subs and not wants_sink:
            return
        raw = value.decode("utf-8", "replace")
        message: Any = None
        decoded = False
        if wants_sink or (subs and any(not s.filter.is_identity for s in subs)):
            try:
                message = json.loads(raw)
                decoded = True
            except ValueError:
                decoded = False
        for sub in list(subs or ()):
            if sub.filter.is_identity:
                sub.offer(raw)
            elif decoded:
                selected = sub.filter.apply(message)
                if selected is not None:
                    sub.offer(json.dumps(selected))
        if wants_sink and decoded:
            for sink in sinks:
                if parsed.subject == DEVICE_DATA:
                    sink.device_data(parsed.tenant, message)
                else:
                    sink.notification(parsed.tenant, message)
