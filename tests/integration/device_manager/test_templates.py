"""Templates: create, list, get, update (propagated to devices, with events), delete, against real PostgreSQL
and the real broker."""

from __future__ import annotations

from typing import Any

import pytest

from device_manager.settings import Settings
from ondas import topics
from tests.integration.device_manager.helpers import Api, RelayRunner, attr, consume_until, outbox_count

pytestmark = pytest.mark.integration


def test_attribute_kinds_value_types_and_metadata(api: Api) -> None:
    value_types = ["integer", "float", "bool", "string", "geo:point", "object", "json"]
    attrs = [attr(f"a_{i}", "dynamic", vt) for i, vt in enumerate(value_types)]
    attrs += [
        attr("serial", "static", "string", static_value="sn-0"),
        attr("config", "static", "object", static_value={"rate": 5}),
        attr("led", "actuator", "bool"),
        attr("protocol", "meta", "string", static_value="mqtt"),
        attr(
            "temperature",
            "dynamic",
            "float",
            metadata=[
                {"label": "unit", "type": "meta", "value_type": "string", "static_value": "C"},
                {"label": "precision", "value_type": "integer", "static_value": 2},
            ],
        ),
    ]
    template = api.template("kinds", *attrs)
    assert [a["value_type"] for a in template["attrs"][: len(value_types)]] == value_types
    by_label = {a["label"]: a for a in template["attrs"]}
    assert by_label["serial"]["static_value"] == "sn-0"
    assert by_label["config"]["static_value"] == {"rate": 5}
    assert [a["label"] for a in template["config_attrs"]] == ["protocol"]
    assert "protocol" not in [a["label"] for a in template["data_attrs"]]
    unit, precision = by_label["temperature"]["metadata"]
    assert (unit["label"], unit["type"], unit["static_value"]) == ("unit", "meta", "C")
    assert (precision["type"], precision["value_type"], precision["static_value"]) == ("meta", "integer", 2)
    assert len({a["id"] for a in template["attrs"]} | {unit["id"], precision["id"]}) == len(attrs) + 2
    assert api.get(f"/template/{template['id']}") == template


def test_attr_format(api: Api) -> None:
    t = api.template("t", attr("temperature"), attr("protocol", "meta", "string"))
    single = api.get(f"/template/{t['id']}?attr_format=single")
    split = api.get(f"/template/{t['id']}?attr_format=split")
    assert set(single) == {"id", "label", "created", "attrs"}
    assert set(split) == {"id", "label", "created", "data_attrs", "config_attrs"}
    assert set(api.get(f"/template/{t['id']}?attr_format=both")) == set(t)
    listing = api.get("/template?attr_format=single")["templates"]
    assert [set(x) for x in listing] == [{"id", "label", "created", "attrs"}]
    bad = api.get("/template?attr_format=everything", status=400)
    assert "attr_format must be one of" in bad["message"]


def test_listing_templates(api: Api) -> None:
    api.template("zeta sensor", attr("geo", "dynamic", "geo:point"))
    api.template("Alpha sensor", attr("model", "static", "string", static_value="m1"))
    api.template("gateway", attr("model", "static", "string", static_value="m2"))
    labels = [t["label"] for t in api.get("/template")["templates"]]
    assert labels == ["zeta sensor", "Alpha sensor", "gateway"]  # by id
    assert [t["label"] for t in api.get("/template?label=SENSOR")["templates"]] == ["zeta sensor", "Alpha sensor"]
    assert [t["label"] for t in api.get("/template?attr=model=m2")["templates"]] == ["gateway"]
    assert [t["label"] for t in api.get("/template?attr_type=geo:point")["templates"]] == ["zeta sensor"]
    assert [t["label"] for t in api.get("/template?sortBy=label")["templates"]] == [
        "Alpha sensor",
        "gateway",
        "zeta sensor",
    ]
    assert api.get("/template?sortBy=desc:label")["templates"][0]["label"] == "zeta sensor"
    page = api.get("/template?page_size=2&page_num=2")
    assert [t["label"] for t in page["templates"]] == ["gateway"]
    assert page["pagination"] == {"page": 2, "total": 2, "has_next": False, "next_page": None, "total_items": 3}


