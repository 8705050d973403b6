"""Devices: create (one, many, chosen id), get, update, overrides, templates added and removed, delete one and
all, listing filters; events checked by consuming them from the broker."""

from __future__ import annotations

import re
from typing import Any

import pytest

from device_manager.settings import Settings
from ondas import topics
from tests.integration.device_manager.helpers import Api, RelayRunner, attr, consume_until, outbox_count

pytestmark = pytest.mark.integration


def test_create_many_with_indexed_labels_and_ids(api: Api) -> None:
    t = api.template("t", attr("temperature"))
    created = api.post("/device?count=5", {"label": "sensor", "templates": [t["id"]]})
    assert created["message"] == "devices created"
    assert [d["label"] for d in created["devices"]] == [f"sensor_{i}" for i in range(5)]
    assert all(re.fullmatch(r"[0-9a-f]{6}", d["id"]) for d in created["devices"])
    assert len({d["id"] for d in created["devices"]}) == 5

    verbose = api.post("/device?verbose=true", {"label": "v", "templates": [t["id"]], "id": "00Ab"})
    [full] = verbose["devices"]
    assert full["id"] == "00ab" and full["attrs"][str(t["id"])][0]["label"] == "temperature"
    assert api.get("/device/00AB") == full  # ids are case-insensitive in URLs
    err = api.post("/device?count=2&verbose=true", {"label": "v", "templates": []}, status=400)
    assert "single device" in err["message"]
    err = api.post("/device?count=2", {"label": "v", "templates": [], "id": "abcd"}, status=400)
    assert "single device" in err["message"]
    assert "count" in api.post("/device?count=1001", {"label": "v", "templates": []}, status=400)["message"]
    assert "integer" in api.post("/device?count=many", {"label": "v", "templates": []}, status=400)["message"]


def test_templates_of_a_device_must_not_share_a_label(api: Api, settings: Settings) -> None:
    t1 = api.template("one", attr("temperature"), attr("level"))
    t2 = api.template("two", attr("level", "static", "integer", static_value=3))
    before = outbox_count(settings.db_url)
    err = api.post("/device", {"label": "d", "templates": [t1["id"], t2["id"]]}, status=400)
    assert "'level'" in err["message"] and f"templates {t1['id']} and {t2['id']}" in err["message"]
    assert err["details"] == {"label": "level", "templates": [t1["id"], t2["id"]]}

    device = api.device("d", [t1["id"]])
    err = api.put(f"/device/{device}/template/{t2['id']}", status=400)
    assert "'level'" in err["message"]
    err = api.put(f"/device/{device}", {"label": "d", "templates": [t1["id"], t2["id"]]}, status=400)
    assert "'level'" in err["message"]
    assert api.get(f"/device/{device}")["templates"] == [t1["id"]]
    assert outbox_count(settings.db_url) == before + 1  # the one create


def test_update_add_and_remove_templates_emit_update_events(
    api: Api, relay: RelayRunner, unique: str, kafka_bootstrap: str
) -> None:
    t1 = api.template("one", attr("temperature"), attr("serial", "static", "string", static_value="none"))
    t2 = api.template("two", attr("fan", "actuator", "integer"))
    device = api.device("d", [t1["id"]], attrs={str(t1["id"]): [{"label": "serial", "static_value": "sn-9"}]})
    created = api.get(f"/device/{device}")
    assert "updated" not in created

    # PUT replaces label and templates; without attrs in the body the overrides are kept.
    updated = api.put(f"/device/{device}", {"label": "renamed", "templates": [t1["id"], t2["id"]]})
    assert updated["message"] == "device updated"
    dev = updated["device"]
    assert dev["label"] == "renamed" and dev["templates"] == [t1["id"], t2["id"]] and "updated" in dev
    assert dev["created"] == created["created"]
    assert next(a for a in dev["attrs"][str(t1["id"])] if a["label"] == "serial")["static_value"] == "sn-9"
    assert api.get(f"/device/{device}") == dev
    assert api.put(f"/device/{device}", {"label": "x", "templates": [], "id": "ffff"}, status=400)

    removed = api.delete(f"/device/{device}/template/{t2['id']}")["device"]
    assert removed["templates"] == [t1["id"]]
    api.put(f"/device/{device}/actuate", {"attrs": {"fan": 1}}, status=403)
    api.delete(f"/device/{device}/template/{t2['id']}", status=404)
    added = api.put(f"/device/{device}/template/{t2['id']}")["device"]
    assert added["templates"] == [t1["id"], t2["id"]]
    assert api.put(f"/device/{device}/template/{t2['id']}")["device"] == added  # already there: no change
    assert api.put(f"/device/{device}/template/999", status=404)["message"] == "No such template: 999"
    api.put(f"/device/ffffff/template/{t2['id']}", status=404)

    # attrs in the body replace the overrides: the template's value is no override.
    reset = api.put(
        f"/device/{device}",
        {"label": "renamed", "templates": [t1["id"], t2["id"]], "attrs": {str(t1["id"]): t1["attrs"]}},
    )["device"]
    serial = next(a for a in reset["attrs"][str(t1["id"])] if a["label"] == "serial")
    assert serial == {**serial, "static_value": "none", "is_static_overridden": False}
    api.delete(f"/device/{device}")

    events = consume_until(kafka_bootstrap, topics.device_events(unique), lambda e: e["event"] == "remove")
    assert [e["event"] for _, e in events] == ["create", "update", "update", "update", "update", "remove"]
    assert {k for k, _ in events} == {device}
    assert events[1][1] == {"event": "update", "meta": {"service": unique}, "data": dev}
    assert events[2][1]["data"] == removed
    assert events[3][1]["data"] == added
    assert events[4][1]["data"] == reset


