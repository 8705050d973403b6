"""A device can be disabled and enabled again: the ``disabled`` flag is stored, rendered by every device
representation (REST, internal listings, export), filterable, and carried by the ``create``/``update`` events the
agents read. Real PostgreSQL and the real broker."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from device_manager.models import DeviceSpec
from device_manager.service import DeviceManager
from device_manager.settings import Settings
from device_manager.store_postgres import PostgresStore
from ondas import topics
from tests.integration.device_manager.helpers import Api, RelayRunner, attr, consume_until, outbox_count

pytestmark = pytest.mark.integration


def test_create_disabled_then_enable_and_disable_by_put(
    api: Api, client: FlaskClient, relay: RelayRunner, unique: str, kafka_bootstrap: str
) -> None:
    t = api.template("t", attr("temperature"), attr("fan", "actuator", "integer"))
    off = api.device("off", [t["id"]], disabled=True)
    on = api.device("on", [t["id"]])
    assert api.get(f"/device/{off}")["disabled"] is True
    assert api.get(f"/device/{on}")["disabled"] is False  # absent on create: false

    # Enable by PUT; a PUT without the field keeps the current value; disable again.
    enabled = api.put(f"/device/{off}", {"label": "off", "templates": [t["id"]], "disabled": False})["device"]
    assert enabled["disabled"] is False and api.get(f"/device/{off}") == enabled
    disabled = api.put(f"/device/{off}", {"label": "off", "templates": [t["id"]], "disabled": True})["device"]
    assert disabled["disabled"] is True
    kept = api.put(f"/device/{off}", {"label": "renamed", "templates": [t["id"]]})["device"]
    assert kept["disabled"] is True and kept["label"] == "renamed"
    # Adding a template to a disabled device keeps it disabled.
    t2 = api.template("t2", attr("level"))
    added = api.put(f"/device/{off}/template/{t2['id']}")["device"]
    assert added["disabled"] is True
    # The GET shape goes back through PUT unchanged.
    assert api.put(f"/device/{off}", added)["device"]["disabled"] is True
    # The internal routes the agents warm their caches from show the flag too.
    internal_one = client.get(f"/internal/tenants/{unique}/devices/{off}").get_json()
    assert internal_one["disabled"] is True and internal_one == api.get(f"/device/{off}")
    internal_all = client.get(f"/internal/tenants/{unique}/devices").get_json()["devices"]
    assert {d["id"]: d["disabled"] for d in internal_all} == {off: True, on: False}
    api.delete(f"/device/{off}")

    events = consume_until(
        kafka_bootstrap, topics.device_events(unique), lambda e: e["event"] == "remove" and e["data"]["id"] == off
    )
    by_off = [(e["event"], e["data"].get("disabled")) for k, e in events if k == off]
    assert by_off == [
        ("create", True),
        ("update", False),
        ("update", True),
        ("update", True),
        ("update", True),
        ("update", True),
        ("remove", None),
    ]
    assert [(e["event"], e["data"]["disabled"]) for k, e in events if k == on] == [("create", False)]
    last_update = next(e for k, e in reversed(events) if k == off and e["event"] == "update")
    assert last_update["data"]["label"] == "renamed"


def test_listing_shows_and_filters_the_flag(api: Api) -> None:
    t = api.template("t", attr("temperature"))
    many = [
        d["id"]
        for d in api.post("/device?count=3", {"label": "m", "templates": [t["id"]], "disabled": True})["devices"]
    ]
    on = api.device("on", [t["id"]], disabled=False)
    verbose = api.post("/device?verbose=true", {"label": "v", "templates": [t["id"]], "disabled": True})
    v = verbose["devices"][0]["id"]
    assert verbose["devices"][0]["disabled"] is True

    listing = api.get("/device?page_size=100")
    assert {d["id"]: d["disabled"] for d in listing["devices"]} == {**dict.fromkeys(many, True), on: False, v: True}
    only_off = api.get("/device?disabled=true&page_size=100")
    assert sorted(d["id"] for d in only_off["devices"]) == sorted([*many, v])
    assert only_off["pagination"]["total_items"] == 4
    assert [d["id"] for d in api.get("/device?disabled=false")["devices"]] == [on]
    assert sorted(api.get("/device?idsOnly=true&disabled=true")) == sorted([*many, v])
    assert api.get("/device?disabled=false&label=m")["devices"] == []
    assert len(api.get("/device?disabled=")["devices"]) == 5  # empty: no filter
    assert all("disabled" in d for d in api.get(f"/device/template/{t['id']}")["devices"])

    err = api.get("/device?disabled=perhaps", status=400)
    assert "disabled" in err["message"] and "true or false" in err["message"]


@pytest.mark.parametrize(
    "value",
    ["true", 1, 0, None, {"x": 1}, ["yes"]],
    ids=["string", "one", "zero", "null", "object", "list"],
)
def test_a_flag_that_is_not_a_json_boolean_is_refused(api: Api, settings: Settings, value: Any) -> None:
    t = api.template("t", attr("temperature"))
    device = api.device("d", [t["id"]])
    before = outbox_count(settings.db_url)

    err = api.post("/device", {"label": "x", "templates": [t["id"]], "disabled": value}, status=400)
    assert err["error"] == "invalid"
    assert "disabled must be a JSON boolean (true or false)" in err["message"]
    assert err["details"] == {"field": "disabled"}
    err = api.put(f"/device/{device}", {"label": "d", "templates": [t["id"]], "disabled": value}, status=400)
    assert "disabled must be a JSON boolean" in err["message"]

    assert [d["id"] for d in api.get("/device")["devices"]] == [device]
    assert api.get(f"/device/{device}")["disabled"] is False
    assert outbox_count(settings.db_url) == before  # a refused request emits nothing


def test_disabling_is_per_tenant(client: FlaskClient, tokens: Any, unique: str) -> None:
    a, b = Api(client, tokens.headers(f"{unique}a")), Api(client, tokens.headers(f"{unique}b"))
    tb = b.template("t", attr("x"))
    ta = a.template("t", attr("x"))
    dev_b = b.device("b", [tb["id"]], id="0bb0", disabled=True)
    dev_a = a.device("a", [ta["id"]], id="0bb0")  # the same id in tenant A, enabled
    assert dev_a == dev_b

    assert a.get(f"/device/{dev_a}")["disabled"] is False
    assert a.get("/device?disabled=true")["devices"] == []
    a.put(f"/device/{dev_a}", {"label": "a", "templates": [ta["id"]], "disabled": True})
    b.put(f"/device/{dev_b}", {"label": "b", "templates": [tb["id"]], "disabled": False})
    assert a.get(f"/device/{dev_a}")["disabled"] is True
    assert b.get(f"/device/{dev_b}")["disabled"] is False
    assert [d["label"] for d in a.get("/device?disabled=true")["devices"]] == ["a"]
    assert b.get("/device?disabled=true")["devices"] == []
    assert client.get(f"/internal/tenants/{unique}b/devices").get_json()["devices"][0]["disabled"] is False
    assert client.get(f"/internal/tenants/{unique}a/devices").get_json()["devices"][0]["disabled"] is True
    a.put("/device/ffff", {"label": "x", "templates": [], "disabled": True}, status=404)


def test_export_and_import_keep_the_flag(api: Api) -> None:
    t = api.template("t", attr("temperature"))
    off = api.device("off", [t["id"]], disabled=True)
    on = api.device("on", [t["id"]])
    exported = api.get("/export")
    assert {d["id"]: d["disabled"] for d in exported["devices"]} == {off: True, on: False}

    api.put(f"/device/{off}", {"label": "off", "templates": [t["id"]], "disabled": False})
    api.post("/import", exported)
    assert api.get(f"/device/{off}")["disabled"] is True
    assert api.get("/export") == exported

    # Exports from before the flag existed have no "disabled": the devices come back enabled.
    legacy = {**exported, "devices": [{k: v for k, v in d.items() if k != "disabled"} for d in exported["devices"]]}
    api.post("/import", legacy)
    assert {d["id"]: d["disabled"] for d in api.get("/device")["devices"]} == {off: False, on: False}

    broken = {**exported, "devices": [{**exported["devices"][0], "disabled": "yes"}]}
    err = api.post("/import", broken, status=400)
    assert err["details"]["problems"][0].startswith("devices[0]: disabled must be a JSON boolean")


def test_an_existing_database_is_upgraded(dm_db: str, unique: str) -> None:
    """A database made before the flag existed (no ``disabled`` column) gets it, false for every device."""
    store = PostgresStore(dm_db, max_connections=2)
    try:
        store.migrate()
        service = DeviceManager(store)
        [device] = service.create_devices(unique, DeviceSpec("old"))
        with psycopg.connect(dm_db) as conn:
            conn.execute("ALTER TABLE devices DROP COLUMN disabled")
        store.migrate()
        store.migrate()  # idempotent
        assert service.get_device(unique, device.id).disabled is False
        [off] = service.create_devices(unique, DeviceSpec("new", disabled=True))
        assert service.get_device(unique, off.id).disabled is True
    finally:
        store.close()
