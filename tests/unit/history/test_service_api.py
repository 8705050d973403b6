"""The service's rules and the HTTP layer, with a fake store (our own port) and real signed tokens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from history.api import filter_value
from history.app import create_history_app
from history.models import (
    KIND_COMMAND,
    KIND_READING,
    SHAPE_CONSISTENT,
    Cursor,
    DeviceNotFound,
    Entry,
    HistoryQuery,
    NotificationEntry,
    NotificationQuery,
)
from history.service import HistoryService
from history.settings import HistorySettings
from ondas.settings import CommonSettings

pytestmark = pytest.mark.unit


class FakeStore:
    def __init__(
        self,
        data: dict[str, list[Entry]],
        devices: dict[str, set[str]] | None = None,
        notes: dict[str, list[NotificationEntry]] | None = None,
    ) -> None:
        self.data = data  # tenant -> entries
        self.devices = devices or {}  # tenant -> devices recorded from device-manager events
        self.notes = notes or {}  # tenant -> notifications
        self.calls: list[dict[str, Any]] = []

    def notifications(self, tenant: str, **kw: Any) -> list[NotificationEntry]:
        self.calls.append({"notifications": tenant, **kw})
        lo, hi = kw["date_from_ms"], kw["date_to_ms"]
        found = [
            n for n in self.notes.get(tenant, []) if (lo is None or n.ts_ms >= lo) and (hi is None or n.ts_ms <= hi)
        ]
        fields = {"msgID": "msg_id", "message": "message", "subject": "subject"}
        for name, value in kw["filters"]:
            found = [n for n in found if (getattr(n, fields[name]) if name in fields else n.meta.get(name)) == value]
        return sorted(found, key=lambda n: n.ts_ms, reverse=True)[: kw["limit"]]

    def device_exists(self, tenant: str, device_id: str) -> bool:
        recorded = device_id in self.devices.get(tenant, set())
        return recorded or any(e.device_id == device_id for e in self.data.get(tenant, []))

    def attrs(self, tenant: str, device_id: str, kind: str | None = None) -> list[str]:
        mine = [e for e in self.data.get(tenant, []) if e.device_id == device_id]
        return sorted({e.attr for e in mine if kind is None or e.kind == kind})

    def entries(self, tenant: str, device_id: str, attr: str, **kw: Any) -> list[Entry]:
        self.calls.append({"attr": attr, **kw})
        found = [e for e in self.data.get(tenant, []) if e.device_id == device_id and e.attr == attr]
        found = [e for e in found if kw.get("kind") is None or e.kind == kw["kind"]]
        lo, hi = kw["date_from_ms"], kw["date_to_ms"]
        found = [e for e in found if (lo is None or e.ts_ms >= lo) and (hi is None or e.ts_ms <= hi)]
        found.sort(key=lambda e: e.ts_ms, reverse=kw["newest_first"])
        return found[: kw["limit"]] if kw["limit"] else found

    def latest(self, tenant: str, device_id: str) -> list[Entry]:
        newest: dict[str, Entry] = {}
        for e in self.data.get(tenant, []):
            if e.kind != KIND_READING or e.device_id != device_id:
                continue
            if e.attr not in newest or e.ts_ms > newest[e.attr].ts_ms:
                newest[e.attr] = e
        return list(newest.values())

    def ping(self) -> bool:
        return True


ENTRIES = [Entry("d1", "temperature", 20 + i, 1_000 * i) for i in range(5)] + [Entry("d1", "pressure", 1013, 500)]


def service(max_results: int = 100, data: list[Entry] = ENTRIES) -> HistoryService:
    return HistoryService(FakeStore({"acme": data}, {"acme": {"empty"}}), max_results=max_results)


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


def test_only_an_unknown_device_is_a_404() -> None:
    for shape in ("dojot", SHAPE_CONSISTENT):
        with pytest.raises(DeviceNotFound):
            service().history("acme", "nope", HistoryQuery(shape=shape))
        with pytest.raises(DeviceNotFound):
            service().history("other", "d1", HistoryQuery(attrs=("temperature",), shape=shape))
    svc = service()
    assert svc.history("acme", "d1", HistoryQuery(attrs=("humidity",))) == []
    assert svc.history("acme", "d1", HistoryQuery(attrs=("humidity", "wind"))) == {"humidity": [], "wind": []}
    # A device the persister recorded (a device-manager create event) and without any data yet.
    assert svc.history("acme", "empty", HistoryQuery()) == {}
    assert svc.history("acme", "empty", HistoryQuery(attrs=("t",))) == []
    assert svc.history("acme", "empty", HistoryQuery(attrs=("t", "h"))) == {"t": [], "h": []}
    assert svc.history("acme", "empty", HistoryQuery(attrs=("t",), shape=SHAPE_CONSISTENT)) == {"t": []}
    assert svc.latest("acme", "empty") == {}


NOTES = [
    NotificationEntry(
        f"n{i}", 1_000 * i, "Something went wrong.", {"level": i % 3, "shouldPersist": True}, "user_notification"
    )
    for i in range(15)
]


def test_notifications_default_to_the_last_ten_and_a_window_gives_all_of_it() -> None:
    store = FakeStore({}, notes={"acme": NOTES})
    svc = HistoryService(store, max_results=12)
    assert [n.msg_id for n in svc.notifications("acme", NotificationQuery())] == [f"n{i}" for i in range(14, 4, -1)]
    assert len(svc.notifications("acme", NotificationQuery(limit=3))) == 3
    assert len(svc.notifications("acme", NotificationQuery(date_from_ms=0))) == 12  # the cap
    assert len(svc.notifications("acme", NotificationQuery(date_from_ms=2_000, date_to_ms=4_000))) == 3
    assert len(svc.notifications("acme", NotificationQuery(limit=500))) == 12
    assert svc.notifications("other", NotificationQuery()) == []
    assert NOTES[0].to_json() == {
        "msgID": "n0",
        "metaAttrsFilter": {"level": 0, "shouldPersist": True},
        "message": "Something went wrong.",
        "subject": "user_notification",
        "ts": "1970-01-01T00:00:00.000000Z",
    }


@pytest.mark.parametrize(
    ("raw", "value"),
    [('"user_notification"', "user_notification"), ("3", 3), ("2.5", 2.5), ("true", True), ("plain", "plain"),
     ('"3"', "3"), ("nan", "nan"), ('"', '"')],
)  # fmt: skip
def test_filter_values_are_typed_as_dojot_documents(raw: str, value: Any) -> None:
    assert filter_value(raw) == value and type(filter_value(raw)) is type(value)


@pytest.fixture
def client(tokens: Any) -> Iterator[FlaskClient]:
    common = CommonSettings("127.0.0.1:1", "http://127.0.0.1:1", str(tokens.public_file), "INFO", "127.0.0.1")
    settings = HistorySettings(common=common, mongo_url="mongodb://unused/", http_port=0, max_results=100)
    app = create_history_app(settings, store=FakeStore({"acme": ENTRIES}, notes={"acme": NOTES}))
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
    assert resp.json["description"] == "No device with the given id exists in this tenant"
    resp = client.get(f"{URL}?attr=humidity", headers=tokens.headers("acme"))
    assert (resp.status_code, resp.json) == (200, [])


def test_ok(client: FlaskClient, tokens: Any) -> None:
    resp = client.get(f"{URL}?attr=temperature&lastN=2", headers=tokens.headers("acme"))
    assert resp.status_code == 200
    assert resp.json == [
        {"device_id": "d1", "ts": "1970-01-01T00:00:04.000000Z", "value": 24, "attr": "temperature"},
        {"device_id": "d1", "ts": "1970-01-01T00:00:03.000000Z", "value": 23, "attr": "temperature"},
    ]


def test_consistent_shape_is_always_an_object_with_kinds() -> None:
    svc = service()
    one = svc.history("acme", "d1", HistoryQuery(attrs=("temperature",), last_n=1, shape=SHAPE_CONSISTENT))
    assert one == {"temperature": [{**Entry("d1", "temperature", 24, 4_000).to_json(), "kind": "reading"}]}
    assert svc.history("acme", "d1", HistoryQuery(attrs=("humidity",), shape=SHAPE_CONSISTENT)) == {"humidity": []}


FAN = [
    Entry("d1", "fan", 10, 1_000),
    Entry("d1", "fan", 100, 2_000, {"event": "configure"}, KIND_COMMAND),
    Entry("d1", "fan", 20, 3_000),
    Entry("d1", "fan", 0, 4_000, {"event": "configure"}, KIND_COMMAND),
]


def test_kind_filters_readings_or_commands() -> None:
    svc = service(data=FAN)
    last = HistoryQuery(attrs=("fan",), last_n=1)
    assert [e["value"] for e in svc.history("acme", "d1", last)] == [0]
    reported = HistoryQuery(attrs=("fan",), last_n=1, kind="reading")
    assert [e["value"] for e in svc.history("acme", "d1", reported)] == [20]
    commands = svc.history("acme", "d1", HistoryQuery(attrs=("fan",), kind="command", shape=SHAPE_CONSISTENT))
    assert commands == {
        "fan": [
            {"device_id": "d1", "ts": "1970-01-01T00:00:04.000000Z", "metadata": {"event": "configure"},
             "value": 0, "attr": "fan", "kind": "command"},
            {"device_id": "d1", "ts": "1970-01-01T00:00:02.000000Z", "metadata": {"event": "configure"},
             "value": 100, "attr": "fan", "kind": "command"},
        ]
    }  # fmt: skip


def _paged(svc: HistoryService, query: HistoryQuery, attr: str = "t") -> list[int]:
    """Follow the cursors the way a client follows the Link header; the values in the order served."""
    seen: list[int] = []
    for _ in range(100):
        page = svc.page("acme", "d", query)
        seen += [e.value for e in page.entries.get(attr, [])]
        if page.next is None:
            assert not page.truncated
            return seen
        assert page.truncated
        cur = page.next
        counts = {k: (None if v is None else v - cur.delivered) for k, v in
                  {"last_n": query.last_n, "first_n": query.first_n, "h_limit": query.h_limit}.items()}  # fmt: skip
        date = {"date_to_ms": cur.ms} if cur.param == "dateTo" else {"date_from_ms": cur.ms}
        query = HistoryQuery(**{**query.__dict__, **counts, **date})
    raise AssertionError("no end")


def test_paging_never_splits_an_instant_and_loses_nothing() -> None:
    # 3 entries at each of 10 instants: pages of at most 4 end between instants.
    data = [Entry("d", "t", 10 * ts + i, ts) for ts in range(10) for i in range(3)]
    svc = service(max_results=4, data=data)
    first = svc.page("acme", "d", HistoryQuery(attrs=("t",)))
    assert (first.truncated, first.next) == (True, Cursor("dateTo", 8))
    assert [e.value for e in first.entries["t"]] == [90, 91, 92]
    served = _paged(svc, HistoryQuery(attrs=("t",)))
    assert sorted(served) == sorted(e.value for e in data)
    assert len(served) == len(set(served))
    oldest = _paged(svc, HistoryQuery(attrs=("t",), first_n=1000))
    assert oldest == sorted(oldest, key=lambda v: v // 10)
    assert sorted(oldest) == sorted(e.value for e in data)
    assert len(_paged(svc, HistoryQuery(attrs=("t",), last_n=17))) == 17


def test_paging_takes_an_instant_whole_when_it_holds_more_than_the_cap() -> None:
    data = [Entry("d", "t", i, 5) for i in range(7)] + [Entry("d", "t", 100, 4)]
    svc = service(max_results=3, data=data)
    page = svc.page("acme", "d", HistoryQuery(attrs=("t",)))
    assert sorted(e.value for e in page.entries["t"]) == list(range(7))
    assert page.next == Cursor("dateTo", 4)
    assert sorted(_paged(svc, HistoryQuery(attrs=("t",)))) == [*range(7), 100]
    # The window ends at that instant: the whole of it and nothing left.
    page = svc.page("acme", "d", HistoryQuery(attrs=("t",), date_from_ms=5))
    assert (len(page.entries["t"]), page.truncated, page.next) == (7, False, None)


def test_several_attributes_stop_at_one_instant() -> None:
    data = [Entry("d", "t", ts, ts) for ts in range(10)] + [Entry("d", "h", -ts, ts) for ts in range(0, 10, 2)]
    svc = service(max_results=3, data=data)
    page = svc.page("acme", "d", HistoryQuery())
    assert page.next == Cursor("dateTo", 6)
    assert {a: [e.ts_ms for e in es] for a, es in page.entries.items()} == {"h": [8], "t": [9, 8, 7]}
    assert sorted(_paged(svc, HistoryQuery(), "h")) == sorted(-ts for ts in range(0, 10, 2))
    # A count above the cap over several attributes: cut, but no single next page can continue it exactly.
    counted = svc.page("acme", "d", HistoryQuery(last_n=50))
    assert (counted.truncated, counted.next, len(counted.entries["t"])) == (True, None, 3)


def test_no_signal_when_the_client_count_is_what_bounds() -> None:
    data = [Entry("d", "t", ts, ts) for ts in range(10)]
    svc = service(max_results=3, data=data)
    for query in (HistoryQuery(attrs=("t",), last_n=3), HistoryQuery(attrs=("t",), h_limit=2)):
        page = svc.page("acme", "d", query)
        assert (page.truncated, page.next) == (False, None)
    assert svc.page("acme", "d", HistoryQuery(attrs=("t",), date_from_ms=7)).truncated is False


def test_latest_is_the_newest_value_per_attribute() -> None:
    svc = service()
    latest = svc.latest("acme", "d1")
    assert {a: (e.value, e.ts_ms) for a, e in latest.items()} == {"pressure": (1013, 500), "temperature": (24, 4_000)}
    assert list(svc.latest("acme", "d1", ("temperature", "humidity"))) == ["temperature"]
    with pytest.raises(DeviceNotFound):
        svc.latest("other", "d1")
    assert service(data=FAN).latest("acme", "d1")["fan"].value == 20  # the reading, not the command


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


def test_notifications_route_filters_and_refuses_bad_queries(client: FlaskClient, tokens: Any) -> None:
    h = tokens.headers("acme")
    r = client.get("/notifications/history?limit=2", headers=h)
    assert r.status_code == 200
    assert [n["msgID"] for n in r.get_json()["notifications"]] == ["n14", "n13"]
    r = client.get(
        '/notifications/history?level=2&subject="user_notification"&dateFrom=1970-01-01T00:00:05Z', headers=h
    )
    assert [n["msgID"] for n in r.get_json()["notifications"]] == ["n14", "n11", "n8", "n5"]
    assert client.get("/notifications/history", headers=tokens.headers("other")).get_json() == {"notifications": []}
    for query, fragment in [
        ("limit=0", "limit must be >= 1"),
        ("dateFrom=soon", "dateFrom must be an ISO 8601 date"),
        ("dateFrom=1970-01-02T00:00:00Z&dateTo=1970-01-01T00:00:00Z", "dateFrom must not be later"),
        ("%24where=1", "a filter names a field"),
        ("a.b=1", "a filter names a field"),
    ]:
        r = client.get(f"/notifications/history?{query}", headers=h)
        assert r.status_code == 400 and fragment in r.get_json()["message"], (query, r.get_json())
    assert client.get("/notifications/history").status_code == 401
