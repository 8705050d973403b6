"""The storage layout of device points, the contract between the persister (the only writer) and history (a
reader): the database prefix, collection and field names, index definitions, id derivation and the codec
between domain values and stored documents, each in this one place. docs/storage-contract.md describes the layout
and how a change to it must be made.

Every name here is a name existing databases already hold: changing one is a data migration, not a rename.
The codec works on plain values (it knows neither service's models): the persister encodes, history decodes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING

from ondas.tenant import tenant_database_name

Doc = dict[str, Any]

#: The database of tenant ``t`` is ``<prefix><t>`` (see :func:`database_name`); this is the prefix both services
#: default to (``PERSISTER_MONGO_DB_PREFIX`` / ``HISTORY_MONGO_DB_PREFIX`` must agree).
DEFAULT_DB_PREFIX = "ondas_history_"

# Collections of a tenant's database.
POINTS = "points"  #: every reading and actuation, one document per (message, attribute)
LATEST = "latest"  #: the newest reading per (device, attribute)
ACTUATED = "actuated"  #: the (device, attribute) pairs with actuation history
DEVICES = "devices"  #: the devices the device manager created or updated
NOTIFICATIONS = "notifications"  #: the tenant's notifications (``<tenant>.dojot.notifications``) to keep

# Fields.
ID = "_id"
DEVICE_ID = "device_id"
ATTR = "attr"
VALUE = "value"
TS = "ts"
METADATA = "metadata"
KIND = "kind"
POINT_ID = "point_id"  #: in ``latest``: the ``_id`` of the point it copies
LABEL = "label"  #: in ``devices``
RECORDED = "recorded"  #: in ``devices``: when the persister last stored the record
#: In ``notifications`` (dojot's names): the text, its attributes (the filterable ones) and its subject.
MESSAGE = "message"
META = "metaAttrsFilter"
SUBJECT = "subject"

#: Values of ``kind``: what the device reported, or a value sent to it (a ``configure`` event).
KIND_READING = "reading"
KIND_COMMAND = "command"

#: Points stored before ``kind`` existed: an actuation is one whose ``metadata.event`` is ``configure``.
EVENT = "event"
LEGACY_COMMAND_EVENT = "configure"
_LEGACY_COMMAND: Doc = {KIND: {"$exists": False}, f"{METADATA}.{EVENT}": LEGACY_COMMAND_EVENT}
_COMMANDS: list[Doc] = [{KIND: KIND_COMMAND}, _LEGACY_COMMAND]
_KIND_FILTERS: dict[str, Doc] = {KIND_COMMAND: {"$or": _COMMANDS}, KIND_READING: {"$nor": _COMMANDS}}


@dataclass(frozen=True)
class Index:
    collection: str
    name: str
    keys: tuple[tuple[str, int], ...]

    @property
    def key_list(self) -> list[tuple[str, int]]:
        """``keys`` in the form ``create_index`` takes."""
        return list(self.keys)


#: The indexes every tenant database has, created by the writer in this order. ``device_attr_ts`` serves every
#: history query (one device and attribute, a time window, newest or oldest first) and the deletion of a removed
#: device's points; the ``device`` indexes serve listing a device's attributes and deleting them.
INDEXES: tuple[Index, ...] = (
    Index(POINTS, "device_attr_ts", ((DEVICE_ID, ASCENDING), (ATTR, ASCENDING), (TS, DESCENDING))),
    Index(LATEST, "device", ((DEVICE_ID, ASCENDING),)),
    Index(ACTUATED, "device", ((DEVICE_ID, ASCENDING),)),
    Index(NOTIFICATIONS, "ts", ((TS, DESCENDING),)),
)
#: With a data TTL (``PERSISTER_DATA_TTL_SECONDS`` > 0): points expire that many seconds after their ``ts``.
TTL_INDEX = Index(POINTS, "ts_ttl", ((TS, ASCENDING),))

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def database_name(prefix: str, tenant: str) -> str:
    """The tenant's database: ``<prefix><tenant>``, hash-shortened past MongoDB's 63 characters."""
    return tenant_database_name(prefix, tenant)


def to_datetime(ms: int) -> datetime:
    """Epoch ms as an aware UTC datetime, exactly (BSON dates have ms precision)."""
    return EPOCH + timedelta(milliseconds=ms)


def to_ms(dt: datetime) -> int:
    """A stored ``ts`` back as epoch ms (a naive datetime is UTC, as BSON dates are)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - EPOCH) // timedelta(milliseconds=1)


