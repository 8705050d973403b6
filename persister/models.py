"""Domain types of the persister: a point (one attribute value of one device at one instant), a known device
(what the device manager said exists) and a notification to keep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ondas import points_layout
from ondas.contracts import ContractError, DeviceData, DeviceEvent, Notification
from ondas.points_layout import KIND_COMMAND, KIND_READING

#: ``Point.source`` of a value the device sent (``device-data``) and of a value sent to the device (``configure``).
FROM_DEVICE = "device"
ACTUATION = "configure"


class TenantMismatch(ContractError):
    """The message names another tenant than the topic it was read from."""


@dataclass(frozen=True)
class Point:
    device_id: str
    attr: str
    value: Any
    ts_ms: int
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = FROM_DEVICE

    @property
    def id(self) -> str:
        return point_id(self.device_id, self.attr, self.ts_ms, self.value, self.source)

    @property
    def is_reading(self) -> bool:
        """A value the device reported (it may become the latest value); actuations are not readings."""
        return self.source == FROM_DEVICE

    @property
    def kind(self) -> str:
        """The stored ``kind`` (:mod:`ondas.points_layout`): a reading, or a command sent to the device."""
        return KIND_READING if self.is_reading else KIND_COMMAND


@dataclass(frozen=True)
class KnownDevice:
    """A device the device manager created or updated (its ``create``/``update`` event), so history can tell an
    existing device without data from one that does not exist."""

    device_id: str
    label: str | None = None


#: A notification to keep, as the layout stores it (``msg_id`` is its ``_id``).
Note = points_layout.StoredNotification


def note_from(notification: Notification) -> Note | None:
    """The notification to store, or None when it asks not to be (``metaAttrsFilter.shouldPersist`` false)."""
    if not notification.should_persist:
        return None
    n = notification
    nid = points_layout.notification_id(n.msgID, n.timestamp, n.message, n.metaAttrsFilter, n.subject)
    return Note(nid, n.timestamp, n.message, dict(n.metaAttrsFilter), n.subject)


@dataclass(frozen=True)
class WriteResult:
    """What a write did: points newly stored and points that were already there."""

    inserted: int
    duplicates: int


def point_id(device_id: str, attr: str, ts_ms: int, value: Any, source: str = FROM_DEVICE) -> str:
    """A deterministic id (:func:`ondas.points_layout.point_id`): the same reading always gets the same id, so
    storing it twice is a no-op.

    Two different values of one attribute at the same instant are two points (dojot kept both). An actuation
    never shares an id with a reading of the same value at the same instant."""
    return points_layout.point_id(device_id, attr, ts_ms, value, None if source == FROM_DEVICE else source)


def points_from(data: DeviceData, topic_tenant: str) -> list[Point]:
    """The points of a device-data message read from ``topic_tenant``'s topic.

    The topic decides the tenant: a message whose ``metadata.tenant`` names another tenant is rejected."""
    meta = data.metadata
    if meta.tenant != topic_tenant:
        raise TenantMismatch(f"metadata.tenant {meta.tenant!r} does not match the topic's tenant {topic_tenant!r}")
    extra = dict(meta.model_extra or {})
    return [Point(meta.deviceid, attr, value, meta.timestamp, extra) for attr, value in data.attrs.items()]


def actuation_points(event: DeviceEvent, topic_tenant: str) -> list[Point]:
    """The points of a ``configure`` event: what was sent to the device, at the event's ``meta.timestamp``.

    They are history (``metadata.event`` = ``configure``) but never the device's latest value."""
    if event.tenant != topic_tenant:
        raise TenantMismatch(f"meta.service {event.tenant!r} does not match the topic's tenant {topic_tenant!r}")
    if event.meta.timestamp is None:
        raise ContractError("meta.timestamp: a configure event carries the instant it was sent")
    attrs: dict[str, Any] = event.data["attrs"]
    return [
        Point(event.device_id, attr, value, event.meta.timestamp, {"event": ACTUATION}, ACTUATION)
        for attr, value in attrs.items()
    ]


def known_device(event: DeviceEvent, topic_tenant: str) -> KnownDevice:
    """The device of a ``create`` or ``update`` event read from ``topic_tenant``'s topic."""
    if event.tenant != topic_tenant:
        raise TenantMismatch(f"meta.service {event.tenant!r} does not match the topic's tenant {topic_tenant!r}")
    label = event.data.get("label")
    return KnownDevice(event.device_id, label if isinstance(label, str) else None)
