"""MQTT -> Kafka: a device's attrs message becomes a device-data message on ``<tenant>.device-data``.

The handler returns (and gmqtt sends the PUBACK) only after Kafka accepted the message, so a device message is
acknowledged only once it is safe. Dropped messages are acknowledged too (they would fail again forever), and
counted and logged with the reason.

Order: gmqtt runs one handler task per message, in arrival order; everything up to ``Producer.send`` is
synchronous, so messages are queued to the (idempotent) producer in arrival order and keep the device's order
on its partition (key = device id) while the deliveries are awaited concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from agents.mqtt.cache import Device, DeviceCache
from agents.mqtt.metrics import DROPPED, PUBLISHED, RECEIVED, UNKNOWN_TENANT
from agents.mqtt.payload import DeviceRef, Drop, build_device_data, decode_attrs, parse_attrs_topic
from ondas.kafka import Producer
from ondas.log import bind
from ondas.timestamps import now_ms
from ondas.topics import device_data

log = logging.getLogger("agents.mqtt.bridge")

ACK = 0  # PUBACK "success": the message is done with, forwarded or dropped


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
    ) -> None:
        self._cache = cache
        self._producer = producer
        self._max_bytes = max_payload_bytes
        self._max_depth = max_depth
        self._clock = clock
        self._backoff = retry_backoff
        # Cache misses are looked up in the device manager (a device may publish before its create event
        # arrives here). One lookup per device at a time; a device found absent is not asked for again for
        # ``absent_ttl`` seconds, so unknown or removed devices cannot flood the device manager.
        self._lookup = lookup
        self._absent_ttl = absent_ttl
        self._absent: dict[tuple[str, str], float] = {}
        self._pending: dict[tuple[str, str], asyncio.Future[Device | None]] = {}

    def prepare(self, topic: str, payload: bytes) -> tuple[DeviceRef, bytes]:
        """The device and the device-data bytes of a message; raises :class:`Drop`."""
        ref = parse_attrs_topic(topic)
        if not self._cache.has_tenant(ref.tenant):
            raise Drop("unknown_tenant", f"tenant {ref.tenant!r} is not served")
        if self._cache.get(ref.tenant, ref.device_id) is None:
            raise Drop("unknown_device", f"device {ref.device_id!r} does not exist in tenant {ref.tenant!r}")
        attrs = decode_attrs(payload, self._max_bytes, self._max_depth)
        return ref, build_device_data(ref, attrs, self._clock()).to_bytes()

    async def handle(self, topic: str, payload: bytes) -> int:
        label = _tenant_label(topic, self._cache)
        RECEIVED.labels(label).inc()
        try:
            await self._look_up_if_missing(topic)
            ref, value = self.prepare(topic, payload)
        except Drop as drop:
            return self._dropped(topic, label, drop)
        except Exception as exc:  # a bug must not leave the message unacknowledged forever
            log.exception("message could not be handled", extra={"topic": topic})
            return self._dropped(topic, label, Drop("internal_error", f"{type(exc).__name__}: {exc}"))
        await self._send(ref, value)
        PUBLISHED.labels(ref.tenant).inc()
        return ACK

    async def _look_up_if_missing(self, topic: str) -> None:
        """Ask the device manager about a device of a served tenant that the cache does not know.

        Messages of one device that arrive while its lookup is pending await that lookup too (even when the
        device reached the cache meanwhile) and resume in arrival order, so the device's order is kept."""
        if self._lookup is None:
            return
        try:
            ref = parse_attrs_topic(topic)
        except Drop:
            return  # prepare() drops it with the reason
        key = (ref.tenant, ref.device_id)
        pending = self._pending.get(key)
        if pending is None:
            if not self._cache.has_tenant(ref.tenant) or self._cache.get(ref.tenant, ref.device_id) is not None:
                return
            if self._absent.get(key, 0.0) > time.monotonic():
                return
            pending = asyncio.ensure_future(asyncio.to_thread(self._lookup, ref.tenant, ref.device_id))
            self._pending[key] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(key, None))
        try:
            device = await asyncio.shield(pending)
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
        tenant, _, rest = topic.partition(":")
        with bind(tenant=tenant[:64], device=rest.rpartition("/")[0][:128]):
            log.warning("message dropped", extra={"reason": drop.reason, "detail": drop.detail, "topic": topic})
        return ACK

    async def _send(self, ref: DeviceRef, value: bytes) -> None:
        kafka_topic = device_data(ref.tenant)
        headers: list[tuple[str, str | bytes | None]] = [
            ("content-type", "application/json"),
            ("ondas-tenant", ref.tenant),
            ("ondas-device", ref.device_id),
        ]
        attempt = 0
        while True:
            try:
                await asyncio.wrap_future(self._producer.send(kafka_topic, value, key=ref.device_id, headers=headers))
                return
            except Exception as exc:  # noqa: BLE001  (Unavailable from the producer, or a produce error)
                # Not acknowledged to the device: keep trying while the agent runs. A stop cancels this task,
                # the PUBACK is never sent and the broker redelivers the message to the next session.
                attempt += 1
                delay = min(self._backoff[1], self._backoff[0] * 2 ** min(attempt, 10))
                with bind(tenant=ref.tenant, device=ref.device_id):
                    log.warning("Kafka did not accept a device message, retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)


def _tenant_label(topic: str, cache: DeviceCache) -> str:
    tenant = topic.partition(":")[0]
    return tenant if cache.has_tenant(tenant) else UNKNOWN_TENANT