def test_overrides_follow_dojot_rules(api: Api) -> None:
    t = api.template(
        "t",
        attr("serial", "static", "string", static_value="none"),
        attr("temperature", metadata=[{"label": "unit", "type": "meta", "value_type": "string", "static_value": "C"}]),
    )
    tid = str(t["id"])
    serial, temperature = t["attrs"]
    unit = temperature["metadata"][0]
    body = {
        "label": "d",
        "templates": [t["id"]],
        "attrs": {
            tid: [
                {"id": serial["id"], "label": "serial", "static_value": "sn-1"},
                {
                    "id": temperature["id"],
                    "label": "temperature",
                    "metadata": [{"id": unit["id"], "static_value": "K"}],
                },
            ]
        },
    }
    device = api.device(**body)  # type: ignore[arg-type]
    shown = api.get(f"/device/{device}")["attrs"][tid]
    assert shown[0]["static_value"] == "sn-1" and shown[0]["is_static_overridden"] is True
    assert shown[1]["metadata"][0]["static_value"] == "K" and shown[1]["metadata"][0]["is_static_overridden"] is True
    assert api.get(f"/template/{t['id']}") == t  # the template is untouched

    bad: list[tuple[Any, str]] = [
        ({"999": [{"id": serial["id"], "label": "serial", "static_value": "x"}]}, "Unknown template 999 in attr list"),
        ({tid: [{"id": 123456, "label": "x", "static_value": "x"}]}, "Unknown attribute 123456 in override list"),
        (
            {tid: [{"id": temperature["id"], "label": "t", "metadata": [{"id": 5555, "static_value": "x"}]}]},
            "Unknown metadata",
        ),
        ({tid: [{"label": "", "static_value": "x"}]}, "by id (or label)"),
    ]
    for overrides, fragment in bad:
        err = api.post("/device", {"label": "x", "templates": [t["id"]], "attrs": overrides}, status=400)
        assert fragment in err["message"], (overrides, err)


def test_delete_one_and_all(api: Api, relay: RelayRunner, unique: str, kafka_bootstrap: str) -> None:
    t = api.template("t", attr("temperature"))
    ids = [d["id"] for d in api.post("/device?count=3", {"label": "d", "templates": [t["id"]]})["devices"]]
    one = api.get(f"/device/{ids[0]}")
    assert api.delete(f"/device/{ids[0]}") == {"result": "ok", "removed_device": one}
    api.delete(f"/device/{ids[0]}", status=404)
    rest = api.delete("/device")
    assert rest["result"] == "ok"
    assert sorted(d["id"] for d in rest["removed_devices"]) == sorted(ids[1:])
    assert api.get("/device")["devices"] == []
    assert api.delete("/device") == {"result": "ok", "removed_devices": []}

    all_events = _read_n(kafka_bootstrap, topics.device_events(unique), 6)
    assert [e["event"] for _, e in all_events] == ["create"] * 3 + ["remove"] * 3
    assert all_events[3][0] == ids[0]
    assert sorted(k for k, _ in all_events[4:]) == sorted(ids[1:])
    assert all(e == {"event": "remove", "meta": {"service": unique}, "data": {"id": k}} for k, e in all_events[3:])


