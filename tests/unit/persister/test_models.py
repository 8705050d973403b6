from __future__ import annotations

import pytest

from ondas.contracts import DeviceData
from persister.models import Point, TenantMismatch, point_id, points_from
from persister.store_mongo import latest_id, newest_per_key, point_document, to_datetime

pytestmark = pytest.mark.unit


def _data(**meta: object) -> DeviceData:
    return DeviceData.parse(
        {
            "metadata": {"deviceid": "c6ea4b", "tenant": "admin", "timestamp": 1528226137452, **meta},
            "attrs": {"humidity": 60, "temperature": 23.5},
        }
    )


def test_points_from_one_point_per_attr_with_extra_metadata() -> None:
    points = points_from(_data(protocol="mqtt", payload="json"), "admin")
    assert points == [
        Point("c6ea4b", "humidity", 60, 1528226137452, {"protocol": "mqtt", "payload": "json"}),
        Point("c6ea4b", "temperature", 23.5, 1528226137452, {"protocol": "mqtt", "payload": "json"}),
    ]


def test_points_from_rejects_a_tenant_other_than_the_topics() -> None:
    with pytest.raises(TenantMismatch, match="does not match"):
        points_from(_data(), "other")


@pytest.mark.parametrize(
    ("timestamp", "expected_ms"),
    [
        pytest.param(1528226137452, 1528226137452, id="epoch-ms"),
        pytest.param(1528226137, 1528226137000, id="epoch-s"),
        pytest.param(1528226137.452, 1528226137452, id="epoch-s-fraction"),
        pytest.param("2018-06-05T19:15:37.452Z", 1528226137452, id="iso-z"),
        pytest.param("2018-06-05T16:15:37.452-03:00", 1528226137452, id="iso-offset"),
    ],
)
def test_timestamps_land_on_the_same_instant(timestamp: object, expected_ms: int) -> None:
    (p, _) = points_from(_data(timestamp=timestamp), "admin")
    assert p.ts_ms == expected_ms


BASE = ("dev", "temp", 1000, 21.5)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(("dev2", "temp", 1000, 21.5), id="device"),
        pytest.param(("dev", "hum", 1000, 21.5), id="attr"),
        pytest.param(("dev", "temp", 1001, 21.5), id="ts"),
        pytest.param(("dev", "temp", 1000, 21.6), id="value"),
        pytest.param(("dev", "temp", 1000, "21.5"), id="value-type"),
    ],
)
def test_point_id_differs_when_any_part_differs(other: tuple[str, str, int, object]) -> None:
    assert point_id(*BASE) != point_id(*other)


def test_point_id_is_deterministic_and_ignores_dict_order() -> None:
    assert point_id(*BASE) == point_id(*BASE)
    assert point_id("d", "a", 1, {"x": 1, "y": 2}) == point_id("d", "a", 1, {"y": 2, "x": 1})


def test_newest_per_key_keeps_the_newest_of_each_device_attr() -> None:
    pts = [Point("d", "a", 1, 10), Point("d", "a", 3, 30), Point("d", "a", 2, 20), Point("d", "b", 9, 5)]
    assert sorted((p.attr, p.value) for p in newest_per_key(pts)) == [("a", 3), ("b", 9)]


def test_point_document_has_ms_precision_datetime() -> None:
    doc = point_document(Point("d", "a", 1, 1521726427050, {"protocol": "mqtt"}))
    assert doc["ts"] == to_datetime(1521726427050)
    assert doc["ts"].isoformat() == "2018-03-22T13:47:07.050000+00:00"
    assert doc["_id"] == point_id("d", "a", 1521726427050, 1)
    assert set(doc) == {"_id", "device_id", "attr", "value", "ts", "metadata", "kind"}
    assert doc["kind"] == "reading"
    command = point_document(Point("d", "fan", 1, 0, {"event": "configure"}, "configure"))
    assert command["kind"] == "command"
    assert latest_id("d", "a") == '["d","a"]'
