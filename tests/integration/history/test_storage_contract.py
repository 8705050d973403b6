"""The storage contract (docs/storage-contract.md): what the persister writes, history reads back exactly.

The persister's own rules and store (``PersisterService`` on ``MongoPointStore``) take device-data messages and
device events as they arrive from Kafka; history's own store and service (``MongoHistoryStore``,
``HistoryService``) read them from the real MongoDB-compatible store. Values (with their JSON types), timestamps
to the millisecond, attribute names, device ids, kinds and latest values are compared field by field. The raw
documents and indexes are compared with the names written out here, not taken from ``ondas.points_layout``, so a
change of the layout that existing databases would not survive fails here."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pymongo
import pytest

from history.models import SHAPE_CONSISTENT, Entry, HistoryQuery
from history.service import HistoryService
from history.store_mongo import MongoHistoryStore
from ondas.timestamps import parse_timestamp
from ondas.topics import device_data, device_events, notifications
from persister.models import point_id
from persister.service import PersisterService
from persister.store_mongo import MongoPointStore
from tests.integration.history.helpers import PREFIX

pytestmark = pytest.mark.integration

T1 = parse_timestamp("2018-06-05T19:15:37.452Z")
T2 = T1 + 1  # one millisecond later
T_OLD = T1 - 1000  # arrives last, older than what is stored
T_CFG = T1 + 500
DEV, QUIET, UNKNOWN = "c6ea4b", "0998", "ffff01"
META = {"protocol": "mqtt", "payload": "json"}

#: (attr, value) of the first reading, one of each JSON type.
FIRST: dict[str, Any] = {
    "temperature": 23.5,
    "humidity": 60,
    "status": "ok",
    "online": True,
    "position": {"lat": -22.9, "lng": -47.06, "tags": ["roof", "north"], "fix": {"ok": False, "sats": None}},
    "samples": [1, 2.5, "three", None, True],
    "label": "Estação Ñ",
}
SECOND: dict[str, Any] = {"temperature": 23.625, "online": False}
OLD: dict[str, Any] = {"temperature": -4.0}
SENT: dict[str, Any] = {"fan": 100, "mode": "auto", "setpoint": 21.5, "enabled": True}


def parse_ts(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


@dataclass(frozen=True)
class Message:
    """A Kafka record as the persister's handler sees it."""

    _topic: str
    body: dict[str, Any]

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return json.dumps(self.body).encode()


class NoDeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, str]] = []

    def send(self, msg: Any, reason: str) -> None:
        self.sent.append((msg, reason))


NOTE = {"msgID": "2f6e", "timestamp": T1, "message": "Rain in the last hour: 105 mm",
        "metaAttrsFilter": {"rain": 105, "shouldPersist": True}, "subject": "user_notification"}  # fmt: skip


def messages(tenant: str) -> list[Message]:
    def data(attrs: dict[str, Any], ts: int, **meta: Any) -> Message:
        body = {"metadata": {"deviceid": DEV, "tenant": tenant, "timestamp": ts, **meta}, "attrs": attrs}
        return Message(device_data(tenant), body)

    def device(event: str, device_id: str, label: str, **meta: Any) -> Message:
        body = {"event": event, "meta": {"service": tenant, **meta}, "data": {"id": device_id, "label": label}}
        return Message(device_events(tenant), body)

    configure = {
        "event": "configure",
        "meta": {"service": tenant, "timestamp": T_CFG},
        "data": {"id": DEV, "attrs": SENT},
    }
    return [
        device("create", DEV, "Weather station"),
        device("create", QUIET, "Fan"),
        device("update", QUIET, "Fan 2"),
        data(FIRST, "2018-06-05T16:15:37.452-03:00", **META),  # an ISO timestamp with ms precision
        data(SECOND, T2, **META),
        Message(device_events(tenant), configure),
        data(OLD, T_OLD),
        Message(notifications(tenant), NOTE),
    ]


def expected_entries() -> dict[str, list[Entry]]:
    """What was written, per attribute, newest first (written out from the messages above)."""
    out: dict[str, list[Entry]] = {}
    for attrs, ts, meta in ((SECOND, T2, META), (FIRST, T1, META), (OLD, T_OLD, {})):
        for attr, value in attrs.items():
            out.setdefault(attr, []).append(Entry(DEV, attr, value, ts, meta, "reading"))
    for attr, value in SENT.items():
        out.setdefault(attr, []).append(Entry(DEV, attr, value, T_CFG, {"event": "configure"}, "command"))
    for entries in out.values():
        entries.sort(key=lambda e: -e.ts_ms)
    return out


