"""The service's rules and the HTTP layer, with a fake store (our own port) and real signed tokens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from history.app import create_history_app
from history.models import SHAPE_CONSISTENT, AttrNotFound, DeviceNotFound, Entry, HistoryQuery
from history.service import HistoryService
from history.settings import HistorySettings
from ondas.settings import CommonSettings

pytestmark = pytest.mark.unit


class FakeStore:
    def __init__(self, data: dict[str, list[Entry]]) -> None:
        self.data = data  # tenant -> entries
        self.calls: list[dict[str, Any]] = []

    def attrs(self, tenant: str, device_id: str) -> list[str]:
        return sorted({e.attr for e in self.data.get(tenant, []) if e.device_id == device_id})

    def entries(self, tenant: str, device_id: str, attr: str, **kw: Any) -> list[Entry]:
        self.calls.append({"attr": attr, **kw})
        found = [e for e in self.data.get(tenant, []) if e.device_id == device_id and e.attr == attr]
        found.sort(key=lambda e: e.ts_ms, reverse=kw["newest_first"])
        return found[: kw["limit"]]

    def latest(self, tenant: str, device_id: str) -> list[Entry]:
        newest: dict[str, Entry] = {}
        for e in self.data.get(tenant, []):
            if e.device_id == device_id and (e.attr not in newest or e.ts_ms > newest[e.attr].ts_ms):
                newest[e.attr] = e
        return list(newest.values())

    def ping(self) -> bool:
        return True


ENTRIES = [Entry("d1", "temperature", 20 + i, 1_000 * i) for i in range(5)] + [Entry("d1", "pressure", 1013, 500)]


def service() -> HistoryService:
    return HistoryService(FakeStore({"acme": ENTRIES}), max_results=100)


def test_one_attr_is_a_list_newest_first() -> None:
    out = service().history("acme", "d1", HistoryQuery(attrs=("temperature",), last_n=3))
    assert isinstance(out, list)
    assert [e["value"] for e in out] == [24, 23, 22]


def test_several_attrs_is_a_dict_with_empty_lists_for_attrs_without_data() -> None:
    out = service().history("acme", "d1", HistoryQuery(attrs=("temperature", "pressure", "humidity"), last_n=1))
    assert isinstance(out, dict)
    assert list(out) == ["temperature", "pressure", "humidity"]
    assert out["humidity"] == []
    assert out["pressure"][0]["value"] == 1013


def test_no_attr_is_a_dict_of_every_attr() -> None:
    out = service().history("acme", "d1", HistoryQuery())
    assert isinstance(out, dict)
    assert sorted(out) == ["pressure", "temperature"]


def test_unknown_device_and_attr_are_404s() -> None:
    with pytest.raises(DeviceNotFound):
        service().history("acme", "nope", HistoryQuery())
    with pytest.raises(DeviceNotFound):
        service().history("other", "d1", HistoryQuery(attrs=("temperature",)))
    with pytest.raises(AttrNotFound):
        service().history("acme", "d1", HistoryQuery(attrs=("humidity",)))


@pytest.fixture
def client(tokens: Any) -> Iterator[FlaskClient]:
    common = CommonSettings("127.0.0.1:1", "http://127.0.0.1:1", str(tokens.public_file), "INFO", "127.0.0.1")
    settings = HistorySettings(common=common, mongo_url="mongodb://unused/", http_port=0, max_results=100)
    app = create_history_app(settings, store=FakeStore({"acme": ENTRIES}))
    with app.test_client() as c:
        yield c


URL = "/device/d1/history"


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        pytest.param("lastN=abc", "lastN must be an integer", id="lastN-not-int"),
        pytest.param("lastN=0", "lastN must be >= 1", id="lastN-zero"),
        pytest.param("firstN=-2", "firstN must be >= 1", id="firstN-negative"),
        pytest.param("hLimit=x", "hLimit must be an integer", id="hLimit-not-int"),
        pytest.param("lastN=1&firstN=1", "either lastN or firstN", id="both"),
        pytest.param("dateFrom=yesterday", "dateFrom must be an ISO 8601 date", id="bad-dateFrom"),
        pytest.param("dateTo=2018-02-30T00:00:00Z", "dateTo must be an ISO 8601 date", id="bad-dateTo"),
        pytest.param("dateFrom=2018-06-06T00:00:00Z&dateTo=2018-06-05T00:00:00Z", "not be later", id="from-after-to"),
        pytest.param("shape=list", "shape must be one of dojot, consistent", id="bad-shape"),
    ],
)
def test_bad_parameters_are_400(client: FlaskClient, tokens: Any, query: str, fragment: str) -> None:
    resp = client.get(f"{URL}?{query}", headers=tokens.headers("acme"))
    assert resp.status_code == 400
    assert resp.json is not None
    assert resp.json["error"] == "invalid"
    assert fragment in resp.json["message"]


def test_no_token_is_401(client: FlaskClient) -> None:
    assert client.get(URL).status_code == 401


def test_404_bodies_carry_dojots_title(client: FlaskClient, tokens: Any) -> None:
    resp = client.get("/device/nope/history", headers=tokens.headers("acme"))
    assert resp.status_code == 404
    assert resp.json is not None
    assert resp.json["title"] == "Device not found"
    assert resp.json["description"] == "No data for the given device could be found"
    resp = client.get(f"{URL}?attr=humidity", headers=tokens.headers("acme"))
    assert resp.status_code == 404
    assert resp.json is not None
    assert resp.json["title"] == "Attr not found"


def test_ok(client: FlaskClient, tokens: Any) -> None:
    resp = client.get(f"{URL}?attr=temperature&lastN=2", headers=tokens.headers("acme"))
    assert resp.status_code == 200
    assert resp.json == [
        {"device_id": "d1", "ts": "1970-01-01T00:00:04.000000Z", "value": 24, "attr": "temperature"},
        {"device_id": "d1", "ts": "1970-01-01T00:00:03.000000Z", "value": 23, "attr": "temperature"},
    ]


def test_consistent_shape_is_always_an_object_and_never_404() -> None:
    svc = service()
    one = svc.history("acme", "d1", HistoryQuery(attrs=("temperature",), last_n=1, shape=SHAPE_CONSISTENT))
    assert one == {"temperature": [Entry("d1", "temperature", 24, 4_000).to_json()]}
    assert svc.history("acme", "nope", HistoryQuery(shape=SHAPE_CONSISTENT)) == {}
    assert svc.history("acme", "nope", HistoryQuery(attrs=("t",), shape=SHAPE_CONSISTENT)) == {"t": []}
    assert svc.history("acme", "d1", HistoryQuery(attrs=("humidity",), shape=SHAPE_CONSISTENT)) == {"humidity": []}


def test_latest_is_the_newest_value_per_attribute() -> None:
    svc = service()
    latest = svc.latest("acme", "d1")
    assert {a: (e.value, e.ts_ms) for a, e in latest.items()} == {"pressure": (1013, 500), "temperature": (24, 4_000)}
    assert list(svc.latest("acme", "d1", ("temperature", "humidity"))) == ["temperature"]
    with pytest.raises(DeviceNotFound):
        svc.latest("other", "d1")


def test_csv_when_accept_asks_for_it(client: FlaskClient, tokens: Any) -> None:
    headers = {**tokens.headers("acme"), "Accept": "text/csv"}
    resp = client.get(f"{URL}?attr=temperature,pressure&lastN=2", headers=headers)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.text.splitlines() == [
        '"attr","value","device_id","ts"',
        '"temperature",24,"d1","1970-01-01T00:00:04.000000Z"',
        '"temperature",23,"d1","1970-01-01T00:00:03.000000Z"',
        '"pressure",1013,"d1","1970-01-01T00:00:00.500000Z"',
    ]
    # JSON stays the default, also for browsers that accept anything.
    for accept in (None, "*/*", "application/json, text/csv;q=0.5"):
        hdrs = tokens.headers("acme") | ({"Accept": accept} if accept else {})
        assert client.get(f"{URL}?attr=temperature", headers=hdrs).headers["Content-Type"] == "application/json"


def test_latest_route(client: FlaskClient, tokens: Any) -> None:
    resp = client.get("/device/d1/latest", headers=tokens.headers("acme"))
    assert resp.status_code == 200
    assert resp.json == {
        "pressure": {"device_id": "d1", "ts": "1970-01-01T00:00:00.500000Z", "value": 1013, "attr": "pressure"},
        "temperature": {"device_id": "d1", "ts": "1970-01-01T00:00:04.000000Z", "value": 24, "attr": "temperature"},
    }
    assert list(client.get("/device/d1/latest?attr=pressure", headers=tokens.headers("acme")).json) == ["pressure"]
    assert client.get("/device/d1/latest", headers=tokens.headers("other")).status_code == 404
    assert client.get("/device/d1/latest").status_code == 401
