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
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from agents.core.cache import Device, DeviceCache
from agents.core.delivery import until_accepted
from agents.core.payload import (
    DeviceRef,
    Drop,
    attribute_types,
    build_device_data,
    check_attrs,
    decode_attrs,
)
from agents.core.stamping import DeviceClock, device_headers
from agents.core.stats import Statistics
from agents.mqtt.metrics import DROPPED, OTHER_SHARD, PUBLISHED, RECEIVED, UNKNOWN_ATTRS, UNKNOWN_TENANT
from agents.mqtt.topics import parse_attrs_topic, topic_identity
from ondas.kafka import Producer
from ondas.log import bind
from ondas.timestamps import now_ms
from ondas.topics import device_data

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
        self._producer = producer
        self._max_bytes = max_payload_bytes
        self._max_depth = max_depth
        self._backoff = retry_backoff
        # Cache misses are looked up in the device manager; a device found absent is not asked for again for
        # ``absent_ttl`` seconds, so unknown or removed devices cannot flood the device manager.
        self._lookup = lookup
        self._absent_ttl = absent_ttl
        self._absent: dict[tuple[str, str], float] = {}
        # Which agent process forwarded a message (header ``ondas-agent``): order is kept per process.
        self._instance = f"{socket.gethostname()}:{os.getpid()}"
        self._gates: dict[str, asyncio.Future[None]] = {}
        self._stamps = DeviceClock(clock)

    def prepare(self, topic: str, payload: bytes) -> tuple[DeviceRef, bytes]:
        """The device and the device-data bytes of a message; raises :class:`Drop`."""
        ref = parse_attrs_topic(topic)
        if not self._cache.has_tenant(ref.tenant):
            raise Drop("unknown_tenant", f"tenant {ref.tenant!r} is not served")
        device = self._cache.get(ref.tenant, ref.device_id)
        if device is None:
            raise Drop("unknown_device", f"device {ref.device_id!r} does not exist in tenant {ref.tenant!r}")
        if self._stats is not None:
            self._stats.received(ref.tenant, ref.device_id)
        if device.get("disabled") is True:
            raise Drop("device_disabled", f"device {ref.device_id!r} is disabled in the device manager")
        attrs = decode_attrs(payload, self._max_bytes, self._max_depth)
        unknown = check_attrs(attrs, attribute_types(device))
        if unknown:
            UNKNOWN_ATTRS.labels(ref.tenant).inc(len(unknown))
        return ref, build_device_data(ref, attrs, self._reception_time(ref)).to_bytes()

    def _reception_time(self, ref: DeviceRef) -> int:
        """Agent time in ms, strictly increasing per device: two messages of a device received within the same
        millisecond still sort in the order they were received."""
        return self._stamps.stamp(ref.tenant, ref.device_id)

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
                ref, value = self.prepare(topic, payload)
            except Drop as drop:
                return self._dropped(topic, label, drop)
            except Exception as exc:  # a bug must not leave the message unacknowledged forever
                log.exception("message could not be handled", extra={"topic": topic})
                return self._dropped(topic, label, Drop("internal_error", f"{type(exc).__name__}: {exc}"))
            delivery = self._queue(ref, value)
        finally:
            gate.set_result(None)
            if self._gates.get(key) is gate:
                del self._gates[key]
        await self._deliver(ref, value, delivery)
        PUBLISHED.labels(ref.tenant).inc()
        if self._stats is not None:
            self._stats.published(ref.tenant, ref.device_id)
        return ACK

    async def _look_up_if_missing(self, topic: str) -> None:
        """Ask the device manager about a device of a served tenant that the cache does not know (a device may
        publish before its create event reaches this agent). Runs behind the device's gate, so there is at most
        one lookup per device at a time."""
        if self._lookup is None:
            return
        try:
            ref = parse_attrs_topic(topic)
        except Drop:
            return  # prepare() drops it with the reason
        key = (ref.tenant, ref.device_id)
        if not self._cache.has_tenant(ref.tenant) or self._cache.get(ref.tenant, ref.device_id) is not None:
            return
        if self._absent.get(key, 0.0) > time.monotonic():
            return
        try:
            device = await asyncio.to_thread(self._lookup, ref.tenant, ref.device_id)
        except Exception as exc:  # noqa: BLE001  (device manager unreachable: the message is judged on the cache)
            with bind(tenant=ref.tenant, device=ref.device_id):
                log.warning("device lookup failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return
        if device is None or not self._cache.put(ref.tenant, device):
            self._absent[key] = time.monotonic() + self._absent_ttl
            if len(self._absent) > 10_000:
                now = time.monotonic()
                self._absent = {k: t for k, t in self._absent.items() if t > now}

    def _dropped(self, topic: str, label: str, drop: Drop) -> int:
        DROPPED.labels(label, drop.reason).inc()
        tenant, _, device_id = topic_identity(topic).partition(":")
        if self._stats is not None and label == tenant:  # a served tenant: counted for it (and its device)
            known = self._cache.get(tenant, device_id) is not None
            self._stats.dropped(tenant, device_id if known else None, drop.reason)
        with bind(tenant=tenant[:64], device=device_id[:128]):
            log.warning("message dropped", extra={"reason": drop.reason, "detail": drop.detail, "topic": topic})
        return ACK

    def _queue(self, ref: DeviceRef, value: bytes) -> Future[Any]:
        """Hand the message to the producer (synchronously, so queue order is handling order)."""
        headers = [*device_headers(ref.tenant, ref.device_id), ("ondas-agent", self._instance)]
        return self._producer.send(device_data(ref.tenant), value, key=ref.device_id, headers=headers)

    async def _deliver(self, ref: DeviceRef, value: bytes, delivery: Future[Any]) -> None:
        """Wait until Kafka accepted the message, re-sending it while it does not. Not acknowledged to the device
        meanwhile: a stop cancels this task, the PUBACK is never sent and the broker redelivers the message to
        the next session."""

        def retrying(exc: Exception) -> None:
            with bind(tenant=ref.tenant, device=ref.device_id):
                log.warning("Kafka did not accept a device message, retrying", extra={"error": str(exc)})

        await until_accepted(delivery, lambda: self._queue(ref, value), self._backoff, retrying)


def _tenant_label(topic: str, cache: DeviceCache) -> str:
    tenant = topic_identity(topic).partition(":")[0]
    return tenant if cache.has_tenant(tenant) else UNKNOWN_TENANT
