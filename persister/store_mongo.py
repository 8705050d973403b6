"""MongoDB storage of points: one database per tenant (see the package docstring for the layout).

Driver errors are translated: an unreachable server is :class:`~ondas.errors.Unavailable` (the consumer loop
retries), a document the server refuses is :class:`~ondas.errors.Invalid` (the loop dead-letters it).
Duplicate keys (code 11000) are success: the point or a newer latest value is already stored.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError, WriteConcernError

from ondas.errors import Invalid, Unavailable
from ondas.tenant import tenant_database_name
from persister.models import Point, WriteResult

DUPLICATE_KEY = 11000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Doc = dict[str, Any]


def to_datetime(ms: int) -> datetime:
    """Epoch ms as an aware UTC datetime, exactly (BSON dates have ms precision)."""
    return EPOCH + timedelta(milliseconds=ms)


def latest_id(device_id: str, attr: str) -> str:
    return json.dumps([device_id, attr], ensure_ascii=False, separators=(",", ":"))


def point_document(p: Point) -> Doc:
    return {
        "_id": p.id,
        "device_id": p.device_id,
        "attr": p.attr,
        "value": p.value,
        "ts": to_datetime(p.ts_ms),
        "metadata": p.metadata,
    }


def newest_per_key(points: Sequence[Point]) -> list[Point]:
    """The newest point of each (device_id, attr); on equal timestamps the later one in the batch wins."""
    newest: dict[tuple[str, str], Point] = {}
    for p in points:
        key = (p.device_id, p.attr)
        cur = newest.get(key)
        if cur is None or p.ts_ms >= cur.ts_ms:
            newest[key] = p
    return list(newest.values())


def _non_duplicate_errors(exc: BulkWriteError) -> list[dict[str, Any]]:
    return [e for e in exc.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]


class MongoPointStore:
    def __init__(self, url: str, db_prefix: str, timeout_ms: int = 5000) -> None:
        self._client: MongoClient[Doc] = MongoClient(
            url, tz_aware=True, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
        )
        self._prefix = db_prefix
        self._indexed: set[str] = set()
        self._lock = threading.Lock()

    def database(self, tenant: str) -> Database[Doc]:
        return self._client[tenant_database_name(self._prefix, tenant)]

    def ping(self) -> bool:
        try:
            return bool(self._client.admin.command("ping").get("ok"))
        except PyMongoError:
            return False

    def close(self) -> None:
        self._client.close()

    def write(self, tenant: str, points: Sequence[Point]) -> WriteResult:
        if not points:
            return WriteResult(0, 0)
        db = self.database(tenant)
        try:
            self._ensure_indexes(tenant, db)
            inserted = self._insert(db["points"], [point_document(p) for p in points])
            self._update_latest(db["latest"], newest_per_key(points))
        except (ConnectionFailure, WriteConcernError) as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}", tenant=tenant) from exc
        return WriteResult(inserted=inserted, duplicates=len(points) - inserted)

    def _ensure_indexes(self, tenant: str, db: Database[Doc]) -> None:
        with self._lock:
            if tenant in self._indexed:
                return
        db["points"].create_index(
            [("device_id", ASCENDING), ("attr", ASCENDING), ("ts", DESCENDING)], name="device_attr_ts"
        )
        db["latest"].create_index([("device_id", ASCENDING)], name="device")
        with self._lock:
            self._indexed.add(tenant)

    @staticmethod
    def _insert(points: Collection[Doc], docs: list[Doc]) -> int:
        try:
            return len(points.insert_many(docs, ordered=False).inserted_ids)
        except BulkWriteError as exc:
            refused = _non_duplicate_errors(exc)
            if refused:
                first = refused[0]
                raise Invalid(f"MongoDB refused a point: {first.get('errmsg')}", code=first.get("code")) from exc
            return int(exc.details.get("nInserted", 0))

    @staticmethod
    def _update_latest(latest: Collection[Doc], newest: list[Point]) -> None:
        ops = []
        for p in newest:
            doc = point_document(p)
            key = latest_id(p.device_id, p.attr)
            doc["_id"] = key
            doc["point_id"] = p.id
            # Matches only an older value; when a newer (or equal) one is stored the upsert hits the
            # existing _id and fails with 11000, which means "keep the stored one".
            ops.append(UpdateOne({"_id": key, "ts": {"$lt": doc["ts"]}}, {"$set": doc}, upsert=True))
        try:
            latest.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            refused = _non_duplicate_errors(exc)
            if refused:
                first = refused[0]
                raise Invalid(f"MongoDB refused a latest value: {first.get('errmsg')}") from exc
