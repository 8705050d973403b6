"""Reading the persister's MongoDB layout (see the persister package docstring): database
``<prefix><tenant>``, collections ``points`` and ``latest``. The tenant always picks the database, so one
tenant's queries cannot reach another tenant's data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import ConnectionFailure

from history.models import Entry
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


def entry(doc: Doc) -> Entry:
    return Entry(
        device_id=doc["device_id"],
        attr=doc["attr"],
        value=doc.get("value"),
        ts_ms=to_ms(doc["ts"]),
        metadata=doc.get("metadata") or {},
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

    def attrs(self, tenant: str, device_id: str) -> list[str]:
        """The attributes of the device that have data (readings or actuations), sorted."""
        db = self._db(tenant)
        try:
            found = {d["attr"] for d in db["latest"].find({"device_id": device_id}, {"attr": 1, "_id": 0})}
            found |= {d["attr"] for d in db["actuated"].find({"device_id": device_id}, {"attr": 1, "_id": 0})}
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
    ) -> list[Entry]:
        flt: Doc = {"device_id": device_id, "attr": attr}
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
