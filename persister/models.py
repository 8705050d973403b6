"""Domain types of the persister: a point (one attribute value of one device at one instant)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ondas.contracts import ContractError, DeviceData

# MongoDB database names are at most 63 bytes.


class TenantMismatch(ContractError):
    """The message names another tenant than the topic it was read from."""


@dataclass(frozen=True)
class Point:
    device_id: str
    attr: str
    value: Any
    ts_ms: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return point_id(self.device_id, self.attr, self.ts_ms, self.value)


@dataclass(frozen=True)
class WriteResult:
    """What a write did: points newly stored and points that were already there."""

    inserted: int
    duplicates: int


def point_id(device_id: str, attr: str, ts_ms: int, value: Any) -> str:
    """A deterministic id: the same reading always gets the same id, so storing it twice is a no-op.

    Two different values of one attribute at the same instant are two points (dojot kept both)."""
    canonical = json.dumps(
        [device_id, attr, ts_ms, value], sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def points_from(data: DeviceData, topic_tenant: str) -> list[Point]:
    """The points of a device-data message read from ``topic_tenant``'s topic.

    The topic decides the tenant: a message whose ``metadata.tenant`` names another tenant is rejected."""
    meta = data.metadata
    if meta.tenant != topic_tenant:
        raise TenantMismatch(f"metadata.tenant {meta.tenant!r} does not match the topic's tenant {topic_tenant!r}")
    extra = dict(meta.model_extra or {})
    return [Point(meta.deviceid, attr, value, meta.timestamp, extra) for attr, value in data.attrs.items()]
