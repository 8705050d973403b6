"""History's answers where Ondas settles what dojot v0.8.1 left open, against the real broker, the real persister
and the real MongoDB-compatible store:

- unknown device against no data (dojot issue #1340): 404 only for a device that does not exist in the tenant,
  empty results otherwise (the persister learns devices from the device manager's events);
- readings against commands (``configure`` events): the ``kind`` filter and the ``kind`` marks;
- the server's cap per attribute: the ``X-Ondas-Truncated`` signal and the ``Link`` to the next page."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin

import pymongo
import pytest
from confluent_kafka import Producer
from flask.testing import FlaskClient

from history.settings import HistorySettings
from ondas.kafka import producer_config
from ondas.tenant import tenant_database_name
from ondas.timestamps import parse_timestamp
from ondas.topics import device_data, device_events
from persister.models import Point
from persister.store_mongo import MongoPointStore, to_datetime
from tests.auth_stub import AuthStub
from tests.integration.history.helpers import PREFIX, make_client
from tests.integration.persister.test_persister import Running, start_persister
from tests.waiting import poll

pytestmark = pytest.mark.integration

T0 = parse_timestamp("2018-03-22T13:46:21.535Z")
CSV = {"Accept": "text/csv"}


@pytest.fixture(scope="module")
def tenant() -> str:
    return "fid" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def persister(kafka_bootstrap: str, mongo_url: str, tenant: str) -> Iterator[Running]:
    auth = AuthStub([tenant])
    run = start_persister(kafka_bootstrap, mongo_url, auth.url, f"persister-{tenant}")
    try:
        yield run
    finally:
        run.stop()
        auth.close()


@pytest.fixture(scope="module")
def produce(kafka_bootstrap: str, persister: Running) -> Iterator[Callable[[str, dict[str, Any], str], None]]:
    p = Producer(producer_config(kafka_bootstrap))

    def send(topic: str, value: dict[str, Any], key: str) -> None:
        p.produce(topic, json.dumps(value).encode(), key=key)
        assert p.flush(15) == 0

    yield send
    p.flush(5)


@pytest.fixture
def client(mongo_url: str, tokens: Any) -> Iterator[FlaskClient]:
    with make_client(mongo_url, tokens, 10_000) as c:
        yield c


@pytest.fixture
def small(mongo_url: str, tokens: Any) -> Iterator[FlaskClient]:
    """History with a cap of 5 entries per attribute (``HISTORY_MAX_RESULTS=5``)."""
    with make_client(mongo_url, tokens, 5) as c:
        yield c


def created(tenant: str, device_id: str) -> dict[str, Any]:
    """A device-manager ``create`` event, as docs/kafka-contract.md shows it."""
    attr = {
        "template_id": "1",
        "created": "2018-01-05T15:41:54.840116+00:00",
        "label": "temperature",
        "value_type": "float",
        "type": "dynamic",
        "id": 1,
    }
    fan = {**attr, "label": "fan", "value_type": "integer", "type": "actuator", "id": 2}
    return {
        "event": "create",
        "meta": {"service": tenant},
        "data": {
            "id": device_id,
            "label": "Thermometer",
            "templates": [1],
            "attrs": {"1": [attr, fan]},
            "disabled": False,
            "created": "2018-02-06T10:43:40.890330+00:00",
        },
    }


def reading(tenant: str, device_id: str, attrs: dict[str, Any], ts: int) -> dict[str, Any]:
    return {"metadata": {"deviceid": device_id, "tenant": tenant, "timestamp": ts}, "attrs": attrs}


def new_device() -> str:
    return uuid.uuid4().hex[:6]


class Api:
    def __init__(self, client: FlaskClient, tokens: Any, tenant: str) -> None:
        self.client, self.tokens, self.tenant = client, tokens, tenant

    def get(self, url: str, tenant: str | None = None, **headers: str) -> Any:
        return self.client.get(url, headers={**self.tokens.headers(tenant or self.tenant), **headers})

    def history(self, device_id: str, query: str = "", tenant: str | None = None, **headers: str) -> Any:
        return self.get(f"/device/{device_id}/history?{query}", tenant, **headers)


@pytest.fixture
def api(client: FlaskClient, tokens: Any, tenant: str) -> Api:
    return Api(client, tokens, tenant)


@pytest.fixture(scope="module")
def fan(produce: Callable[..., None], tenant: str, mongo_url: str, tokens: Any) -> str:
    """A device that reported fan=10 and temperature=20 at T0, then was sent fan=100 (a configure event) at
    T0+1s, all through the real persister."""
    device_id = new_device()
    produce(device_events(tenant), created(tenant, device_id), device_id)
    produce(device_data(tenant), reading(tenant, device_id, {"fan": 10, "temperature": 20}, T0), device_id)
    configure = {
        "event": "configure",
        "meta": {"service": tenant, "timestamp": T0 + 1000},
        "data": {"id": device_id, "attrs": {"fan": 100}},
    }
    produce(device_events(tenant), configure, device_id)
    with make_client(mongo_url, tokens, 10_000) as client:
        api = Api(client, tokens, tenant)
        poll(lambda: api.history(device_id, "attr=fan"), lambda r: r.status_code == 200 and len(r.json) == 2)
    return device_id


def test_an_existing_device_without_data_is_empty(api: Api, produce: Callable[..., None], tenant: str) -> None:
    device_id = new_device()
    assert api.history(device_id, "lastN=1&attr=temperature").status_code == 404  # not created yet
    produce(device_events(tenant), created(tenant, device_id), device_id)
    resp = poll(lambda: api.history(device_id, "lastN=1&attr=temperature"), lambda r: r.status_code != 404)
    assert (resp.status_code, resp.json) == (200, [])
    expected = {
        "lastN=1&attr=temperature": [],
        "attr=temperature,fan": {"temperature": [], "fan": []},
        "attr=temperature&attr=fan&lastN=3": {"temperature": [], "fan": []},
        "": {},
        "shape=consistent&attr=temperature": {"temperature": []},
        "shape=consistent&attr=temperature,fan": {"temperature": [], "fan": []},
        "shape=consistent": {},
        "kind=command&attr=fan": [],
    }
    for query, body in expected.items():
        resp = api.history(device_id, query)
        assert (resp.status_code, resp.json, resp.headers.get("X-Ondas-Truncated")) == (200, body, None), query
    for query in ("attr=temperature", "attr=temperature,fan", "", "shape=consistent"):
        resp = api.history(device_id, query, **CSV)
        assert (resp.status_code, resp.content_type, resp.text) == (200, "text/csv; charset=utf-8", ""), query
    resp = api.get(f"/device/{device_id}/latest")
    assert (resp.status_code, resp.json) == (200, {})


def test_an_unknown_device_is_404_in_every_shape(api: Api, fan: str, tenant: str) -> None:
    for device_id, who in (("nope", tenant), (fan, tenant + "_other")):  # never created; created elsewhere
        for query in ("attr=temperature", "attr=temperature,fan", "", "shape=consistent", "kind=reading"):
            for headers in ({}, CSV):
                resp = api.history(device_id, query, who, **headers)
                assert resp.status_code == 404, (device_id, query, headers)
                assert resp.json["title"] == "Device not found"
                assert resp.json["details"] == {"device_id": device_id}
        resp = api.get(f"/device/{device_id}/latest", who)
        assert (resp.status_code, resp.json["title"]) == (404, "Device not found")


def test_unknown_attributes_of_an_existing_device_are_empty(api: Api, fan: str) -> None:
    assert api.history(fan, "attr=humidity").json == []
    assert api.history(fan, "lastN=1&attr=humidity").json == []
    assert api.history(fan, "attr=humidity,wind").json == {"humidity": [], "wind": []}
    assert api.history(fan, "attr=humidity,wind&shape=consistent").json == {"humidity": [], "wind": []}
    assert api.history(fan, "attr=humidity&shape=consistent").json == {"humidity": []}
    mixed = api.history(fan, "attr=humidity,temperature&lastN=1").json
    assert (mixed["humidity"], [e["value"] for e in mixed["temperature"]]) == ([], [20])
    resp = api.history(fan, "attr=humidity", **CSV)
    assert (resp.status_code, resp.text) == (200, "")


def test_an_empty_window_is_empty(api: Api, fan: str) -> None:
    after = "dateFrom=2030-01-01T00:00:00Z"
    before = "dateTo=2000-01-01T00:00:00Z"
    for window in (after, before):
        assert api.history(fan, f"attr=temperature&{window}").json == []
        assert api.history(fan, f"attr=temperature,fan&{window}").json == {"temperature": [], "fan": []}
        assert api.history(fan, f"{window}").json == {"fan": [], "temperature": []}
        assert api.history(fan, f"attr=temperature&shape=consistent&{window}").json == {"temperature": []}
        resp = api.history(fan, f"attr=temperature&{window}", **CSV)
        assert (resp.status_code, resp.text) == (200, "")


def test_readings_and_commands(api: Api, fan: str, tenant: str, mongo_url: str) -> None:
    # dojot's default: the command is history of the actuator attribute, marked only by its metadata.
    assert api.history(fan, "lastN=1&attr=fan").json == [
        {
            "device_id": fan,
            "ts": "2018-03-22T13:46:22.535000Z",
            "metadata": {"event": "configure"},
            "value": 100,
            "attr": "fan",
        }
    ]
    # What the device reported, not what it was told.
    assert [(e["value"], e["ts"]) for e in api.history(fan, "lastN=1&attr=fan&kind=reading").json] == [
        (10, "2018-03-22T13:46:21.535000Z")
    ]
    assert [e["value"] for e in api.history(fan, "attr=fan&kind=command").json] == [100]
    assert [e["value"] for e in api.history(fan, "attr=fan&kind=all").json] == [100, 10]
    assert api.history(fan, "kind=command").json == {"fan": api.history(fan, "attr=fan&kind=command").json}
    assert sorted(api.history(fan, "kind=reading").json) == ["fan", "temperature"]
    # The consistent shape marks every entry.
    body = api.history(fan, "attr=fan,temperature&shape=consistent").json
    assert [(e["value"], e["kind"]) for e in body["fan"]] == [(100, "command"), (10, "reading")]
    assert [(e["value"], e["kind"]) for e in body["temperature"]] == [(20, "reading")]
    csv_rows = api.history(fan, "attr=fan&shape=consistent", **CSV).text.splitlines()
    assert csv_rows[0] == '"attr","value","device_id","ts","kind","metadata.event"'
    assert [row.split(",")[4] for row in csv_rows[1:]] == ['"command"', '"reading"']
    assert api.get(f"/device/{fan}/latest").json["fan"]["value"] == 10
    resp = api.history(fan, "kind=actuation")
    assert (resp.status_code, resp.json["error"]) == (400, "invalid")

    # The persister's points say their kind; points stored before it did are told apart by metadata.event.
    with pymongo.MongoClient(mongo_url, tz_aware=True) as mongo:
        db = mongo[tenant_database_name(PREFIX, tenant)]
        assert sorted(d["kind"] for d in db["points"].find({"device_id": fan, "attr": "fan"})) == [
            "command",
            "reading",
        ]
        old = new_device()
        reported = {"device_id": old, "attr": "fan", "value": 1, "ts": to_datetime(T0), "metadata": {}}
        sent = {"device_id": old, "attr": "fan", "value": 2, "ts": to_datetime(T0 + 1000)}
        legacy = [{"_id": old + "r", **reported}, {"_id": old + "c", **sent, "metadata": {"event": "configure"}}]
        db["points"].insert_many(legacy)
        db["latest"].insert_one({**legacy[0], "_id": json.dumps([old, "fan"])})
    assert [e["value"] for e in api.history(old, "attr=fan&kind=reading").json] == [1]
    assert [e["value"] for e in api.history(old, "attr=fan&kind=command").json] == [2]
    marks = api.history(old, "attr=fan&shape=consistent").json["fan"]
    assert [(e["value"], e["kind"]) for e in marks] == [(2, "command"), (1, "reading")]


NEXT = re.compile(r'<([^>]*)>; rel="next"')


def follow(api: Api, url: str, **headers: str) -> list[Any]:
    """Every page from ``url`` on, following ``Link: <...>; rel="next"`` (resolved against the request URL)."""
    pages = []
    for _ in range(50):
        resp = api.get(url, **headers)
        assert resp.status_code == 200, resp.text
        pages.append(resp)
        link = resp.headers.get("Link")
        if link is None:
            assert "X-Ondas-Truncated" not in resp.headers
            return pages
        assert resp.headers["X-Ondas-Truncated"] == "true"
        match = NEXT.fullmatch(link)
        assert match, link
        url = urljoin(url, match.group(1))
    raise AssertionError("the links never end")


def test_the_cap_is_signalled_and_the_next_links_return_the_rest(
    mongo_url: str, tokens: Any, tenant: str, small: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = Api(small, tokens, tenant)
    device_id = new_device()
    # 12 values of t at 6 instants (two at each) and 3 of h: the cap is 5 per attribute.
    points = [Point(device_id, "t", i, T0 + (i // 2) * 1000) for i in range(12)]
    points += [Point(device_id, "h", 100 + i, T0 + i * 2000) for i in range(3)]
    points += [Point(device_id + "x", "t", i, T0 + i) for i in range(5)]  # exactly the cap
    store = MongoPointStore(mongo_url, PREFIX)
    try:
        store.write(tenant, points)
    finally:
        store.close()

    # At the cap: everything, no signal. Above it: the signal, and a page that stops between instants.
    at_cap = api.history(device_id + "x", "attr=t")
    assert (len(at_cap.json), "X-Ondas-Truncated" in at_cap.headers, "Link" in at_cap.headers) == (5, False, False)
    first = api.history(device_id, "attr=t")
    assert first.headers["X-Ondas-Truncated"] == "true"
    # Newest first (the two values of an instant in store order); 7 and 6 share the next instant.
    assert sorted(e["value"] for e in first.json) == [8, 9, 10, 11]
    assert first.headers["Link"] == f'<?attr=t&dateTo={T0 + 3000}>; rel="next"'
    # The client's own count is not the server's cut.
    assert "X-Ondas-Truncated" not in api.history(device_id, "attr=t&lastN=5").headers

    def values(pages: list[Any], attr: str | None = None) -> list[int]:
        return [e["value"] for p in pages for e in (p.json if attr is None else p.json[attr])]

    newest = values(follow(api, f"/device/{device_id}/history?attr=t"))
    assert sorted(newest) == list(range(12)) and len(newest) == 12  # all of them, once
    assert newest == sorted(newest, key=lambda v: -(v // 2))  # newest instant first
    oldest = follow(api, f"/device/{device_id}/history?attr=t&firstN=100")
    assert values(oldest) == sorted(values(oldest), key=lambda v: v // 2)
    assert sorted(values(oldest)) == list(range(12))
    assert len(values(follow(api, f"/device/{device_id}/history?attr=t&lastN=9"))) == 9
    window = f"dateFrom={T0 + 1000}&dateTo={T0 + 4000}"
    assert sorted(values(follow(api, f"/device/{device_id}/history?attr=t&{window}"))) == list(range(2, 10))
    # Several attributes stop at one instant; following the links completes each.
    both = follow(api, f"/device/{device_id}/history?shape=consistent")
    assert sorted(values(both, "t")) == list(range(12)) and len(values(both, "t")) == 12
    assert sorted(values(both, "h")) == [100, 101, 102]
    # The same links over CSV.
    rows = [line for p in follow(api, f"/device/{device_id}/history?attr=t", **CSV) for line in p.text.splitlines()]
    assert len([r for r in rows if not r.startswith('"attr"')]) == 12

    # The cap is HISTORY_MAX_RESULTS, 10,000 unless set.
    monkeypatch.delenv("HISTORY_MAX_RESULTS", raising=False)
    assert HistorySettings.from_env().max_results == 10_000
    monkeypatch.setenv("HISTORY_MAX_RESULTS", "5")
    assert HistorySettings.from_env().max_results == 5


def test_a_removed_device_is_unknown_unless_its_data_is_kept(
    api: Api, produce: Callable[..., None], tenant: str, mongo_url: str
) -> None:
    empty, with_data = new_device(), new_device()
    for device_id in (empty, with_data):
        produce(device_events(tenant), created(tenant, device_id), device_id)
    produce(device_data(tenant), reading(tenant, with_data, {"temperature": 1.5}, T0), with_data)
    poll(lambda: api.history(with_data, "attr=temperature"), lambda r: r.status_code == 200 and r.json)
    poll(lambda: api.history(empty, "attr=temperature"), lambda r: r.status_code == 200)
    for device_id in (with_data, empty):
        removed = {"event": "remove", "meta": {"service": tenant}, "data": {"id": device_id}}
        produce(device_events(tenant), removed, device_id)
    resp = poll(lambda: api.history(empty, "attr=temperature"), lambda r: r.status_code == 404)
    assert resp.json["title"] == "Device not found"
    with pymongo.MongoClient(mongo_url) as mongo:
        devices = mongo[tenant_database_name(PREFIX, tenant)]["devices"]
        poll(lambda: devices.count_documents({"_id": with_data}), lambda n: n == 0)  # forgotten
    # PERSISTER_ON_DEVICE_REMOVE=keep (the default): the kept data stays readable.
    assert [e["value"] for e in api.history(with_data, "attr=temperature").json] == [1.5]
