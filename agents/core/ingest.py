"""The one device-ingest path: what every agent does with a device's message once its protocol said who sent it
and what the attribute values are. Each agent keeps only its protocol (MQTT: topics, shards, acknowledgements;
HTTP: requests, credentials, status codes) and calls this for the rest.

The sequence, in this order (each refusal is a :class:`~agents.core.payload.Drop` whose reason is the agent's
metric label and, over HTTP, the ``error`` of the answer):

1. the tenant is served (else ``unserved_reason``: ``unknown_tenant`` for MQTT, ``tenant_disabled`` for HTTP;
   while the caches are still warming an agent may answer :class:`~ondas.errors.Unavailable` instead);
2. the device is known: in the device cache, or, on a cache miss, asked of the device manager (a device may send
   before its create event reached the agent); a device found absent is not asked for again for ``absent_ttl``
   seconds, so unknown or removed devices cannot flood the device manager (``unknown_device``);
3. the device is not disabled in the device manager (``device_disabled``);
4. the attribute policy (agents/core/payload.py: ``wrong_type``; keys that are none of the device's attributes
   are forwarded and counted in the agent's ``*_attrs_unknown_total``), the device's own timestamp or else the
   agent time, strictly increasing per device (``bad_timestamp``);
5. the ``device-data`` record: topic ``<tenant>.device-data``, key = device id, the value, and the headers of
   :func:`~agents.core.payload.device_headers`, sent to the producer.

Not here: per-device ordering (the MQTT agent's asyncio gate, the HTTP agent's device locks) and waiting for
Kafka (an MQTT PUBACK, an HTTP answer), which belong to how each protocol acknowledges a message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from agents.core.cache import Device, DeviceCache
from agents.core.payload import (
    DeviceRef,
    Drop,
    Headers,
    apply_rules,
    attribute_types,
    device_headers,
)
from ondas.errors import Unavailable
from ondas.kafka import Producer
from ondas.log import bind
from ondas.stamping import DeviceClock
from ondas.timestamps import now_ms
from ondas.topics import device_data

log = logging.getLogger("agents.core.ingest")

_ABSENT_MAX = 10_000


@dataclass(frozen=True)
class Admitted:
    """A known, enabled device of a served tenant: its messages may be turned into records."""

    ref: DeviceRef
    device: Device
    types: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceRecord:
    """One ``device-data`` record, ready to be sent (and sent again, unchanged, while Kafka refuses it)."""

    ref: DeviceRef
    topic: str
    key: str
    value: bytes
    headers: Headers


class DeviceIngest:
    """Judges device references and builds and sends their device-data records. Thread-safe."""

    def __init__(
        self,
        *,
        cache: DeviceCache,
        producer: Producer,
        unknown_attrs: Counter,
        unserved_reason: str,
        lookup: Callable[[str, str], Device | None] | None = None,
        absent_ttl: float = 2.0,
        warming: Callable[[], bool] = lambda: False,
        clock: Callable[[], int] = now_ms,
        forwarder: str | None = None,
    ) -> None:
        """``unknown_attrs``: the agent's counter (label tenant); ``forwarder``: the ``ondas-agent`` header
        value, for an agent whose processes each keep the order of their own devices."""
        self._cache = cache
        self._producer = producer
        self._unknown_attrs = unknown_attrs
        self._unserved = unserved_reason
        self._lookup = lookup
        self._absent_ttl = absent_ttl
        self._absent: dict[tuple[str, str], float] = {}
        self._warming = warming
        self._stamps = DeviceClock(clock)
        self._forwarder = forwarder

    # -- who: is the device let in ----------------------------------------------------------------------------
    def served(self, tenant: str | None) -> bool:
        return bool(tenant) and self._cache.has_tenant(tenant or "")

    def needs_lookup(self, ref: DeviceRef) -> bool:
        """Whether :meth:`look_up` would ask the device manager: a served tenant's device the cache does not know
        and that was not found absent a moment ago (an agent may then run :meth:`look_up` off its event loop)."""
        if self._lookup is None or not self._cache.has_tenant(ref.tenant):
            return False
        if self._cache.get(ref.tenant, ref.device_id) is not None:
            return False
        return self._absent.get((ref.tenant, ref.device_id), 0.0) <= time.monotonic()

    def look_up(self, ref: DeviceRef) -> Device | None:
        """Ask the device manager about a device the cache does not know; the device, now cached, or None
        (absent, or the device manager unreachable: the message is then judged on the cache alone)."""
        if not self.needs_lookup(ref):
            return self._cache.get(ref.tenant, ref.device_id)
        assert self._lookup is not None
        try:
            device = self._lookup(ref.tenant, ref.device_id)
        except Exception as exc:  # noqa: BLE001  (device manager unreachable: judged on the cache alone)
            with bind(tenant=ref.tenant, device=ref.device_id):
                log.warning("device lookup failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return None
        if device is None or not self._cache.put(ref.tenant, device):
            now = time.monotonic()
            self._absent[(ref.tenant, ref.device_id)] = now + self._absent_ttl
            if len(self._absent) > _ABSENT_MAX:
                self._absent = {k: t for k, t in self._absent.items() if t > now}
            return None
        return self._cache.get(ref.tenant, ref.device_id)

    def judge(
        self, ref: DeviceRef, *, look_up: bool = True, on_known: Callable[[DeviceRef], None] | None = None
    ) -> Admitted:
        """Steps 1-3 of the module's doc; raises :class:`Drop` (or Unavailable while warming). ``look_up``
        False: the caller already ran :meth:`look_up` (off its event loop); ``on_known``: called once the device
        is known, before the disabled check."""
        if not self._cache.has_tenant(ref.tenant):
            if self._warming():
                raise Unavailable("the agent is starting; retry shortly")
            raise Drop(self._unserved, f"tenant {ref.tenant!r} is not served")
        device = self._cache.get(ref.tenant, ref.device_id)
        if device is None and look_up:
            device = self.look_up(ref)
        if device is None:
            raise Drop("unknown_device", f"device {ref.device_id!r} does not exist in tenant {ref.tenant!r}")
        if on_known is not None:
            on_known(ref)
        if device.get("disabled") is True:
            raise Drop("device_disabled", f"device {ref.device_id!r} is disabled in the device manager")
        return Admitted(ref, device, attribute_types(device))

    # -- what: the record ----------------------------------------------------------------------------------
    def record(self, admitted: Admitted, attrs: dict[str, Any]) -> DeviceRecord:
        """Step 4-5: the device-data record of ``attrs`` (attribute values, with the device's ``timestamp`` if
        it sent one); raises :class:`Drop` (``wrong_type``, ``bad_timestamp``). Call it in the device's order:
        the agent time it stamps increases per device."""
        ref = admitted.ref
        data, unknown = apply_rules(ref, attrs, admitted.types, self._stamps.stamp(ref.tenant, ref.device_id))
        if unknown:
            self._unknown_attrs.labels(ref.tenant).inc(len(unknown))
        return DeviceRecord(
            ref=ref,
            topic=device_data(ref.tenant),
            key=ref.device_id,
            value=data.to_bytes(),
            headers=device_headers(ref.tenant, ref.device_id, self._forwarder),
        )

    def send(self, record: DeviceRecord) -> Future[Any]:
        """Queue the record on the producer (synchronously: queue order is call order); the future resolves when
        Kafka accepted it."""
        return self._producer.send(record.topic, record.value, key=record.key, headers=record.headers)
