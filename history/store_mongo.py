"""Reading the persister's MongoDB layout (see the persister package docstring): database
``<prefix><tenant>``, collections ``points``, ``latest``, ``actuated`` and ``devices``. The tenant always picks
the database, so one tenant's queries cannot reach another tenant's data.

A point's kind is its ``kind`` field (``reading`` or ``command``); a point stored before the persister wrote
``kind`` is a command when its ``metadata.event`` is ``configure`` (how actuations were marked), else a reading.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import ConnectionFailure

from history.models import KIND_COMMAND, KIND_READING, Entry
from ondas import mongo
from ondas.errors import Unavailable
from ondas.tenant import tenant_database_name

Doc = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_datetime(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - EPOCH) // timedelta(milliseconds=1)


#: Points stored before ``kind`` existed: an actuation carried ``metadata.event = "configure"``.
_LEGACY_COMMAND: Doc = {"kind": {"$exists": False}, "metadata.event": "configure"}
_COMMANDS: list[Doc] = [{"kind": KIND_COMMAND}, _LEGACY_COMMAND]
KIND_FILTERS: dict[str, Doc] = {KIND_COMMAND: {"$or": _COMMANDS}, KIND_READING: {"$nor": _COMMANDS}}


def kind_of(doc: Doc) -> str:
    kind = doc.get("kind")
    if isinstance(kind, str):
        return kind
    metadata = doc.get("metadata")
    legacy = isinstance(metadata, dict) and metadata.get("event") == "configure"
    return KIND_COMMAND if legacy else KIND_READING


def entry(doc: Doc) -> Entry:
    return Entry(
        device_id=doc["device_id"],
        attr=doc["attr"],
        value=doc.get("value"),
        ts_ms=to_ms(doc["ts"]),
        metadata=doc.get("metadata") or {},
        kind=kind_of(doc),
    )


class MongoHistoryStore:
    def __init__(self, url: str, db_prefix: str, timeout_ms: int = 5000) -> None:
        self._client = mongo.connect(url, timeout_ms)
        self._prefix = db_prefix

    def _db(self, tenant: str) -> Database[Doc]:
        return self._client[tenant_database_name(self._prefix, tenant)]

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
            ("devices", {"_id": device_id}),
            ("latest", {"device_id": device_id}),
            ("actuated", {"device_id": device_id}),
        ]
        try:
            return any(db[name].find_one(flt, {"_id": 1}) is not None for name, flt in checks)
        except ConnectionFailure as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}") from exc

    def attrs(self, tenant: str, device_id: str, kind: str | None = None) -> list[str]:
        """The attributes of the device that have data, sorted: readings (``latest``), actuations
        (``actuated``), or both when ``kind`` is None."""
        db = self._db(tenant)
        names = {KIND_READING: ["latest"], KIND_COMMAND: ["actuated"]}.get(kind or "", ["latest", "actuated"])
        try:
            found: set[str] = set()
            for name in names:
                found |= {d["attr"] for d in db[name].find({"device_id": device_id}, {"attr": 1, "_id": 0})}
            return sorted(found)
        except ConnectionFailure as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}") from exc

    def latest(self, tenant: str, device_id: str) -> list[Entry]:
        """The newest reading of each attribute of the device (the persister's ``latest`` collection)."""
        try:
            return [entry(d) for d in self._db(tenant)["latest"].find({"device_id": device_id})]
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
        flt: Doc = {"device_id": device_id, "attr": attr}
        if kind is not None:
            flt.update(KIND_FILTERS[kind])
        ts: Doc = {}
        if date_from_ms is not None:
            ts["$gte"] = to_datetime(date_from_ms)
        if date_to_ms is not None:
            ts["$lte"] = to_datetime(date_to_ms)
        if ts:
            flt["ts"] = ts
        order = DESCENDING if newest_first else ASCENDING
        try:
            cursor = self._db(tenant)["points"].find(flt).sort([("ts", order), ("_id", order)]).limit(limit)
            return [entry(d) for d in cursor]
        except ConnectionFailure as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}") from exc
