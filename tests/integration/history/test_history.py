"""History against the real MongoDB-compatible store, with points written by the persister's own store
adapter (the storage layout is the contract between the two services)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from ondas.timestamps import parse_timestamp
from persister.models import Note, Point
from persister.store_mongo import MongoPointStore
from tests.integration.history.helpers import PREFIX, make_client

pytestmark = pytest.mark.integration

T0 = parse_timestamp("2018-03-22T13:46:21.535Z")


@pytest.fixture
def writer(mongo_url: str) -> Iterator[MongoPointStore]:
    store = MongoPointStore(mongo_url, PREFIX)
    yield store
    store.close()


@pytest.fixture
def client(mongo_url: str, tokens: Any) -> Iterator[FlaskClient]:
    with make_client(mongo_url, tokens, 50) as c:
        yield c


@pytest.fixture
def tenant(unique: str, writer: MongoPointStore) -> str:
    """A tenant whose device "3bb9" has temperature at T0, T0+1s, ... T0+4s (values 20..24) and pressure."""
    pts = [Point("3bb9", "temperature", 20 + i, T0 + 1000 * i, {"protocol": "mqtt"}) for i in range(5)]
    pts += [Point("3bb9", "pressure", 1000 + i, T0 + 1000 * i) for i in range(3)]
    writer.write(unique, pts)
    return unique


def get(client: FlaskClient, tokens: Any, tenant: str, query: str, device: str = "3bb9") -> Any:
    return client.get(f"/device/{device}/history?{query}", headers=tokens.headers(tenant))


def test_last_n_newest_first_in_dojots_shape(client, tokens, tenant) -> None:
    resp = get(client, tokens, tenant, "lastN=3&attr=temperature")
    assert resp.status_code == 200
    assert resp.json == [
        {
            "device_id": "3bb9",
            "ts": f"2018-03-22T13:46:2{5 - i}.535000Z",
            "metadata": {"protocol": "mqtt"},
            "value": 24 - i,
            "attr": "temperature",
        }
        for i in range(3)
    ]


def test_first_n_oldest_first_and_h_limit(client, tokens, tenant) -> None:
    assert [e["value"] for e in get(client, tokens, tenant, "firstN=2&attr=temperature").json] == [20, 21]
    assert [e["value"] for e in get(client, tokens, tenant, "hLimit=2&attr=temperature").json] == [24, 23]
    assert [e["value"] for e in get(client, tokens, tenant, "attr=temperature").json] == [24, 23, 22, 21, 20]


def test_several_attrs_and_no_attr_are_dicts(client, tokens, tenant) -> None:
    for query in ("lastN=2&attr=temperature,pressure", "lastN=2&attr=temperature&attr=pressure"):
        body = get(client, tokens, tenant, query).json
        assert list(body) == ["temperature", "pressure"]
        assert [e["value"] for e in body["temperature"]] == [24, 23]
        assert [e["value"] for e in body["pressure"]] == [1002, 1001]
    body = get(client, tokens, tenant, "lastN=1").json
    assert sorted(body) == ["pressure", "temperature"]
    assert body["pressure"] == [
        {"device_id": "3bb9", "ts": "2018-03-22T13:46:23.535000Z", "value": 1002, "attr": "pressure"}
    ]


def test_date_window_is_inclusive(client, tokens, tenant) -> None:
    query = "attr=temperature&dateFrom=2018-03-22T13:46:22.535Z&dateTo=2018-03-22T10:46:24.535-03:00"
    assert [e["value"] for e in get(client, tokens, tenant, query).json] == [23, 22, 21]
    assert [e["value"] for e in get(client, tokens, tenant, query + "&lastN=1").json] == [23]
    assert [e["value"] for e in get(client, tokens, tenant, query + "&firstN=1").json] == [21]


@pytest.mark.parametrize(
    "query",
    ["lastN=abc", "firstN=1.5", "dateFrom=not-a-date", "dateTo=2018-03-22T25:00:00Z", "lastN=1&firstN=1"],
)
def test_bad_parameters_are_400(client, tokens, tenant, query) -> None:
    resp = get(client, tokens, tenant, query)
    assert resp.status_code == 400
    assert resp.json["error"] == "invalid"
    assert resp.json["message"]


def test_no_data(client, tokens, tenant) -> None:
    resp = get(client, tokens, tenant, "attr=temperature", device="nope")
    assert (resp.status_code, resp.json["title"]) == (404, "Device not found")
    resp = get(client, tokens, tenant, "attr=humidity")  # dojot answered 404 "Attr not found" (issue #1340)
    assert (resp.status_code, resp.json) == (200, [])
    resp = get(client, tokens, tenant, "attr=temperature&dateFrom=2030-01-01T00:00:00Z")
    assert (resp.status_code, resp.json) == (200, [])
    resp = get(client, tokens, tenant, "attr=temperature,humidity&lastN=1")
    assert resp.status_code == 200
    assert resp.json["humidity"] == []
    assert len(resp.json["temperature"]) == 1


def test_tenants_are_isolated(client, tokens, tenant, writer) -> None:
    other = tenant + "_b"
    resp = get(client, tokens, other, "attr=temperature")
    assert (resp.status_code, resp.json["title"]) == (404, "Device not found")
    writer.write(other, [Point("3bb9", "temperature", -1, T0)])
    assert [e["value"] for e in get(client, tokens, other, "attr=temperature").json] == [-1]
    assert len(get(client, tokens, tenant, "attr=temperature").json) == 5


def test_token_required_and_ready(client) -> None:
    assert client.get("/device/3bb9/history").status_code == 401
    resp = client.get("/health/ready")
    assert resp.status_code == 200
    assert resp.json["checks"] == {"mongo": "ok"}


def test_csv_from_the_store(client, tokens, tenant) -> None:
    headers = {**tokens.headers(tenant), "Accept": "text/csv"}
    resp = client.get("/device/3bb9/history?attr=temperature&lastN=2", headers=headers)
    assert resp.status_code == 200
    assert resp.text.splitlines() == [
        '"attr","value","device_id","ts","metadata.protocol"',
        '"temperature",24,"3bb9","2018-03-22T13:46:25.535000Z","mqtt"',
        '"temperature",23,"3bb9","2018-03-22T13:46:24.535000Z","mqtt"',
    ]
    resp = client.get("/device/3bb9/history?attr=temperature&dateFrom=2030-01-01T00:00:00Z", headers=headers)
    assert (resp.status_code, resp.text) == (200, "")


def test_consistent_shape_from_the_store(client, tokens, tenant) -> None:
    body = get(client, tokens, tenant, "attr=temperature&lastN=1&shape=consistent").json
    assert [e["value"] for e in body["temperature"]] == [24]
    resp = get(client, tokens, tenant, "shape=consistent", device="nope")
    assert (resp.status_code, resp.json["title"]) == (404, "Device not found")
    resp = get(client, tokens, tenant, "attr=humidity&shape=consistent")
    assert (resp.status_code, resp.json) == (200, {"humidity": []})


def test_latest_from_the_store(client, tokens, tenant, writer) -> None:
    writer.write(tenant, [Point("3bb9", "temperature", 99, T0 - 1000)])  # older: not the latest
    resp = client.get("/device/3bb9/latest", headers=tokens.headers(tenant))
    assert resp.status_code == 200
    assert resp.json == {
        "pressure": {"device_id": "3bb9", "ts": "2018-03-22T13:46:23.535000Z", "value": 1002, "attr": "pressure"},
        "temperature": {
            "device_id": "3bb9",
            "ts": "2018-03-22T13:46:25.535000Z",
            "metadata": {"protocol": "mqtt"},
            "value": 24,
            "attr": "temperature",
        },
    }
    other = client.get("/device/3bb9/latest", headers=tokens.headers(tenant + "_b"))
    assert (other.status_code, other.json["title"]) == (404, "Device not found")


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        pytest.param("2018-06-05T19:15:37.452Z", "2018-06-05T19:15:37.452000Z", id="iso"),
        pytest.param("2018-06-05T16:15:37.452-03:00", "2018-06-05T19:15:37.452000Z", id="iso-offset"),
        pytest.param(1528226137452, "2018-06-05T19:15:37.452000Z", id="epoch-ms"),
        pytest.param(1528226137, "2018-06-05T19:15:37.000000Z", id="epoch-s"),
        pytest.param(1528226137.452, "2018-06-05T19:15:37.452000Z", id="epoch-s-fraction"),
    ],
)
def test_device_timestamps_are_served_at_the_instant_sent(client, tokens, writer, unique, sent, expected) -> None:
    from ondas.contracts import DeviceData
    from persister.models import points_from

    message = DeviceData.parse(
        {"metadata": {"deviceid": "ts1", "tenant": unique, "timestamp": sent}, "attrs": {"t": 1}}
    )
    writer.write(unique, points_from(message, unique))
    body = get(client, tokens, unique, "attr=t", device="ts1").json
    assert [e["ts"] for e in body] == [expected]


def test_notifications_from_the_store_newest_first_filtered_and_per_tenant(client, tokens, tenant, writer) -> None:
    notes = [
        Note(
            f"n{i}",
            T0 + 1000 * i,
            "Something went wrong.",
            {"level": i % 3, "shouldPersist": True},
            "user_notification",
        )
        for i in range(12)
    ]
    writer.write_notifications(tenant, notes)
    writer.write_notifications(tenant, notes[:3])  # again: nothing changes

    def ids(query: str = "", who: str = tenant) -> list[str]:
        resp = client.get(f"/notifications/history?{query}", headers=tokens.headers(who))
        assert resp.status_code == 200, resp.json
        return [n["msgID"] for n in resp.json["notifications"]]

    assert ids() == [f"n{i}" for i in range(11, 1, -1)]  # the last 10
    assert ids("limit=3") == ["n11", "n10", "n9"]
    assert ids("dateFrom=2018-03-22T13:46:22.535Z&dateTo=2018-03-22T13:46:25.535Z") == ["n4", "n3", "n2", "n1"]
    assert ids("level=2&limit=2") == ["n11", "n8"]
    assert ids('subject="user_notification"&msgID="n5"') == ["n5"]
    assert ids("level=1", who=tenant + "_b") == []
    first = client.get("/notifications/history?limit=1", headers=tokens.headers(tenant)).json["notifications"][0]
    assert first == {
        "msgID": "n11",
        "metaAttrsFilter": {"level": 2, "shouldPersist": True},
        "message": "Something went wrong.",
        "subject": "user_notification",
        "ts": "2018-03-22T13:46:32.535000Z",
    }
