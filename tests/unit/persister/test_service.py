from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from ondas.errors import Unavailable
from persister.models import KnownDevice, Note, Point, WriteResult
from persister.service import PersisterService

pytestmark = pytest.mark.unit


@dataclass
class FakeMessage:
    _topic: str
    _value: bytes

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value


class FakeStore:
    def __init__(self, fail: Exception | None = None) -> None:
        self.stored: dict[str, dict[str, Point]] = {}
        self.devices: dict[str, dict[str, KnownDevice]] = {}
        self.notes: dict[str, dict[str, Note]] = {}
        self.writes: list[tuple[str, int]] = []
        self.fail = fail

    def write(self, tenant: str, points: Sequence[Point]) -> WriteResult:
        if self.fail is not None:
            raise self.fail
        self.writes.append((tenant, len(points)))
        db = self.stored.setdefault(tenant, {})
        new = [p for p in points if p.id not in db]
        db.update({p.id: p for p in points})
        return WriteResult(len(new), len(points) - len(new))

    def delete_device(self, tenant: str, device_id: str) -> int:
        db = self.stored.setdefault(tenant, {})
        gone = [k for k, p in db.items() if p.device_id == device_id]
        for k in gone:
            del db[k]
        self.writes.append((tenant, -len(gone)))
        self.devices.get(tenant, {}).pop(device_id, None)
        return len(gone)

    def record_devices(self, tenant: str, changes: Mapping[str, KnownDevice | None]) -> None:
        known = self.devices.setdefault(tenant, {})
        for device_id, device in changes.items():
            if device is None:
                known.pop(device_id, None)
            else:
                known[device_id] = device

    def write_notifications(self, tenant: str, notes: Sequence[Note]) -> int:
        if self.fail is not None:
            raise self.fail
        kept = self.notes.setdefault(tenant, {})
        new = [n for n in notes if n.msg_id not in kept]
        kept.update({n.msg_id: n for n in new})
        return len(new)

    def ping(self) -> bool:
        return True


class FakeDeadLetter:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, str]] = []

    def send(self, msg: Any, reason: str) -> None:
        self.sent.append((msg, reason))


def msg(tenant: str, device: str, attrs: dict[str, Any], ts: object = 1528226137452, topic_tenant: str | None = None):
    body = {"metadata": {"deviceid": device, "tenant": tenant, "timestamp": ts}, "attrs": attrs}
    return FakeMessage(f"{topic_tenant or tenant}.device-data", json.dumps(body).encode())


def event(
    tenant: str, kind: str, data: dict[str, Any], ts: int | None = 1528226137999, topic_tenant: str | None = None
):
    meta: dict[str, Any] = {"service": tenant}
    if ts is not None:
        meta["timestamp"] = ts
    body = {"event": kind, "meta": meta, "data": data}
    return FakeMessage(f"{topic_tenant or tenant}.dojot.device-manager.device", json.dumps(body).encode())


