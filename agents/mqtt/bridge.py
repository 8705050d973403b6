"""MQTT -> Kafka: a device's attrs message becomes a device-data message on ``<tenant>.device-data``.

The handler returns (and gmqtt sends the PUBACK) only after Kafka accepted the message, so a device message is
acknowledged only once it is safe. Dropped messages are acknowledged too (they would fail again forever), and
counted and logged with the reason.

Order: a per-device gate lets a message be prepared and queued to the (idempotent) producer only after the
previous message of the same device was, even when an earlier one awaits a device lookup; deliveries are then
awaited concurrently, and the device's order holds on its partition (key = device id). That order is the order
in which this process's MQTT session received the device's messages.

Several processes split the load by device, not by message: a broker's shared subscription hands a device's
messages to its members in turn, and two processes forwarding one device's messages would reorder them. So the
devices are split into ``shard_count`` shards by crc32("<tenant>:<device>"), each with a subscription group of its
own (broker.py): every shard's process is sent every message, forwards its own devices' and acknowledges the
others' at once, unread (counted in ``mqtt_agent_messages_other_shard_total``). A process killed keeps its
persistent session, in which the broker queues its messages until it is back, so its devices are delayed, in
order, not reordered. Each record names its process in the header ``ondas-agent``.

The MQTT protocol only is here (topics, shards, the per-device gate, acknowledgements); what a device message
is judged on and the record it becomes are the agents' one ingest path (agents/core/ingest.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from agents.core.cache import Device, DeviceCache
from agents.core.delivery import until_accepted
from agents.core.ingest import DeviceIngest, DeviceRecord
from agents.core.payload import DeviceRef, Drop, decode_attrs
from agents.core.stats import Statistics
from agents.mqtt.metrics import DROPPED, OTHER_SHARD, PUBLISHED, RECEIVED, UNKNOWN_ATTRS, UNKNOWN_TENANT
from agents.mqtt.topics import parse_attrs_topic, topic_identity
from ondas.kafka import Producer
from ondas.log import bind
from ondas.timestamps import now_ms

log = logging.getLogger("agents.mqtt.bridge")

ACK = 0  # PUBACK "success": the message is done with, forwarded or dropped


def shard_of(username: str, shard_count: int) -> int:
    """The shard of the device whose MQTT username (``<tenant>:<device-id>``) this is; the same in every process
    and every release (crc32, not Python's salted ``hash``)."""
    return zlib.crc32(username.encode()) % shard_count


class AttrsBridge:
    def __init__(
        self,
        *,
        cache: DeviceCache,
        producer: Producer,
        max_payload_bytes: int,
        max_depth: int,
        clock: Callable[[], int] = now_ms,
        retry_backoff: tuple[float, float] = (0.5, 5.0),
        lookup: Callable[[str, str], Device | None] | None = None,
        absent_ttl: float = 2.0,
        stats: Statistics | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self._stats = stats
        self._shard_index, self._shard_count = shard
        self._cache = cache
        self._max_bytes = max_payload_bytes
        self._max_depth = max_depth
        self._backoff = retry_backoff
        # Which agent process forwarded a message (header ``ondas-agent``): order is kept per process.
        self._ingest = DeviceIngest(
            cache=cache,
            producer=producer,
            unknown_attrs=UNKNOWN_ATTRS,
            unserved_reason="unknown_tenant",
            lookup=lookup,
            absent_ttl=absent_ttl,
            clock=clock,
            forwarder=f"{socket.gethostname()}:{os.getpid()}",
        )
        self._gates: dict[str, asyncio.Future[None]] = {}

    def prepare(self, topic: str, payload: bytes) -> DeviceRecord:
        """The device-data record of a message; raises :class:`Drop`."""
        ref = parse_attrs_topic(topic)
        admitted = self._ingest.judge(ref, look_up=False, on_known=self._received)
        return self._ingest.record(admitted, decode_attrs(payload, self._max_bytes, self._max_depth))

    def _received(self, ref: DeviceRef) -> None:
        if self._stats is not None:
            self._stats.received(ref.tenant, ref.device_id)

    async def handle(self, topic: str, payload: bytes) -> int:
        key = topic_identity(topic)  # the device's username, <tenant>:<device-id>, whichever topic form
        if self._shard_count > 1 and shard_of(key, self._shard_count) != self._shard_index:
            OTHER_SHARD.inc()
            return ACK
        label = _tenant_label(topic, self._cache)
        RECEIVED.labels(label).inc()
        # Per-device gate: a message is prepared and queued to the producer only after the previous message of
        # the same device was, whatever the handler awaits on the way (a device lookup), so order is kept.
        previous = self._gates.get(key)
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gates[key] = gate
        try:
            if previous is not None:
                await previous
            try:
                await self._look_up_if_missing(topic)
                record = self.prepare(topic, payload)
            except Drop as drop:
                return self._dropped(topic, label, drop)
            except Exception as exc:  # a bug must not leave the message unacknowledged forever
                log.exception("message could not be handled", extra={"topic": topic})
                return self._dropped(topic, label, Drop("internal_error", f"{type(exc).__name__}: {exc}"))
            delivery = self._ingest.send(record)  # synchronously: queue order is handling order
        finally:
            gate.set_result(None)
            if self._gates.get(key) is gate:
                del self._gates[key]
        await self._deliver(record, delivery)
        ref = record.ref
        PUBLISHED.labels(ref.tenant).inc()
        if self._stats is not None:
            self._stats.published(ref.tenant, ref.device_id)
        return ACK

    async def _look_up_if_missing(self, topic: str) -> None:
        """Ask the device manager, off the event loop, about a device of a served tenant that the cache does not
        know (the ingest path's lookup). Runs behind the device's gate, so there is at most one lookup per device
        at a time."""
        try:
            ref = parse_attrs_topic(topic)
        except Drop:
            return  # prepare() drops it with the reason
        if self._ingest.needs_lookup(ref):
            await asyncio.to_thread(self._ingest.look_up, ref)

    def _dropped(self, topic: str, label: str, drop: Drop) -> int:
        DROPPED.labels(label, drop.reason).inc()
        tenant, _, device_id = topic_identity(topic).partition(":")
        if self._stats is not None and label == tenant:  # a served tenant: counted for it (and its device)
            known = self._cache.get(tenant, device_id) is not None
            self._stats.dropped(tenant, device_id if known else None, drop.reason)
        with bind(tenant=tenant[:64], device=device_id[:128]):
            log.warning("message dropped", extra={"reason": drop.reason, "detail": drop.detail, "topic": topic})
        return ACK

    async def _deliver(self, record: DeviceRecord, delivery: Future[Any]) -> None:
        """Wait until Kafka accepted the message, re-sending it while it does not. Not acknowledged to the device
        meanwhile: a stop cancels this task, the PUBACK is never sent and the broker redelivers the message to
        the next session."""

        def retrying(exc: Exception) -> None:
            with bind(tenant=record.ref.tenant, device=record.ref.device_id):
                log.warning("Kafka did not accept a device message, retrying", extra={"error": str(exc)})

        await until_accepted(delivery, lambda: self._ingest.send(record), self._backoff, retrying)


def _tenant_label(topic: str, cache: DeviceCache) -> str:
    tenant = topic_identity(topic).partition(":")[0]
    return tenant if cache.has_tenant(tenant) else UNKNOWN_TENANT