def test_update_propagates_to_devices_with_update_events(
    api: Api, relay: RelayRunner, unique: str, kafka_bootstrap: str
) -> None:
    t = api.template(
        "thermo",
        attr("temperature"),
        attr("serial", "static", "string", static_value="none"),
        attr("old", "dynamic", "integer"),
    )
    other = api.template("other", attr("humidity"))
    d1 = api.device("one", [t["id"]], attrs={str(t["id"]): [{"label": "serial", "static_value": "sn-1"}]})
    d2 = api.device("two", [t["id"], other["id"]])
    untouched = api.device("three", [other["id"]])
    by_label = {a["label"]: a for a in t["attrs"]}

    # Keep temperature (by id) and serial (by label), drop "old", add "fan".
    body = {
        "label": "thermometer",
        "attrs": [
            {**attr("temperature", "dynamic", "float"), "id": by_label["temperature"]["id"]},
            attr("serial", "static", "string", static_value="unknown"),
            attr("fan", "actuator", "integer"),
        ],
    }
    updated = api.put(f"/template/{t['id']}", body)
    assert updated["result"] == "ok"
    new = updated["updated"]
    assert new["label"] == "thermometer" and "updated" in new
    new_by_label = {a["label"]: a for a in new["attrs"]}
    assert list(new_by_label) == ["temperature", "serial", "fan"]
    assert new_by_label["temperature"]["id"] == by_label["temperature"]["id"]
    assert new_by_label["serial"]["id"] == by_label["serial"]["id"]
    assert new_by_label["fan"]["id"] not in {a["id"] for a in t["attrs"]}
    assert api.get(f"/template/{t['id']}") == new

    # The devices see the new attributes at once; d1 keeps its override of serial.
    one = api.get(f"/device/{d1}")
    serial = next(a for a in one["attrs"][str(t["id"])] if a["label"] == "serial")
    assert serial["static_value"] == "sn-1" and serial["is_static_overridden"] is True
    two = api.get(f"/device/{d2}")
    assert [a["label"] for a in two["attrs"][str(t["id"])]] == ["temperature", "serial", "fan"]
    assert api.put(f"/device/{d2}/actuate", {"attrs": {"fan": 1}}) == {"status": "configuration sent to device"}

    events = consume_until(kafka_bootstrap, topics.device_events(unique), lambda e: e["event"] == "configure")
    kinds = [(k, e["event"]) for k, e in events]
    assert kinds[:3] == [(d1, "create"), (d2, "create"), (untouched, "create")]
    assert sorted(kinds[3:5]) == sorted([(d1, "update"), (d2, "update")])
    assert kinds[5:] == [(d2, "configure")]
    updates = {k: e for k, e in events[3:5]}
    assert updates[d1] == {"event": "update", "meta": {"service": unique}, "data": one}
    assert updates[d2]["data"] == two


def test_update_that_would_repeat_a_label_on_a_device_changes_nothing(
    api: Api, settings: Settings, unique: str
) -> None:
    therm = api.template("ThermTemplate", attr("temperature"))
    extra = api.template("ExtraTemplate", attr("level"))
    device = api.device("kitchen", [therm["id"], extra["id"]])
    lonely = api.template("Lonely", attr("temperature"))
    before = outbox_count(settings.db_url)

    body = {"label": "ThermTemplate", "attrs": [attr("temperature"), attr("level", "dynamic", "integer")]}
    err = api.put(f"/template/{therm['id']}", body, status=400)
    assert "'level'" in err["message"] and "repeated attributes" in err["message"]
    assert "not changed" in err["message"]
    assert err["details"]["label"] == "level"
    assert err["details"]["templates"] == [therm["id"], extra["id"]]
    assert device in err["message"]
    assert api.get(f"/template/{therm['id']}") == therm
    assert outbox_count(settings.db_url) == before

    # The same edit is fine on a template no device combines with ExtraTemplate.
    api.put(f"/template/{lonely['id']}", {"label": "Lonely", "attrs": body["attrs"]})


def test_template_in_use_cannot_be_deleted(api: Api) -> None:
    t = api.template("t", attr("temperature"))
    free = api.template("free", attr("x"))
    devices = [d["id"] for d in api.post("/device?count=12", {"label": "d", "templates": [t["id"]]})["devices"]]

    err = api.delete(f"/template/{t['id']}", status=400)
    assert err["message"] == "Templates cannot be removed as they are being used by devices"
    assert err["status"] == 400
    assert err["details"]["device_count"] == 12
    assert err["details"]["devices"] == sorted(devices)[:10]
    assert api.get(f"/template/{t['id']}") == t

    err = api.delete("/template", status=400)
    assert err["message"] == "Templates cannot be removed as they are being used by devices"
    assert len(api.get("/template")["templates"]) == 2

    removed = api.delete(f"/template/{free['id']}")
    assert removed == {"result": "ok", "removed": free}
    api.get(f"/template/{free['id']}", status=404)

    api.delete("/device")
    all_removed = api.delete("/template")
    assert all_removed == {"result": "ok", "removed": [t]}
    assert api.get("/template")["templates"] == []
    api.delete("/template/99", status=404)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("PUT", "/template/1", {"attrs": []}, 400, "label is required"),
        ("PUT", "/template/77", {"label": "x"}, 404, "No such template: 77"),
        ("PUT", "/template/abc", {"label": "x"}, 404, "No such template: abc"),
        ("PUT", "/template/1", {"label": "x", "attrs": [attr("a", value_type="complex")]}, 400, "value_type"),
        ("PUT", "/template/1", {"label": "x", "attrs": [{**attr("a"), "metadata": "unit"}]}, 400, "metadata"),
        (
            "POST",
            "/template",
            {"label": "x", "attrs": [{**attr("a"), "metadata": [{"label": "u"}]}]},
            400,
            "value_type",
        ),
        ("GET", "/template?sortBy=colour", None, 400, "sortBy"),
        ("GET", "/template?attr=novalue", None, 400, "attr must be"),
        ("DELETE", "/template/0", None, 404, "No such template"),
    ],
    ids=[
        "update-no-label",
        "update-unknown",
        "update-bad-id",
        "update-bad-value-type",
        "update-bad-metadata",
        "create-meta-no-type",
        "list-bad-sort",
        "list-bad-attr",
        "delete-zero",
    ],
)
def test_template_errors_say_what_to_fix(
    api: Api, method: str, path: str, body: Any, status: int, fragment: str
) -> None:
    api.template("first", attr("a"))
    err = api.call(method, path, body, status)
    assert fragment in err["message"], err