def point_id(device_id: str, attr: str, ts_ms: int, value: Any, source: str | None = None) -> str:
    """A point's ``_id``: blake2b-128 (hex) of the canonical JSON of ``[device_id, attr, ts_ms, value]``, with
    ``source`` appended when given (an actuation passes ``configure``). The same point always gets the same id,
    so storing it twice is a no-op; two values of one attribute at one instant are two points, and an actuation
    never shares an id with a reading of the same value at the same instant."""
    key: list[Any] = [device_id, attr, ts_ms, value]
    if source is not None:
        key.append(source)
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def latest_id(device_id: str, attr: str) -> str:
    """The ``_id`` of a (device, attribute) in ``latest`` and ``actuated``: the compact JSON ``[device_id, attr]``."""
    return json.dumps([device_id, attr], ensure_ascii=False, separators=(",", ":"))


def point_document(
    *, id: str, device_id: str, attr: str, value: Any, ts_ms: int, metadata: dict[str, Any], kind: str
) -> Doc:
    """A document of ``points``."""
    return {
        ID: id,
        DEVICE_ID: device_id,
        ATTR: attr,
        VALUE: value,
        TS: to_datetime(ts_ms),
        METADATA: metadata,
        KIND: kind,
    }


def latest_document(point: Doc) -> Doc:
    """The ``latest`` document of a point document: the same fields, keyed by (device, attribute), with the
    point's ``_id`` in ``point_id``."""
    return {**point, ID: latest_id(point[DEVICE_ID], point[ATTR]), POINT_ID: point[ID]}


def actuated_document(device_id: str, attr: str) -> Doc:
    """The fields of an ``actuated`` document (its ``_id`` is :func:`latest_id`)."""
    return {DEVICE_ID: device_id, ATTR: attr}


def device_document(device_id: str, label: str | None, recorded: datetime) -> Doc:
    """The fields of a ``devices`` document (its ``_id`` is the device id)."""
    return {DEVICE_ID: device_id, LABEL: label, RECORDED: recorded}


def notification_id(msg_id: str | None, ts_ms: int, message: str, meta: dict[str, Any], subject: str) -> str:
    """A notification's ``_id``: its ``msgID`` (the flowbroker derives it from the flow, node and source message,
    so a redelivered notification has the same one); without one, blake2b-128 of its canonical JSON."""
    if msg_id:
        return msg_id
    canonical = json.dumps([ts_ms, message, meta, subject], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def notification_document(*, id: str, ts_ms: int, message: str, meta: dict[str, Any], subject: str) -> Doc:
    """A document of ``notifications``."""
    return {ID: id, TS: to_datetime(ts_ms), MESSAGE: message, META: meta, SUBJECT: subject}


@dataclass(frozen=True)
class StoredNotification:
    """A ``notifications`` document as the reader sees it."""

    msg_id: str
    ts_ms: int
    message: str
    meta: dict[str, Any]
    subject: str


def decode_notification(doc: Doc) -> StoredNotification:
    return StoredNotification(
        msg_id=str(doc[ID]),
        ts_ms=to_ms(doc[TS]),
        message=str(doc.get(MESSAGE, "")),
        meta=doc.get(META) or {},
        subject=str(doc.get(SUBJECT, "")),
    )


def kind_filter(kind: str) -> Doc:
    """The query that selects the points of ``kind`` (``KIND_READING`` or ``KIND_COMMAND``), legacy ones included."""
    return _KIND_FILTERS[kind]


def kind_of(doc: Doc) -> str:
    """A stored point's kind: its ``kind``; without one (stored before ``kind`` existed) a command when its
    ``metadata.event`` is ``configure``, else a reading."""
    kind = doc.get(KIND)
    if isinstance(kind, str):
        return kind
    metadata = doc.get(METADATA)
    legacy = isinstance(metadata, dict) and metadata.get(EVENT) == LEGACY_COMMAND_EVENT
    return KIND_COMMAND if legacy else KIND_READING


@dataclass(frozen=True)
class StoredPoint:
    """A point or latest document as the reader sees it."""

    device_id: str
    attr: str
    value: Any
    ts_ms: int
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: str = KIND_READING


def decode_point(doc: Doc) -> StoredPoint:
    """A ``points`` or ``latest`` document back as values (a missing ``value`` is None, missing ``metadata`` {})."""
    return StoredPoint(
        device_id=doc[DEVICE_ID],
        attr=doc[ATTR],
        value=doc.get(VALUE),
        ts_ms=to_ms(doc[TS]),
        metadata=doc.get(METADATA) or {},
        kind=kind_of(doc),
    )
