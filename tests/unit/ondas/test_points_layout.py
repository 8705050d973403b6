"""The points layout's codec round-trips, and its names, indexes and ids are the ones existing databases hold
(docs/storage-contract.md): a failure here means stored data would no longer be found."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ondas import points_layout as layout

pytestmark = pytest.mark.unit

T = 1521726381535  # 2018-03-22T13:46:21.535Z


def test_names_are_the_stored_ones() -> None:
    assert layout.DEFAULT_DB_PREFIX == "ondas_history_"
    assert (layout.POINTS, layout.LATEST, layout.ACTUATED, layout.DEVICES) == (
        "points",
        "latest",
        "actuated",
        "devices",
    )
    fields = (layout.ID, layout.DEVICE_ID, layout.ATTR, layout.VALUE, layout.TS, layout.METADATA, layout.KIND)
    assert fields == ("_id", "device_id", "attr", "value", "ts", "metadata", "kind")
    assert (layout.POINT_ID, layout.LABEL, layout.RECORDED) == ("point_id", "label", "recorded")
    assert (layout.KIND_READING, layout.KIND_COMMAND) == ("reading", "command")
    assert (layout.NOTIFICATIONS, layout.MESSAGE, layout.META, layout.SUBJECT) == (
        "notifications",
        "message",
        "metaAttrsFilter",
        "subject",
    )


def test_indexes_are_the_stored_ones() -> None:
    assert [(i.collection, i.name, i.key_list) for i in layout.INDEXES] == [
        ("points", "device_attr_ts", [("device_id", 1), ("attr", 1), ("ts", -1)]),
        ("latest", "device", [("device_id", 1)]),
        ("actuated", "device", [("device_id", 1)]),
        ("notifications", "ts", [("ts", -1)]),
    ]
    ttl = layout.TTL_INDEX
    assert (ttl.collection, ttl.name, ttl.key_list) == ("points", "ts_ttl", [("ts", 1)])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(("0998", "temperature", T, 10.6), "c702373be574cf1ffebaadf564511454", id="reading"),
        pytest.param(("0998", "fan", T, 100, "configure"), "5233150ac34d91c8bd141e7da7490a7e", id="actuation"),
        pytest.param(("0998", "cfg", T, {"b": [1, True], "a": "é"}), "662304bf048239f12fe9b11a2a0ff373", id="object"),
    ],
)
def test_point_ids_are_the_stored_ones(args: tuple[Any, ...], expected: str) -> None:
    assert layout.point_id(*args) == expected


def test_point_id_ignores_key_order_and_tells_an_actuation_from_a_reading() -> None:
    assert layout.point_id("d", "a", T, {"x": 1, "y": 2}) == layout.point_id("d", "a", T, {"y": 2, "x": 1})
    assert layout.point_id("d", "a", T, 1) != layout.point_id("d", "a", T, 1, "configure")


def test_database_names() -> None:
    assert layout.database_name("ondas_history_", "admin") == "ondas_history_admin"
    # Past MongoDB's 63 characters: shortened and suffixed with the first 12 hex digits of sha256(tenant).
    assert layout.database_name("ondas_history_", "x" * 60) == "ondas_history_" + "x" * 36 + "_42f2d9733566"


def test_latest_and_actuated_ids_are_compact_json() -> None:
    assert layout.latest_id("d", "a") == '["d","a"]'
    assert layout.latest_id("dé", 'a"b') == '["dé","a\\"b"]'


VALUES = [
    pytest.param(23.5, id="float"),
    pytest.param(60, id="int"),
    pytest.param("on", id="string"),
    pytest.param(True, id="bool"),
    pytest.param(None, id="null"),
    pytest.param({"lat": -22.9, "tags": ["a", "b"], "nested": {"ok": False}}, id="object"),
    pytest.param([1, "two", 3.0, None], id="array"),
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("kind", [layout.KIND_READING, layout.KIND_COMMAND])
def test_point_document_round_trips(value: Any, kind: str) -> None:
    metadata = {"protocol": "mqtt"} if kind == layout.KIND_READING else {"event": "configure"}
    pid = layout.point_id("dev", "attr", T, value)
    doc = layout.point_document(
        id=pid, device_id="dev", attr="attr", value=value, ts_ms=T, metadata=metadata, kind=kind
    )
    assert list(doc) == ["_id", "device_id", "attr", "value", "ts", "metadata", "kind"]
    assert doc["_id"] == pid
    assert doc["ts"] == datetime(2018, 3, 22, 13, 46, 21, 535000, tzinfo=UTC)
    assert layout.decode_point(doc) == layout.StoredPoint("dev", "attr", value, T, metadata, kind)

    latest = layout.latest_document(doc)
    assert list(latest) == ["_id", "device_id", "attr", "value", "ts", "metadata", "kind", "point_id"]
    assert (latest["_id"], latest["point_id"]) == ('["dev","attr"]', pid)
    assert layout.decode_point(latest) == layout.decode_point(doc)


@pytest.mark.parametrize(
    "ms", [pytest.param(0, id="epoch"), pytest.param(T, id="ms"), pytest.param(-1, id="before-epoch")]
)
def test_timestamps_round_trip_to_the_ms(ms: int) -> None:
    assert layout.to_ms(layout.to_datetime(ms)) == ms
    # BSON dates read without tz_aware are naive UTC.
    assert layout.to_ms(layout.to_datetime(ms).replace(tzinfo=None)) == ms


@pytest.mark.parametrize(
    ("doc", "kind"),
    [
        pytest.param({"kind": "reading", "metadata": {"event": "configure"}}, "reading", id="kind-wins"),
        pytest.param({"kind": "command"}, "command", id="command"),
        pytest.param({"metadata": {"event": "configure"}}, "command", id="legacy-command"),
        pytest.param({"metadata": {"protocol": "mqtt"}}, "reading", id="legacy-reading"),
        pytest.param({}, "reading", id="legacy-bare"),
    ],
)
def test_kind_of_stored_points(doc: dict[str, Any], kind: str) -> None:
    assert layout.kind_of(doc) == kind


def test_kind_filters_select_legacy_points_too() -> None:
    legacy = {"kind": {"$exists": False}, "metadata.event": "configure"}
    assert layout.kind_filter(layout.KIND_COMMAND) == {"$or": [{"kind": "command"}, legacy]}
    assert layout.kind_filter(layout.KIND_READING) == {"$nor": [{"kind": "command"}, legacy]}


def test_decode_fills_what_old_points_lack() -> None:
    doc = {"_id": "x", "device_id": "d", "attr": "a", "ts": layout.to_datetime(T)}
    assert layout.decode_point(doc) == layout.StoredPoint("d", "a", None, T, {}, layout.KIND_READING)


def test_device_and_actuated_documents() -> None:
    recorded = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    assert layout.device_document("d", "Thermometer", recorded) == {
        "device_id": "d",
        "label": "Thermometer",
        "recorded": recorded,
    }
    assert layout.device_document("d", None, recorded)["label"] is None
    assert layout.actuated_document("d", "fan") == {"device_id": "d", "attr": "fan"}


def test_notification_ids_and_documents() -> None:
    meta = {"level": 3, "shouldPersist": True}
    assert layout.notification_id("afe4fb7d-438f", T, "x", meta, "user_notification") == "afe4fb7d-438f"
    derived = layout.notification_id(None, T, "Something went wrong.", meta, "user_notification")
    assert derived == layout.notification_id(None, T, "Something went wrong.", dict(reversed(meta.items())),
                                             "user_notification")  # fmt: skip
    assert len(derived) == 32 and derived != layout.notification_id(None, T + 1, "Something went wrong.", meta,
                                                                    "user_notification")  # fmt: skip
    doc = layout.notification_document(id="n1", ts_ms=T, message="m", meta=meta, subject="user_notification")
    assert list(doc) == ["_id", "ts", "message", "metaAttrsFilter", "subject"]
    assert doc["ts"] == datetime(2018, 3, 22, 13, 46, 21, 535000, tzinfo=UTC)
    back = layout.decode_notification(doc)
    assert (back.msg_id, back.ts_ms, back.message, back.meta, back.subject) == ("n1", T, "m", meta, "user_notification")
