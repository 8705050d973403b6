"""What every agent puts on a record it publishes for a device: a per-device timestamp that never repeats, and
the headers that name the tenant and the device."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ondas.contracts import DeviceLiveness
from ondas.kafka import Producer
from ondas.timestamps import now_ms
from ondas.topics import device_liveness

Headers = list[tuple[str, str | bytes | None]]


class DeviceClock:
    """Agent time in ms, strictly increasing per device: two records of one device stamped within the same
    millisecond still sort in the order they were stamped (a reading and the next, an online and the offline
    right after it). Thread-safe."""

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self._clock = clock
        self._last: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def stamp(self, tenant: str, device_id: str) -> int:
        key = (tenant, device_id)
        with self._lock:
            at = max(self._clock(), self._last.get(key, 0) + 1)
            self._last[key] = at
        return at

    def forget(self, tenant: str, device_id: str) -> None:
        with self._lock:
            self._last.pop((tenant, device_id), None)


def device_headers(tenant: str, device_id: str) -> Headers:
    return [("content-type", "application/json"), ("ondas-tenant", tenant), ("ondas-device", device_id)]


def send_liveness(producer: Producer, message: DeviceLiveness) -> Future[Any]:
    """Queue an online/offline event on ``<tenant>.device-liveness`` (key = device id)."""
    meta = message.metadata
    headers = device_headers(meta.tenant, meta.deviceid)
    return producer.send(device_liveness(meta.tenant), message.to_bytes(), key=meta.deviceid, headers=headers)