def expected_latest() -> dict[str, Entry]:
    return {attr: e for attr, es in expected_entries().items() for e in es[:1] if e.kind == "reading"}


def same(got: Entry, want: Entry) -> None:
    """Field by field, with the value's type (``60`` is not ``60.0``, ``True`` is not ``1``)."""
    assert (got.device_id, got.attr, got.ts_ms, got.metadata, got.kind) == (
        want.device_id,
        want.attr,
        want.ts_ms,
        want.metadata,
        want.kind,
    )
    assert got.value == want.value
    assert json.dumps(got.value, sort_keys=True) == json.dumps(want.value, sort_keys=True)  # types, recursively


@pytest.fixture
def written(mongo_url: str, unique: str) -> Iterator[str]:
    """The tenant after the persister handled :func:`messages` (twice: a redelivery writes nothing new)."""
    store = MongoPointStore(mongo_url, PREFIX)
    dead = NoDeadLetters()
    try:
        service = PersisterService(store, dead)
        service.handle(messages(unique))
        service.handle(messages(unique))
        assert dead.sent == []
        yield unique
    finally:
        store.close()


@pytest.fixture
def reader(mongo_url: str) -> Iterator[MongoHistoryStore]:
    store = MongoHistoryStore(mongo_url, PREFIX)
    yield store
    store.close()


def test_history_reads_exactly_what_the_persister_wrote(written: str, reader: MongoHistoryStore) -> None:
    want = expected_entries()
    readings = sorted(a for a, es in want.items() if any(e.kind == "reading" for e in es))
    assert reader.attrs(written, DEV) == sorted(want)
    assert reader.attrs(written, DEV, "reading") == readings
    assert reader.attrs(written, DEV, "command") == sorted(SENT)

    for attr, entries in want.items():
        for newest_first in (True, False):
            got = reader.entries(
                written, DEV, attr, date_from_ms=None, date_to_ms=None, newest_first=newest_first, limit=0
            )
            order = entries if newest_first else entries[::-1]
            assert len(got) == len(order), attr
            for g, w in zip(got, order, strict=True):
                same(g, w)
        for kind in ("reading", "command"):
            got = reader.entries(
                written, DEV, attr, date_from_ms=None, date_to_ms=None, newest_first=True, limit=0, kind=kind
            )
            assert [(e.ts_ms, e.kind) for e in got] == [(e.ts_ms, e.kind) for e in entries if e.kind == kind]

    # Both ends of a window are inclusive, to the millisecond.
    got = reader.entries(written, DEV, "temperature", date_from_ms=T1, date_to_ms=T1, newest_first=True, limit=0)
    assert [e.value for e in got] == [23.5]

    latest = {e.attr: e for e in reader.latest(written, DEV)}
    assert sorted(latest) == readings
    for attr, w in expected_latest().items():
        same(latest[attr], w)
    assert latest["temperature"].value == 23.625  # the older reading that came last did not replace it

    # A device recorded from its events but without data exists; one never seen does not.
    assert (reader.device_exists(written, DEV), reader.device_exists(written, QUIET)) == (True, True)
    assert reader.device_exists(written, UNKNOWN) is False
    assert (reader.attrs(written, QUIET), reader.latest(written, QUIET)) == ([], [])


def test_history_service_answers_what_was_written(written: str, reader: MongoHistoryStore) -> None:
    service = HistoryService(reader)
    body = service.history(written, DEV, HistoryQuery(shape=SHAPE_CONSISTENT))
    want = {attr: [e.to_json(with_kind=True) for e in es] for attr, es in sorted(expected_entries().items())}
    assert body == want
    assert json.dumps(body, sort_keys=True) == json.dumps(want, sort_keys=True)
    assert body["temperature"][1]["ts"] == "2018-06-05T19:15:37.452000Z"
    assert service.history(written, QUIET, HistoryQuery(shape=SHAPE_CONSISTENT)) == {}


