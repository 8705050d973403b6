"""``POST /import`` replaces a tenant's whole configuration, so it refuses any document it does not fully
understand (listing every problem, changing nothing), keeps what it replaced (``GET /import/previous``,
``POST /import/undo``) and can tell what it would change without changing it (``?dry_run=true``)."""

from __future__ import annotations

import copy
import json
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from device_manager.settings import Settings
from ondas import topics
from tests.integration.device_manager.helpers import Api, RelayRunner, attr, consume, outbox_count

pytestmark = pytest.mark.integration


def _configure(api: Api) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    sensor = api.template(
        "sensor",
        attr("temperature", metadata=[{"label": "unit", "type": "meta", "value_type": "string", "static_value": "C"}]),
        attr("serial", "static", "string", static_value="none"),
    )
    switch = api.template("switch", attr("led", "actuator", "bool"), attr("protocol", "meta", "string"))
    a = api.device("a", [sensor["id"]], attrs={str(sensor["id"]): [{"label": "serial", "static_value": "sn-a"}]})
    b = api.device("b", [sensor["id"], switch["id"]], id="0b0b", disabled=True)
    # Something changed after creation, so the export carries "updated" fields too.
    api.put(f"/device/{a}", {"label": "a2", "templates": [sensor["id"]]})
    api.put(
        f"/template/{switch['id']}",
        {"label": "switch2", "attrs": [attr("led", "actuator", "bool"), attr("protocol", "meta", "string")]},
    )
    return sensor, switch, [a, b]


def _raw(api: Api, body: bytes, path: str = "/import") -> Any:
    resp = api.client.open(path, method="POST", data=body, headers=api.headers, content_type="application/json")
    return resp.status_code, resp.get_json()


def _refused(err: dict[str, Any], *fragments: str) -> list[str]:
    assert err["error"] == "invalid" and err["status"] == 400, err
    assert err["message"] == "the import document is not valid; nothing was changed", err
    problems: list[str] = err["details"]["problems"]
    assert problems, err
    for fragment in fragments:
        assert any(fragment in p for p in problems), (fragment, problems)
    return problems


