"""Per-tenant and per-device statistics of an agent process, read through the agent's statistics API.

Prometheus keeps the per-tenant counters (labels must stay bounded, so no device label there); this keeps the
per-device view an operator asks for ("what did device X send, what was dropped and why, when was it last
heard of"). Only devices the device cache knows are counted per device (anyone can invent a device id), and a
removed device's entry goes with it (:meth:`Statistics.forget`). Counts are of this process since it started.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ondas.timestamps import now_ms


@dataclass
class _Counts:
    received: int = 0
    published: int = 0
    sent: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    last_seen_ms: int | None = None

    def add(self, other: _Counts) -> None:
        self.received += other.received
        self.published += other.published
        self.sent += other.sent
        self.dropped.update(other.dropped)
        if other.last_seen_ms is not None:
            self.last_seen_ms = max(self.last_seen_ms or 0, other.last_seen_ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "published": self.published,
            "dropped": dict(sorted(self.dropped.items())),
            "sent_to_device": self.sent,
            "last_seen": self.last_seen_ms,
        }


class Statistics:
    """Thread-safe counters keyed by (tenant, device id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devices: dict[tuple[str, str], _Counts] = {}
        # What could not be attributed to a known device (unknown device, malformed identity), per tenant.
        self._unattributed: dict[str, Counter[str]] = {}

    def _entry(self, tenant: str, device_id: str) -> _Counts:
        key = (tenant, device_id)
        entry = self._devices.get(key)
        if entry is None:
            entry = self._devices[key] = _Counts()
        return entry

    def received(self, tenant: str, device_id: str) -> None:
        with self._lock:
            entry = self._entry(tenant, device_id)
            entry.received += 1
            entry.last_seen_ms = now_ms()

    def published(self, tenant: str, device_id: str, count: int = 1) -> None:
        with self._lock:
            self._entry(tenant, device_id).published += count

    def sent(self, tenant: str, device_id: str) -> None:
        with self._lock:
            self._entry(tenant, device_id).sent += 1

    def dropped(self, tenant: str, device_id: str | None, reason: str) -> None:
        """A message not forwarded; ``device_id`` None when it is no known device of ``tenant``."""
        with self._lock:
            if device_id is None:
                self._unattributed.setdefault(tenant, Counter())[reason] += 1
            else:
                self._entry(tenant, device_id).dropped[reason] += 1

    def forget(self, tenant: str, device_id: str | None = None) -> None:
        """Drop a removed device's entry, or every entry of a removed tenant."""
        with self._lock:
            if device_id is not None:
                self._devices.pop((tenant, device_id), None)
                return
            for key in [k for k in self._devices if k[0] == tenant]:
                del self._devices[key]
            self._unattributed.pop(tenant, None)

    def device(self, tenant: str, device_id: str) -> dict[str, Any]:
        with self._lock:
            entry = self._devices.get((tenant, device_id), _Counts())
            return {"device": device_id, **entry.as_dict()}

    def tenant(self, tenant: str) -> dict[str, Any]:
        """The tenant's totals, and how many of its devices this process has heard of."""
        with self._lock:
            total = _Counts()
            devices = 0
            for (t, _d), entry in self._devices.items():
                if t == tenant:
                    total.add(entry)
                    devices += 1
            body = total.as_dict()
            unattributed = self._unattributed.get(tenant, Counter())
            merged = Counter(total.dropped)
            merged.update(unattributed)
            body["dropped"] = dict(sorted(merged.items()))
            body["dropped_unknown_device"] = dict(sorted(unattributed.items()))
            return {"tenant": tenant, "devices_seen": devices, **body}