def test_good_messages_are_written_once_per_tenant() -> None:
    store, dlq = FakeStore(), FakeDeadLetter()
    PersisterService(store, dlq).handle(
        [msg("a", "d1", {"t": 1}), msg("a", "d2", {"t": 2, "h": 3}), msg("b", "d1", {"t": 4})]
    )
    assert sorted(store.writes) == [("a", 3), ("b", 1)]
    assert dlq.sent == []


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        pytest.param(FakeMessage("a.device-data", b"{not json"), "not JSON", id="not-json"),
        pytest.param(FakeMessage("a.device-data", b"[1]"), "JSON object", id="not-object"),
        pytest.param(FakeMessage("a.device-data", b'{"attrs":{}}'), "metadata", id="no-metadata"),
        pytest.param(msg("a", "d", {"t": 1}, ts="yesterday"), "timestamp", id="bad-timestamp"),
        pytest.param(msg("b", "d", {"t": 1}, topic_tenant="a"), "does not match", id="tenant-mismatch"),
        pytest.param(FakeMessage("a.other", b"{}"), "nor a notifications topic", id="wrong-subject"),
        pytest.param(FakeMessage("a.dojot.notifications", b'{"message": "m"}'), "timestamp", id="note-no-ts"),
        pytest.param(
            FakeMessage("a.dojot.notifications", b'{"timestamp": 1, "message": 3}'), "message", id="note-bad-msg"
        ),
        pytest.param(event("a", "configure", {"id": "d", "attrs": "x"}), "attrs", id="configure-no-attrs"),
        pytest.param(event("a", "configure", {"id": "d", "attrs": {"f": 1}}, ts=None), "timestamp", id="no-ts"),
        pytest.param(
            event("b", "configure", {"id": "d", "attrs": {"f": 1}}, topic_tenant="a"),
            "does not match",
            id="event-tenant-mismatch",
        ),
        pytest.param(event("a", "explode", {"id": "d"}), "event", id="unknown-event"),
    ],
)
def test_a_bad_message_is_dead_lettered_and_the_good_ones_stored(bad: FakeMessage, reason: str) -> None:
    store, dlq = FakeStore(), FakeDeadLetter()
    good = [msg("a", "d1", {"t": 1}), msg("a", "d1", {"t": 2}, ts=1528226137453)]
    PersisterService(store, dlq).handle([good[0], bad, good[1]])
    assert store.writes == [("a", 2)]
    assert len(dlq.sent) == 1
    assert dlq.sent[0][0] is bad
    assert reason in dlq.sent[0][1]


def test_redelivered_batch_stores_nothing_new() -> None:
    store, dlq = FakeStore(), FakeDeadLetter()
    service = PersisterService(store, dlq)
    batch = [msg("a", "d1", {"t": 1, "h": 2})]
    service.handle(batch)
    service.handle([*batch, msg("a", "d1", {"t": 1, "h": 2})])
    assert len(store.stored["a"]) == 2


def test_store_unavailable_raises_before_dead_lettering() -> None:
    store, dlq = FakeStore(fail=Unavailable("down")), FakeDeadLetter()
    with pytest.raises(Unavailable):
        PersisterService(store, dlq).handle([msg("a", "d1", {"t": 1}), FakeMessage("a.device-data", b"x")])
    assert dlq.sent == []


def test_empty_attrs_is_accepted_and_writes_nothing_bad() -> None:
    store, dlq = FakeStore(), FakeDeadLetter()
    PersisterService(store, dlq).handle([msg("a", "d1", {})])
    assert dlq.sent == []
    assert store.stored.get("a", {}) == {}


def test_configure_events_are_stored_as_actuation_points_not_readings() -> None:
    store, dlq = FakeStore(), FakeDeadLetter()
    PersisterService(store, dlq).handle(
        [
            msg("a", "d1", {"fan": 100}, ts=1528226137999),
            event("a", "configure", {"id": "d1", "attrs": {"fan": 100}}),
            event("a", "create", {"id": "d2", "label": "x", "templates": [1], "attrs": {}}),
            event("a", "update", {"id": "d2", "label": "y", "templates": [1], "attrs": {}}),
        ]
    )
    assert dlq.sent == []
    points = sorted(store.stored["a"].values(), key=lambda p: p.source)
    assert [(p.device_id, p.attr, p.value, p.ts_ms, p.source) for p in points] == [
        ("d1", "fan", 100, 1528226137999, "configure"),
        ("d1", "fan", 100, 1528226137999, "device"),
    ]
    assert points[0].metadata == {"event": "configure"}
    assert not points[0].is_reading
    assert points[0].id != points[1].id


def test_device_removal_keeps_data_by_default() -> None:
    store, dlq = FakeStore(), FakeDeadLetter()
    PersisterService(store, dlq).handle([msg("a", "d1", {"t": 1}), event("a", "remove", {"id": "d1"})])
    assert len(store.stored["a"]) == 1
    assert dlq.sent == []


