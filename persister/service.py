"""The persister's rules: turn a batch of device-data messages and device events into stored points and
known devices.

A batch is handled in one pass: every message is validated first; the good ones are written (one
``insert_many`` per tenant); the bad ones are handed to the dead-letter port with the reason. Only when
all of this succeeded does the handler return, so the consumer loop commits the batch's offsets after
the data is in the store. If the store is unavailable the handler raises and the loop retries the whole
batch; points have deterministic ids, so the retry never stores anything twice.

Known devices: ``create`` and ``update`` events record the device (the store's ``devices``), ``remove`` forgets
it, so history answers an existing device without data with an empty result and an unknown one with a 404.
The persister is the only writer; replaying the events gives the same records.

Notifications (``<tenant>.dojot.notifications``) are kept for history's ``/notifications/history`` unless their
``metaAttrsFilter.shouldPersist`` is false; their id is the ``msgID``, so a redelivered one is stored once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter

from ondas import log as ondas_log
from ondas import topics
from ondas.contracts import ContractError, DeviceData, DeviceEvent, Notification
from persister.models import (
    KnownDevice,
    Note,
    Point,
    TenantMismatch,
    WriteResult,
    actuation_points,
    known_device,
    note_from,
    points_from,
)

log = logging.getLogger("persister")

POINTS_WRITTEN = Counter("persister_points_written_total", "Points newly stored", ["tenant"])
POINTS_DUPLICATE = Counter(
    "persister_points_duplicate_total", "Points already stored (redelivered or re-produced messages)", ["tenant"]
)
POINTS_DELETED = Counter("persister_points_deleted_total", "Points deleted with their removed device", ["tenant"])
NOTIFICATIONS_WRITTEN = Counter("persister_notifications_written_total", "Notifications newly stored", ["tenant"])
NOTIFICATIONS_NOT_KEPT = Counter(
    "persister_notifications_not_kept_total",
    "Notifications that asked not to be stored (shouldPersist false)",
    ["tenant"],
)
MESSAGES_REJECTED = Counter(
    "persister_messages_rejected_total", "Messages sent to the dead-letter topic", ["tenant", "reason"]
)


class Incoming(Protocol):
    """What the persister needs of a Kafka message (confluent_kafka.Message satisfies it)."""

    def topic(self) -> str | None: ...
    def value(self) -> bytes | None: ...


class PointStore(Protocol):
    def write(self, tenant: str, points: Sequence[Point]) -> WriteResult: ...
    def delete_device(self, tenant: str, device_id: str) -> int: ...
    def record_devices(self, tenant: str, changes: Mapping[str, KnownDevice | None]) -> None: ...
    def write_notifications(self, tenant: str, notes: Sequence[Note]) -> int: ...
    def ping(self) -> bool: ...


class DeadLetter(Protocol):
    def send(self, msg: Any, reason: str) -> None: ...


@dataclass(frozen=True)
class Rejected:
    msg: Incoming
    tenant: str
    reason: str
    detail: str


@dataclass(frozen=True)
class Parsed:
    """What one message asks of the store: points to write, a device to record (``device``), or a device that
    was removed (``removed``: forgotten, and its data goes when so configured)."""

    tenant: str
    device_id: str
    points: list[Point]
    removed: bool = False
    device: KnownDevice | None = None
    note: Note | None = None
    unkept_note: bool = False  # a notification that asked not to be stored


def parse(msg: Incoming) -> Parsed:
    """Validate one message. Raises :class:`ContractError` (or a subclass) saying what is wrong."""
    name = msg.topic() or ""
    try:
        t = topics.parse(name)
    except ValueError as exc:
        raise ContractError(str(exc)) from exc
    if t.subject == topics.DEVICE_DATA:
        data = DeviceData.parse(msg.value() or b"")
        return Parsed(t.tenant, data.metadata.deviceid, points_from(data, t.tenant))
    if t.subject == topics.DEVICE_EVENTS:
        event = DeviceEvent.parse(msg.value() or b"")
        if event.event == "configure":
            return Parsed(t.tenant, event.device_id, actuation_points(event, t.tenant))
        if event.event == "remove":
            if event.tenant != t.tenant:
                raise TenantMismatch(f"meta.service {event.tenant!r} does not match the topic's tenant {t.tenant!r}")
            return Parsed(t.tenant, event.device_id, [], removed=True)
        return Parsed(t.tenant, event.device_id, [], device=known_device(event, t.tenant))
    if t.subject == topics.NOTIFICATIONS:
        note = note_from(Notification.parse(msg.value() or b""))
        return Parsed(t.tenant, "", [], note=note, unkept_note=note is None)
    raise ContractError(f"topic {name!r} is neither a device-data, a device-events nor a notifications topic")


def _reason(exc: ContractError) -> str:
    return "tenant_mismatch" if isinstance(exc, TenantMismatch) else "contract"


def _topic_tenant(msg: Incoming) -> str:
    try:
        return topics.parse(msg.topic() or "").tenant
    except ValueError:
        return "unknown"


class PersisterService:
    """``drop_removed_devices``: when a device is removed, delete its history and latest values too (by
    default they are kept, as dojot did)."""

    def __init__(self, store: PointStore, dead_letter: DeadLetter, drop_removed_devices: bool = False) -> None:
        self._store = store
        self._dead_letter = dead_letter
        self._drop_removed = drop_removed_devices

    def handle(self, batch: Sequence[Incoming]) -> None:
        """Store the good messages of ``batch`` and dead-letter the bad ones; raise only if that failed.

        Points are written in one ``insert_many`` per tenant, then the known devices in the batch's order (the
        last event of a device wins); a device removal that drops data first writes what came before it, so a
        removed device's data never reappears from the same batch."""
        pending: dict[str, list[Parsed]] = {}
        rejected: list[Rejected] = []
        for msg in batch:
            try:
                parsed = parse(msg)
            except ContractError as exc:
                rejected.append(Rejected(msg, _topic_tenant(msg), _reason(exc), str(exc)))
                continue
            if parsed.removed and self._drop_removed:
                self._flush(pending)
                self.remove_device(parsed.tenant, parsed.device_id)
                continue
            pending.setdefault(parsed.tenant, []).append(parsed)
        self._flush(pending)
        for r in rejected:
            with ondas_log.bind(tenant=r.tenant):
                self._dead_letter.send(r.msg, r.detail)
                MESSAGES_REJECTED.labels(r.tenant, r.reason).inc()
                log.warning("message rejected", extra={"topic": r.msg.topic(), "reason": r.detail})

    def _flush(self, pending: dict[str, list[Parsed]]) -> None:
        for tenant, items in pending.items():
            self.store(tenant, items)
        pending.clear()

    def remove_device(self, tenant: str, device_id: str) -> int:
        """Delete the device's data and forget the device (``PERSISTER_ON_DEVICE_REMOVE=drop``)."""
        with ondas_log.bind(tenant=tenant, device=device_id):
            deleted = self._store.delete_device(tenant, device_id)
            POINTS_DELETED.labels(tenant).inc(deleted)
            log.info("removed device's data deleted", extra={"points": deleted})
        return deleted

    def store(self, tenant: str, items: Sequence[Parsed]) -> WriteResult:
        notes = [item.note for item in items if item.note is not None]
        unkept = sum(1 for item in items if item.unkept_note)
        points = [p for item in items for p in item.points]
        devices: dict[str, KnownDevice | None] = {}
        for item in items:
            if item.device is not None or item.removed:
                devices[item.device_id] = item.device  # the last event of the device in the batch wins
        with ondas_log.bind(tenant=tenant):
            result = self._store.write(tenant, points)
            if devices:
                self._store.record_devices(tenant, devices)
            if notes:
                NOTIFICATIONS_WRITTEN.labels(tenant).inc(self._store.write_notifications(tenant, notes))
            if unkept:
                NOTIFICATIONS_NOT_KEPT.labels(tenant).inc(unkept)
            POINTS_WRITTEN.labels(tenant).inc(result.inserted)
            POINTS_DUPLICATE.labels(tenant).inc(result.duplicates)
            if log.isEnabledFor(logging.DEBUG):
                per_device: dict[str, int] = {}
                for item in items:
                    if item.points:
                        per_device[item.device_id] = per_device.get(item.device_id, 0) + len(item.points)
                for device_id, count in per_device.items():
                    with ondas_log.bind(device=device_id):
                        log.debug("points stored", extra={"points": count})
        return result