def _read_n(bootstrap: str, topic: str, n: int) -> list[tuple[str, dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def stop(e: dict[str, Any]) -> bool:
        seen.append(e)
        return len(seen) >= n

    return consume_until(bootstrap, topic, stop)


def test_devices_of_a_template(api: Api) -> None:
    t1 = api.template("one", attr("a"))
    t2 = api.template("two", attr("b"))
    a = api.device("a", [t1["id"]])
    b = api.device("b", [t1["id"], t2["id"]])
    api.device("c", [t2["id"]])
    page = api.get(f"/device/template/{t1['id']}?page_size=1")
    assert [d["id"] for d in page["devices"]] == [a]
    assert page["pagination"] == {"page": 1, "total": 2, "has_next": True, "next_page": 2, "total_items": 2}
    assert [d["id"] for d in api.get(f"/device/template/{t1['id']}?page_num=2&page_size=1")["devices"]] == [b]
    assert api.get(f"/device/template/{t1['id']}")["devices"][1] == api.get(f"/device/{b}")
    assert "No such template: 77" in api.get("/device/template/77", status=404)["message"]
    api.get("/device/template/x", status=404)


def test_listing_filters(api: Api) -> None:
    geo = api.template("geo", attr("position", "dynamic", "geo:point"))
    kit = api.template(
        "kit",
        attr("model", "static", "string", static_value="m1"),
        attr("rev", "static", "integer", static_value=2),
        attr("led", "actuator", "bool"),
    )
    kitchen = api.device("kitchen sensor", [kit["id"]])
    garage = api.device("garage sensor", [kit["id"], geo["id"]])
    special = api.device("special", [kit["id"]], attrs={str(kit["id"]): [{"label": "model", "static_value": "m2"}]})
    plain = api.device("plain", [geo["id"]])
    percent = api.device("100% _odd_", [])

    def ids(query: str) -> list[str]:
        return [d["id"] for d in api.get(f"/device?{query}")["devices"]]

    assert ids("") == [kitchen, garage, special, plain, percent]  # by creation
    assert ids("label=SENSOR") == [kitchen, garage]  # substring, any case
    assert ids("label=%25") == [percent] and ids("label=_o") == [percent]  # % and _ are literal
    assert ids("attr=model=m1") == [kitchen, garage]  # the template's value ...
    assert ids("attr=model=m2") == [special]  # ... or the device's own
    assert ids("attr=model=m1&attr=rev=2") == [kitchen, garage]
    assert ids("attr=model=m1&attr=rev=3") == []
    assert ids("attr_type=geo:point") == [garage, plain]
    assert ids("attr_type=actuator") == [kitchen, garage, special]
    assert ids(f"template={geo['id']}") == [garage, plain]
    assert ids(f"template={geo['id']}&label=sensor") == [garage]
    assert ids("sortBy=label") == [percent, garage, kitchen, plain, special]
    assert ids("sortBy=desc:created") == [percent, plain, special, garage, kitchen]
    assert ids("sortBy=id") == sorted([kitchen, garage, special, plain, percent])

    page = api.get("/device?label=sensor&page_size=1&page_num=2")
    assert [d["id"] for d in page["devices"]] == [garage]
    assert page["pagination"] == {"page": 2, "total": 2, "has_next": False, "next_page": None, "total_items": 2}
    beyond = api.get("/device?page_num=9")
    assert beyond["devices"] == [] and beyond["pagination"]["total_items"] == 5

    assert api.get("/device?idsOnly=true&page_size=2") == [kitchen, garage]
    assert api.get("/device?idsOnly=true&attr=model=m2") == [special]
    assert api.get("/device?idsOnly=false&page_size=1")["devices"][0]["id"] == kitchen


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("page_num=0", "greater than 1"),
        ("page_size=0", "At least one"),
        ("page_size=1001", "at most 1000"),
        ("page_size=x", "integer"),
        ("attr=model", "attr must be"),
        ("template=abc", "template must be"),
        ("sortBy=color", "sortBy must be"),
        ("idsOnly=perhaps", "idsOnly"),
    ],
    ids=["page-zero", "size-zero", "size-big", "size-text", "attr-no-value", "template-text", "sort", "ids-only"],
)
def test_listing_errors_say_what_to_fix(api: Api, query: str, fragment: str) -> None:
    err = api.get(f"/device?{query}", status=400)
    assert fragment in err["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("GET", "/device/not-hex!", None, 404, "No such device"),
        ("PUT", "/device/abcdef", {"label": "x", "templates": []}, 404, "No such device: abcdef"),
        ("PUT", "/device/abcdef", {"templates": []}, 400, "label is required"),
        ("PUT", "/device/abcdef", [], 400, "JSON object"),
        ("DELETE", "/device/abcdef/template/1", None, 404, "No such device"),
        ("PUT", "/device/abcdef/actuate", {"attrs": {"fan": 1}}, 404, "No such device: abcdef"),
        ("POST", "/device", {"label": "x" * 129, "templates": []}, 400, "at most 128"),
        ("POST", "/device", {"label": "x", "templates": [], "attrs": {"1": "x"}}, 400, "must be a list"),
    ],
    ids=[
        "get-bad-id",
        "update-unknown",
        "update-no-label",
        "update-not-object",
        "remove-template-unknown",
        "actuate-unknown",
        "label-too-long",
        "overrides-bad-shape",
    ],
)
def test_device_errors_say_what_to_fix(api: Api, method: str, path: str, body: Any, status: int, fragment: str) -> None:
    err = api.call(method, path, body, status)
    assert fragment in err["message"], err
