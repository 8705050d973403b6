"""Reading the persister's MongoDB layout (:mod:`ondas.points_layout`, docs/storage-contract.md): one database
per tenant with collections ``points``, ``latest``, ``actuated``, ``devices`` and ``notifications``. The tenant
always picks the database, so one tenant's queries cannot reach another tenant's data.

A point's kind is its ``kind`` field (``reading`` or ``command``); a point stored before the persister wrote
``kind`` is a command when its ``metadata.event`` is ``configure`` (how actuations were marked), else a reading.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import ConnectionFailure

from history.models import KIND_COMMAND, KIND_READING, Entry, NotificationEntry
from ondas import mongo
from ondas import points_layout as layout
from ondas.errors import Unavailable

Doc = dict[str, Any]

#: The stored field of a notification filter's name; any other name is a key of ``metaAttrsFilter``.
_NOTIFICATION_FIELDS = {"msgID": layout.ID, "message": layout.MESSAGE, "subject": layout.SUBJECT}

#: Where each kind of entry lists its attributes: readings in ``latest``, commands in ``actuated``.
_ATTRS_OF: dict[str, list[str]] = {KIND_READING: [layout.LATEST], KIND_COMMAND: [layout.ACTUATED]}


def _window(date_from_ms: int | None, date_to_ms: int | None) -> Doc:
    """The filter of a time window on ``ts`` (both ends inclusive; either may be open)."""
    ts: Doc = {}
    if date_from_ms is not None:
        ts["$gte"] = layout.to_datetime(date_from_ms)
    if date_to_ms is not None:
        ts["$lte"] = layout.to_datetime(date_to_ms)
    return {layout.TS: ts} if ts else {}


def entry(doc: Doc) -> Entry:
    p = layout.decode_point(doc)
    return Entry(device_id=p.device_id, attr=p.attr, value=p.value, ts_ms=p.ts_ms, metadata=p.metadata, kind=p.kind)


class MongoHistoryStore:
    def __init__(self, url: str, db_prefix: str, timeout_ms: int = 5000) -> None:
        self._client = mongo.connect(url, timeout_ms)
        self._prefix = db_prefix

    def _db(self, tenant: str) -> Database[Doc]:
        return self._client[layout.database_name(self._prefix, tenant)]

    def ping(self) -> bool:
        return mongo.ping(self._client)

    def close(self) -> None:
        self._client.close()

    def device_exists(self, tenant: str, device_id: str) -> bool:
        """The device is known in the tenant: the persister recorded it from the device manager's events, or it
        has data (readings or actuations; devices created before the persister recorded devices, and removed
        devices whose data is kept)."""
        db = self._db(tenant)
        checks: list[tuple[str, Doc]] = [
            (layout.DEVICES, {layout.ID: device_id}),
            (layout.LATEST, {layout.DEVICE_ID: device_id}),
            (layout.ACTUATED, {layout.DEVICE_ID: device_id}),
        ]
        try:
            return any(db[name].find_one(flt, {layout.ID: 1}) is not None for name, flt in checks)
        except ConnectionFailure as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}") from exc

    def attrs(self, tenant: str, device_id: str, kind: str | None = None) -> list[str]:
        """The attributes of the device that have data, sorted: readings (``latest``), actuations
        (``actuated``), or both when ``kind`` is None."""
        db = self._db(tenant)
        names = _ATTRS_OF.get(kind or "", [layout.LATEST, layout.ACTUATED])
        try:
            found: set[str] = set()
            for name in names:
                cursor = db[name].find({layout.DEVICE_ID: device_id}, {layout.ATTR: 1, layout.ID: 0})
                found |= {d[layout.ATTR] for d in cursor}
            return sorted(found)
        except ConnectionFailure as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}") from exc

    def latest(self, tenant: str, device_id: str) -> list[Entry]:
        """The newest reading of each attribute of the device (the persister's ``latest`` collection)."""
        try:
            return [entry(d) for d in self._db(tenant)[layout.LATEST].find({layout.DEVICE_ID: device_id})]
        except ConnectionFailure as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}") from exc

    def entries(
        self,
        tenant: str,
        device_id: str,
        attr: str,
        *,
        date_from_ms: int | None,
        date_to_ms: int | None,
        newest_first: bool,
        limit: int,
        kind: str | None = None,
    ) -> list[Entry]:
        """Newest (or oldest) first, ``(ts, _id)`` order; ``limit`` 0 means no limit."""
        flt: Doc = {layout.DEVICE_ID: device_id, layout.ATTR: attr}
        if kind is not None:
            flt.update(layout.kind_filter(kind))
        flt.update(_window(date_from_ms, date_to_ms))
        order = DESCENDING if newest_first else ASCENDING
        try:
            points = self._db(tenant)[layout.POINTS]
            cursor = points.find(flt).sort([(layout.TS, order), (layout.ID, order)]).limit(limit)
            return [entry(d) for d in cursor]
        except ConnectionFailure as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}") from exc

    def notifications(
        self,
        tenant: str,
        *,
        date_from_ms: int | None,
        date_to_ms: int | None,
        filters: tuple[tuple[str, Any], ...],
        limit: int,
    ) -> list[NotificationEntry]:
        """The tenant's stored notifications, newest first (``(ts, _id)`` order), matching every filter."""
        flt: Doc = {}
        for name, value in filters:
            flt[_NOTIFICATION_FIELDS.get(name, f"{layout.META}.{name}")] = value
        flt.update(_window(date_from_ms, date_to_ms))
        try:
            cursor = (
                self._db(tenant)[layout.NOTIFICATIONS]
                .find(flt)
                .sort([(layout.TS, DESCENDING), (layout.ID, DESCENDING)])
                .limit(limit)
            )
            found = [layout.decode_notification(d) for d in cursor]
        except ConnectionFailure as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}") from exc
        return [NotificationEntry(n.msg_id, n.ts_ms, n.message, n.meta, n.subject) for n in found]