def test_documents_that_are_not_a_configuration_are_refused(api: Api, settings: Settings) -> None:
    sensor, _, _ = _configure(api)
    exported = api.get("/export")
    before = outbox_count(settings.db_url)
    deep = copy.deepcopy(exported)
    deep["templates"][0]["attrs"][0]["type"] = "bogus"
    deep["devices"][0]["label"] = ""
    extra_attr = copy.deepcopy(exported)
    extra_attr["templates"][1]["attrs"][0]["colour"] = "red"
    extra_meta = copy.deepcopy(exported)
    extra_meta["templates"][0]["attrs"][0]["metadata"][0]["x"] = 1
    extra_device = copy.deepcopy(exported)
    extra_device["devices"][1]["owner"] = "bob"
    extra_override = copy.deepcopy(exported)
    extra_override["devices"][0]["attrs"][str(sensor["id"])][0]["note"] = "?"
    bad_time = copy.deepcopy(exported)
    bad_time["devices"][0]["created"] = "yesterday"
    cases: list[tuple[Any, list[str]]] = [
        ({"label": "x", "attrs": []}, ["templates: required", "devices: required", "'attrs', 'label'"]),
        ({}, ["templates: required", "devices: required"]),
        ({"templates": exported["templates"]}, ["devices: required"]),
        ({"devices": []}, ["templates: required"]),
        ({"templates": {}, "devices": None}, ["templates: must be a list", "devices: must be a list"]),
        ({**exported, "extra": 1}, ["unknown top-level key(s) 'extra'"]),
        ({**exported, "cronJobs": [{"id": 1}]}, ["cronJobs cannot be imported"]),
        (deep, ["templates[0].attrs[0].type must be one of", "devices[0]: label is required"]),
        (extra_attr, ["templates[1].attrs[0]: unknown key(s) 'colour'"]),
        (extra_meta, ["templates[0].attrs[0].metadata[0]: unknown key(s) 'x'"]),
        (extra_device, ["devices[1]: unknown key(s) 'owner'"]),
        (extra_override, ["unknown key(s) 'note'"]),
        (bad_time, ["devices[0].created: must be an ISO 8601 timestamp"]),
        ([exported], ["must be a JSON object"]),
    ]
    for body, fragments in cases:
        _refused(api.post("/import", body, status=400), *fragments)
        _refused(api.post("/import?dry_run=true", body, status=400), *fragments)

    text = json.dumps(exported).encode()
    raw_cases: list[tuple[bytes, str]] = [
        (b"\xef\xbb\xbf" + text, "byte-order mark"),
        (text[: len(text) // 2], "not valid JSON"),
        (text[:-1], "truncated"),
        (b"", "needs a JSON body"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"templates": [], "devices": [], "x": NaN}', ""),
    ]
    for body, fragment in raw_cases:
        status, err = _raw(api, body)
        assert status == 400, (body[:20], err)
        _refused(err, fragment)

    # Every problem of one document is listed, not just the first.
    many = {"templates": [{"id": i, "label": "", "attrs": []} for i in range(1, 4)], "devices": [], "x": 1}
    problems = _refused(api.post("/import", many, status=400))
    assert len(problems) == 4, problems

    assert api.get("/export") == exported
    assert outbox_count(settings.db_url) == before
    api.get("/import/previous", status=404)


def test_an_export_always_reimports_unchanged(api: Api) -> None:
    _configure(api)
    exported = api.get("/export")
    assert any("updated" in t for t in exported["templates"])
    assert any("updated" in d for d in exported["devices"])
    assert any(d["disabled"] for d in exported["devices"])
    api.post("/import", exported)
    assert api.get("/export") == exported
    # And once more: the import's own export re-imports too.
    again = api.get("/export")
    api.post("/import", again)
    assert api.get("/export") == exported


def test_a_valid_import_can_be_undone(api: Api, relay: RelayRunner, unique: str, kafka_bootstrap: str) -> None:
    api.get("/import/previous", status=404)
    api.post("/import/undo", None, status=404)
    _, switch, (a, b) = _configure(api)
    before = api.get("/export")
    replacement = {
        "templates": [next(t for t in before["templates"] if t["id"] == switch["id"])],
        "devices": [{"id": "0c0c", "label": "c", "templates": [switch["id"]]}],
    }
    api.post("/import", replacement)
    after = api.get("/export")
    assert {d["id"] for d in after["devices"]} == {"0c0c"}

    resp = api.client.get("/import/previous", headers=api.headers)
    assert resp.status_code == 200 and resp.get_json() == before
    assert resp.headers["X-Ondas-Backup-Created"]

    undone = api.post("/import/undo", None)
    assert undone == {"result": "ok", "message": "previous configuration restored", "templates": 2, "devices": 2}
    assert api.get("/export") == before  # same ids, overrides, flags and timestamps
    assert api.get(f"/device/{a}")["label"] == "a2"
    api.get("/device/0c0c", status=404)
    # The undo kept what it replaced: undoing it brings the import back.
    assert api.get("/import/previous") == after
    api.post("/import/undo", None)
    assert api.get("/export") == after
    api.post("/import/undo", None)
    assert api.get("/export") == before

    # The undo announces its changes as an import does: 0c0c removed, a and b created again.
    events = consume(kafka_bootstrap, topics.device_events(unique), 16)
    kinds = [(k, e["event"]) for k, e in events]
    # _configure: create a, create b, update a, update b (its template changed)
    assert sorted(kinds[4:6]) == sorted([(a, "remove"), (b, "remove")]) and kinds[6] == ("0c0c", "create")
    for start in (7, 13):  # the first and the third undo
        assert kinds[start] == ("0c0c", "remove")
        assert sorted(kinds[start + 1 : start + 3]) == sorted([(a, "create"), (b, "create")])
        restored = {e["data"]["id"]: e["data"] for _, e in events[start + 1 : start + 3]}
        assert restored == {d["id"]: d for d in before["devices"]}
    assert sorted(kinds[10:12]) == sorted([(a, "remove"), (b, "remove")]) and kinds[12] == ("0c0c", "create")


def test_only_the_newest_backups_are_kept(api: Api, settings: Settings, unique: str) -> None:
    for i in range(7):
        api.post("/import", {"templates": [], "devices": [{"id": f"{i + 1:02x}", "label": "d", "templates": []}]})
    with psycopg.connect(settings.db_url) as conn:
        row = conn.execute("SELECT count(*) FROM import_backups WHERE tenant = %s", (unique,)).fetchone()
    assert row == (5,)
    assert [d["id"] for d in api.get("/import/previous")["devices"]] == ["06"]


def test_a_dry_run_changes_nothing_and_counts_the_changes(api: Api, settings: Settings) -> None:
    sensor, _, (a, _) = _configure(api)
    before = api.get("/export")
    events = outbox_count(settings.db_url)
    proposal = {
        "templates": [
            next(t for t in before["templates"] if t["id"] == sensor["id"]),
            {"id": 77, "label": "new", "attrs": [attr("x")]},
        ],
        "devices": [
            next(d for d in before["devices"] if d["id"] == a),
            {"id": "0d0d", "label": "d", "templates": [77]},
            {"id": "0e0e", "label": "e", "templates": [sensor["id"]]},
        ],
    }
    result = api.post("/import?dry_run=true", proposal)
    assert result == {
        "result": "ok",
        "message": "dry run: the document is valid; nothing was changed",
        "dry_run": True,
        "templates": 2,
        "devices": 3,
        "changes": {
            "templates": {"removed": 1, "added": 1, "kept": 1},
            "devices": {"removed": 1, "added": 2, "kept": 1},
        },
    }
    assert api.get("/export") == before
    assert outbox_count(settings.db_url) == events
    api.get("/import/previous", status=404)
    api.post("/import?dry_run=maybe", proposal, status=400)
    assert api.post("/import?dry_run=false", proposal)["devices"] == 3
    assert api.get("/import/previous") == before


def test_a_tenant_cannot_read_or_undo_another_tenants_backup(client: FlaskClient, tokens: Any, unique: str) -> None:
    a, b = Api(client, tokens.headers(f"{unique}a")), Api(client, tokens.headers(f"{unique}b"))
    _configure(a)
    a_before = a.get("/export")
    a.post("/import", {"templates": [], "devices": []})
    b_config = {"templates": [{"id": 5, "label": "b", "attrs": [attr("y")]}], "devices": []}
    b.post("/import", b_config)
    b_export = b.get("/export")

    assert b.get("/import/previous") == {"templates": [], "devices": []}
    b.post("/import/undo", None)
    assert b.get("/export") == {"templates": [], "devices": []}
    assert a.get("/export") == {"templates": [], "devices": []}  # A's undo was not B's to do
    assert a.get("/import/previous") == a_before
    a.post("/import/undo", None)
    assert a.get("/export") == a_before
    assert b.get("/import/previous") == b_export

    c = Api(client, tokens.headers(f"{unique}c"))
    c.get("/import/previous", status=404)
    c.post("/import/undo", None, status=404)
    assert c.get("/export") == {"templates": [], "devices": []}


def test_a_purged_tenant_leaves_no_backup(api: Api, dm_db: str, unique: str) -> None:
    from device_manager.store_postgres import PostgresStore

    _configure(api)
    api.post("/import", {"templates": [], "devices": []})
    store = PostgresStore(dm_db, max_connections=1)
    try:
        store.purge_tenant(unique)
    finally:
        store.close()
    api.get("/import/previous", status=404)
    api.post("/import/undo", None, status=404)