def test_device_removal_drops_data_written_before_it_in_the_batch_only() -> None:
    store, dlq = FakeStore(), FakeDeadLetter()
    service = PersisterService(store, dlq, drop_removed_devices=True)
    service.handle([msg("a", "d1", {"t": 1}), msg("a", "d2", {"t": 1})])
    service.handle(
        [
            msg("a", "d1", {"t": 2}, ts=1528226138000),
            event("a", "remove", {"id": "d1"}),
            msg("a", "d3", {"t": 3}),
        ]
    )
    assert sorted(p.device_id for p in store.stored["a"].values()) == ["d2", "d3"]
    # What came before the removal was written first, then deleted with the rest of d1's data.
    assert store.writes[1:] == [("a", 1), ("a", -2), ("a", 1)]


def test_created_and_updated_devices_are_recorded_and_removed_ones_forgotten() -> None:
    store, dlq = FakeStore(), FakeDeadLetter()
    service = PersisterService(store, dlq)
    service.handle(
        [
            event("a", "create", {"id": "d1", "label": "one", "templates": [], "attrs": {}}, ts=None),
            event("a", "create", {"id": "d2", "label": "two", "templates": [], "attrs": {}}, ts=None),
            event("a", "update", {"id": "d1", "label": "uno", "templates": [], "attrs": {}}, ts=None),
            event("a", "remove", {"id": "d2"}, ts=None),
            event("a", "create", {"id": "d3", "templates": [], "attrs": {}}, ts=None),
        ]
    )
    assert dlq.sent == []
    assert store.devices["a"] == {"d1": KnownDevice("d1", "uno"), "d3": KnownDevice("d3", None)}
    assert store.stored.get("a", {}) == {}


def test_a_device_created_again_after_its_removal_in_one_batch_is_known() -> None:
    store, dlq = FakeStore(), FakeDeadLetter()
    service = PersisterService(store, dlq, drop_removed_devices=True)
    create = event("a", "create", {"id": "d1", "label": "x", "templates": [], "attrs": {}}, ts=None)
    service.handle([create, msg("a", "d1", {"t": 1}), event("a", "remove", {"id": "d1"}, ts=None)])
    assert store.devices["a"] == {}
    assert store.stored["a"] == {}
    service.handle([event("a", "remove", {"id": "d1"}, ts=None), create])
    assert store.devices["a"] == {"d1": KnownDevice("d1", "x")}


def test_a_create_event_of_another_tenant_is_dead_lettered() -> None:
    store, dlq = FakeStore(), FakeDeadLetter()
    bad = event("b", "create", {"id": "d1", "templates": [], "attrs": {}}, topic_tenant="a")
    PersisterService(store, dlq).handle([bad])
    assert [reason for _msg, reason in dlq.sent] == ["meta.service 'b' does not match the topic's tenant 'a'"]
    assert store.devices == {}


def note(tenant: str, body: dict[str, Any]) -> FakeMessage:
    return FakeMessage(f"{tenant}.dojot.notifications", json.dumps(body).encode())


def test_notifications_are_kept_once_unless_they_ask_not_to_be() -> None:
    store, dlq = FakeStore(), FakeDeadLetter()
    service = PersisterService(store, dlq)
    raised = {"msgID": "n1", "timestamp": 1528226137452, "message": "rain", "metaAttrsFilter": {"rain": 105},
              "subject": "user_notification"}  # fmt: skip
    quiet = {"timestamp": 1528226137453, "message": "hush", "metaAttrsFilter": {"shouldPersist": False}}
    anonymous = {"timestamp": "2018-06-05T19:15:37.454Z", "message": "no id"}
    batch = [note("a", raised), note("a", quiet), note("a", anonymous), note("b", raised), msg("a", "d1", {"t": 1})]
    service.handle(batch)
    service.handle(batch)  # redelivered: nothing new
    assert sorted(store.notes["a"]) == sorted(["n1", next(k for k in store.notes["a"] if k != "n1")])
    kept = {n.message: n for n in store.notes["a"].values()}
    assert set(kept) == {"rain", "no id"}
    assert kept["rain"] == Note("n1", 1528226137452, "rain", {"rain": 105}, "user_notification")
    assert kept["no id"].ts_ms == 1528226137454 and kept["no id"].subject == "user_notification"
    assert list(store.notes["b"]) == ["n1"]  # the same msgID in another tenant is another tenant's
    assert len(store.stored["a"]) == 1 and dlq.sent == []
