"""Per-device time stamps that never repeat: the agent time every agent stamps on a record it publishes for a
device (agents/core), and the time of a value a flow writes to a device (flowbroker)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ondas.timestamps import now_ms


class DeviceClock:
    """Time in ms, strictly increasing per device: two records of one device stamped within the same millisecond
    still sort in the order they were stamped (a reading and the next, an online and the offline right after it,
    two values a flow wrote in one batch). Thread-safe."""

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
