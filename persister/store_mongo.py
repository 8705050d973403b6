"""MongoDB storage of points: one database per tenant, laid out as :mod:`ondas.points_layout` says (the contract
history reads; docs/storage-contract.md).

Driver errors are translated: an unreachable server is :class:`~ondas.errors.Unavailable` (the consumer loop
retries), a document the server refuses is :class:`~ondas.errors.Invalid` (the loop dead-letters it).
Duplicate keys (code 11000) are success: the point or a newer latest value is already stored.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import DeleteOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConnectionFailure, WriteConcernError

from ondas import mongo
from ondas import points_layout as layout
from ondas.errors import Invalid, Unavailable
from ondas.points_layout import latest_id, to_datetime
from persister.models import KnownDevice, Note, Point, WriteResult

__all__ = ["MongoPointStore", "device_document", "latest_id", "newest_per_key", "point_document", "to_datetime"]

DUPLICATE_KEY = 11000
TTL_INDEX = layout.TTL_INDEX.name

Doc = dict[str, Any]


def point_document(p: Point) -> Doc:
    return layout.point_document(
        id=p.id, device_id=p.device_id, attr=p.attr, value=p.value, ts_ms=p.ts_ms, metadata=p.metadata, kind=p.kind
    )


def device_document(d: KnownDevice, recorded: datetime) -> Doc:
    """A known device: ``_id`` is the device id; ``recorded`` is when the persister last stored the record."""
    return layout.device_document(d.device_id, d.label, recorded)


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
    """``ttl_seconds`` > 0: points older than that (by their ``ts``) are expired by the server through a TTL
    index on ``points.ts``; 0 keeps them forever. Changing it changes the index of every tenant it touches."""

    def __init__(self, url: str, db_prefix: str, timeout_ms: int = 5000, ttl_seconds: int = 0) -> None:
        if ttl_seconds < 0:
            raise ValueError("ttl_seconds must be 0 (keep forever) or positive")
        self._client = mongo.connect(url, timeout_ms)
        self._prefix = db_prefix
        self._ttl = ttl_seconds
        self._indexed: set[str] = set()
        self._lock = threading.Lock()

    def database(self, tenant: str) -> Database[Doc]:
        return self._client[layout.database_name(self._prefix, tenant)]

    def ping(self) -> bool:
        return mongo.ping(self._client)

    def close(self) -> None:
        self._client.close()

    def write(self, tenant: str, points: Sequence[Point]) -> WriteResult:
        if not points:
            return WriteResult(0, 0)
        db = self.database(tenant)
        try:
            self._ensure_indexes(tenant, db)
            inserted = self._insert(db[layout.POINTS], [point_document(p) for p in points])
            readings = [p for p in points if p.is_reading]
            if readings:
                self._update_latest(db[layout.LATEST], newest_per_key(readings))
            actuated = {(p.device_id, p.attr) for p in points if not p.is_reading}
            if actuated:
                self._note_actuated(db[layout.ACTUATED], actuated)
        except (ConnectionFailure, WriteConcernError) as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}", tenant=tenant) from exc
        return WriteResult(inserted=inserted, duplicates=len(points) - inserted)

    def delete_device(self, tenant: str, device_id: str) -> int:
        """Delete the device's points and latest values and forget the device; returns how many points went."""
        db = self.database(tenant)
        of_device = {layout.DEVICE_ID: device_id}
        try:
            deleted = db[layout.POINTS].delete_many(of_device).deleted_count
            db[layout.LATEST].delete_many(of_device)
            db[layout.ACTUATED].delete_many(of_device)
            db[layout.DEVICES].delete_one({layout.ID: device_id})
        except (ConnectionFailure, WriteConcernError) as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}", tenant=tenant) from exc
        return int(deleted)

    def record_devices(self, tenant: str, changes: Mapping[str, KnownDevice | None]) -> None:
        """Record the devices the device manager created or updated (``KnownDevice``) and forget the removed ones
        (``None``), in the ``devices`` collection history reads to tell an existing device from an unknown one."""
        if not changes:
            return
        now = datetime.now(UTC)
        ops: list[UpdateOne | DeleteOne] = [
            DeleteOne({layout.ID: device_id})
            if device is None
            else UpdateOne({layout.ID: device_id}, {"$set": device_document(device, now)}, upsert=True)
            for device_id, device in changes.items()
        ]
        try:
            self.database(tenant)[layout.DEVICES].bulk_write(ops, ordered=True)
        except (ConnectionFailure, WriteConcernError) as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}", tenant=tenant) from exc
        except BulkWriteError as exc:
            first = exc.details.get("writeErrors", [{}])[0]
            raise Invalid(f"MongoDB refused a device record: {first.get('errmsg')}", tenant=tenant) from exc

    def write_notifications(self, tenant: str, notes: Sequence[Note]) -> int:
        """Store the tenant's notifications (insert only; one already stored, by id, is left as it is). Returns
        how many were new."""
        if not notes:
            return 0
        db = self.database(tenant)
        docs = [
            layout.notification_document(id=n.msg_id, ts_ms=n.ts_ms, message=n.message, meta=n.meta, subject=n.subject)
            for n in notes
        ]
        try:
            self._ensure_indexes(tenant, db)
            return self._insert(db[layout.NOTIFICATIONS], docs)
        except (ConnectionFailure, WriteConcernError) as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}", tenant=tenant) from exc

    def drop_tenant(self, tenant: str) -> None:
        """Drop the tenant's database (all its points and latest values)."""
        try:
            self._client.drop_database(layout.database_name(self._prefix, tenant))
        except (ConnectionFailure, WriteConcernError) as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}", tenant=tenant) from exc
        with self._lock:
            self._indexed.discard(tenant)

    def drop_tenant_before(self, tenant: str, cutoff_ms: int) -> int:
        """Delete the tenant's points, latest values and notifications timed before ``cutoff_ms`` (a tenant deleted
        then, and created again since: what the new one stored stays). Returns how many points went."""
        db = self.database(tenant)
        cutoff = to_datetime(cutoff_ms)
        before = {layout.TS: {"$lt": cutoff}}
        try:
            deleted = db[layout.POINTS].delete_many(before).deleted_count
            db[layout.LATEST].delete_many(before)
            db[layout.NOTIFICATIONS].delete_many(before)
            db[layout.DEVICES].delete_many({layout.RECORDED: {"$lt": cutoff}})
            for device_id in db[layout.ACTUATED].distinct(layout.DEVICE_ID):
                if db[layout.POINTS].find_one({layout.DEVICE_ID: device_id}, {layout.ID: 1}) is None:
                    db[layout.ACTUATED].delete_many({layout.DEVICE_ID: device_id})
        except (ConnectionFailure, WriteConcernError) as exc:
            raise Unavailable(f"MongoDB is unavailable: {exc}", tenant=tenant) from exc
        return int(deleted)

    def _ensure_indexes(self, tenant: str, db: Database[Doc]) -> None:
        with self._lock:
            if tenant in self._indexed:
                return
        for index in layout.INDEXES:
            db[index.collection].create_index(index.key_list, name=index.name)
        self._ensure_ttl(db[layout.TTL_INDEX.collection])
        with self._lock:
            self._indexed.add(tenant)

    def _ensure_ttl(self, points: Collection[Doc]) -> None:
        current = points.index_information().get(TTL_INDEX)
        if current is not None and current.get("expireAfterSeconds") == self._ttl:
            return
        if current is not None:
            points.drop_index(TTL_INDEX)
        if self._ttl > 0:
            points.create_index(layout.TTL_INDEX.key_list, name=TTL_INDEX, expireAfterSeconds=self._ttl)

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
    def _note_actuated(actuated: Collection[Doc], keys: set[tuple[str, str]]) -> None:
        """Remember which attributes have actuation history, so history lists them with the readings."""
        ops = [
            UpdateOne({layout.ID: latest_id(d, a)}, {"$set": layout.actuated_document(d, a)}, upsert=True)
            for d, a in sorted(keys)
        ]
        actuated.bulk_write(ops, ordered=False)

    @staticmethod
    def _update_latest(latest: Collection[Doc], newest: list[Point]) -> None:
        ops = []
        for p in newest:
            doc = layout.latest_document(point_document(p))
            # Matches only an older value; when a newer (or equal) one is stored the upsert hits the
            # existing _id and fails with 11000, which means "keep the stored one".
            older = {layout.ID: doc[layout.ID], layout.TS: {"$lt": doc[layout.TS]}}
            ops.append(UpdateOne(older, {"$set": doc}, upsert=True))
        try:
            latest.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            refused = _non_duplicate_errors(exc)
            if refused:
                first = refused[0]
                raise Invalid(f"MongoDB refused a latest value: {first.get('errmsg')}") from exc