def test_stored_documents_keep_their_names(written: str, mongo_url: str) -> None:
    """The bytes existing databases hold: database, collection and field names, ids and indexes."""
    with pymongo.MongoClient(mongo_url, tz_aware=True) as client:
        db = client["ondas_history_" + written]
        assert sorted(db.list_collection_names()) == ["actuated", "devices", "latest", "notifications", "points"]
        assert db["points"].count_documents({}) == sum(len(es) for es in expected_entries().values())

        pid = point_id(DEV, "humidity", T1, 60)
        stored = db["points"].find_one({"_id": pid})
        assert stored is not None
        assert list(stored.items()) == [
            ("_id", pid),
            ("device_id", DEV),
            ("attr", "humidity"),
            ("value", 60),
            ("ts", parse_ts("2018-06-05T19:15:37.452+00:00")),
            ("metadata", META),
            ("kind", "reading"),
        ]
        cid = point_id(DEV, "fan", T_CFG, 100, "configure")
        command = db["points"].find_one({"_id": cid})
        assert command is not None
        assert (command["kind"], command["metadata"], command["value"]) == ("command", {"event": "configure"}, 100)

        latest = db["latest"].find_one({"_id": '["c6ea4b","temperature"]'})
        assert latest is not None
        assert dict(latest) == {
            "_id": '["c6ea4b","temperature"]',
            "device_id": DEV,
            "attr": "temperature",
            "value": 23.625,
            "ts": parse_ts("2018-06-05T19:15:37.453+00:00"),
            "metadata": META,
            "kind": "reading",
            "point_id": point_id(DEV, "temperature", T2, 23.625),
        }
        assert db["latest"].find_one({"attr": "fan"}) is None  # an actuation is never the latest value
        actuated = sorted(db["actuated"].find(), key=lambda d: d["attr"])
        assert actuated == [
            {"_id": json.dumps([DEV, a], separators=(",", ":")), "device_id": DEV, "attr": a} for a in sorted(SENT)
        ]

        devices = {d["_id"]: d for d in db["devices"].find()}
        assert sorted(devices) == [QUIET, DEV]
        assert sorted(devices[QUIET]) == ["_id", "device_id", "label", "recorded"]
        assert (devices[QUIET]["device_id"], devices[QUIET]["label"]) == (QUIET, "Fan 2")
        assert (devices[DEV]["device_id"], devices[DEV]["label"]) == (DEV, "Weather station")
        assert isinstance(devices[QUIET]["recorded"], datetime)

        def keys(collection: str) -> dict[str, list[tuple[str, int]]]:
            info = db[collection].index_information()
            return {name: [(k, int(d)) for k, d in spec["key"]] for name, spec in info.items()}

        assert keys("points") == {"_id_": [("_id", 1)], "device_attr_ts": [("device_id", 1), ("attr", 1), ("ts", -1)]}
        assert keys("latest") == {"_id_": [("_id", 1)], "device": [("device_id", 1)]}
        assert keys("actuated") == {"_id_": [("_id", 1)], "device": [("device_id", 1)]}
        assert keys("notifications") == {"_id_": [("_id", 1)], "ts": [("ts", -1)]}
        assert [list(d.items()) for d in db["notifications"].find()] == [
            [
                ("_id", "2f6e"),
                ("ts", parse_ts("2018-06-05T19:15:37.452+00:00")),
                ("message", "Rain in the last hour: 105 mm"),
                ("metaAttrsFilter", {"rain": 105, "shouldPersist": True}),
                ("subject", "user_notification"),
            ]
        ]


def test_a_long_tenant_name_is_read_from_the_same_shortened_database(mongo_url: str, unique: str) -> None:
    tenant = (unique + "_" + "x" * 63)[:63]
    store = MongoPointStore(mongo_url, PREFIX)
    reader = MongoHistoryStore(mongo_url, PREFIX)
    try:
        PersisterService(store, NoDeadLetters()).handle(messages(tenant))
        assert reader.attrs(tenant, DEV) == sorted(expected_entries())
        with pymongo.MongoClient(mongo_url, tz_aware=True) as client:
            names = [n for n in client.list_database_names() if n.startswith("ondas_history_" + unique)]
        assert len(names) == 1
        assert len(names[0]) == 63
        assert names[0].endswith("_" + hashlib.sha256(tenant.encode()).hexdigest()[:12])
    finally:
        store.close()
        reader.close()
