"""Configuration export and import: a tenant's templates and devices out, and atomically back in."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from device_manager.settings import Settings
from ondas import topics
from tests.integration.device_manager.helpers import Api, RelayRunner, attr, consume_until, outbox_count

pytestmark = pytest.mark.integration


def _configure(api: Api) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    sensor = api.template(
        "sensor",
        attr("temperature", metadata=[{"label": "unit", "type": "meta", "value_type": "string", "static_value": "C"}]),
        attr("serial", "static", "string", static_value="none"),
    )
    switch = api.template("switch", attr("led", "actuator", "bool"), attr("protocol", "meta", "string"))
    a = api.device("a", [sensor["id"]], attrs={str(sensor["id"]): [{"label": "serial", "static_value": "sn-a"}]})
    b = api.device("b", [sensor["id"], switch["id"]], id="0b0b")
    return sensor, switch, [a, b]


def test_export_then_import_restores_the_configuration(
    api: Api, relay: RelayRunner, unique: str, kafka_bootstrap: str
) -> None:
    sensor, switch, (a, b) = _configure(api)
    exported = api.get("/export")
    assert set(exported) == {"templates", "devices"}
    assert [t["id"] for t in exported["templates"]] == [sensor["id"], switch["id"]]
    assert exported["templates"][0]["attrs"] == sensor["attrs"]
    assert {d["id"] for d in exported["devices"]} == {a, b}
    assert next(d for d in exported["devices"] if d["id"] == a) == api.get(f"/device/{a}")

    # Change everything, then import the export back.
    api.delete(f"/device/{b}")
    c = api.device("c", [switch["id"]])
    api.put(f"/template/{sensor['id']}", {"label": "changed", "attrs": [attr("other")]})
    result = api.post("/import", exported)
    assert result == {"result": "ok", "message": "configuration imported", "templates": 2, "devices": 2}
    assert api.get("/export") == exported
    serial = next(x for x in api.get(f"/device/{a}")["attrs"][str(sensor["id"])] if x["label"] == "serial")
    assert serial["static_value"] == "sn-a" and serial["is_static_overridden"] is True

    # New ids continue after the imported ones.
    later = api.template("later", attr("x"))
    assert later["id"] > switch["id"]
    assert later["attrs"][0]["id"] > max(x["id"] for t in exported["templates"] for x in t["attrs"])
    api.delete(f"/device/{a}")

    events = consume_until(
        kafka_bootstrap, topics.device_events(unique), lambda e: e["event"] == "remove" and e["data"]["id"] == a
    )
    after_import = [(k, e["event"]) for k, e in events]
    # create a, create b, remove b, create c, update a (template edit), then the import: c removed, a updated,
    # b created; finally a removed.
    assert after_import[:5] == [(a, "create"), (b, "create"), (b, "remove"), (c, "create"), (a, "update")]
    assert after_import[5:8] == [(c, "remove"), (a, "update"), (b, "create")]
    assert after_import[8:] == [(a, "remove")]
    assert events[6][1]["data"] == next(d for d in exported["devices"] if d["id"] == a)


def test_a_bad_import_changes_nothing(api: Api, settings: Settings) -> None:
    _configure(api)
    exported = api.get("/export")
    before = outbox_count(settings.db_url)
    broken = copy.deepcopy(exported)
    broken["devices"][1]["templates"].append(999)
    cases: list[tuple[Any, str]] = [
        (broken, "uses template 999, which is not in templates"),
        ({"templates": "all", "devices": []}, "templates: must be a list"),
        ({"templates": [{"label": "no id"}]}, "templates[0].id"),
        ({"templates": [exported["templates"][0]] * 2}, "appears twice"),
        ({"devices": [{"label": "x", "templates": []}]}, "devices[0].id is required"),
        ({"devices": [{"id": "zz", "label": "x", "templates": []}]}, "hexadecimal"),
        ({"devices": [{"id": "aa", "label": "x", "templates": []}] * 2}, "appears twice"),
        ({**exported, "flows": [{"id": "f1"}]}, "flows cannot be imported"),
        ([], "JSON object"),
    ]
    for body, fragment in cases:
        err = api.post("/import", body, status=400)
        # Every problem is listed in details.problems (the message only says the document was refused).
        assert any(fragment in p for p in err["details"]["problems"]), (fragment, err)
    assert api.get("/export") == exported
    assert outbox_count(settings.db_url) == before


def test_import_of_an_empty_configuration_clears_the_tenant(api: Api) -> None:
    _configure(api)
    assert api.post("/import", {"templates": [], "devices": [], "flows": []})["devices"] == 0
    assert api.get("/export") == {"templates": [], "devices": []}
