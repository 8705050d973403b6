"""Where the device manager answers exactly as dojot's device-manager v0.8.0: attribute and metadata ids, 404 for
an unknown template of a device, overrides without a label, templates in use, metadata of any type. Each test
asserts dojot's status code and body (dojot's ``message`` and ``status``; Ondas adds only its ``error`` kind, and
for templates in use the ``details`` it gave before). Every test is a new tenant, so ids count from 1."""

from __future__ import annotations

from typing import Any

import pytest

from device_manager.settings import Settings
from tests.integration.device_manager.helpers import Api, attr, outbox_count

pytestmark = pytest.mark.integration

IN_USE = "Templates cannot be removed as they are being used by devices"

# dojot's tutorial (dojot v0.8.1 docs, "Device creation"): in a new system this template gets id 1 and its
# attributes ids 1 and 2.
THERMOMETER = {
    "label": "Thermometer Template",
    "attrs": [
        {"label": "temperature", "type": "dynamic", "value_type": "float"},
        {"label": "fan", "type": "actuator", "value_type": "float"},
    ],
}

# dojot's API description (apiary.apib, "Register a new template"), with metadata added to its two attributes:
# no dojot document shows a template with metadata.
SENSOR_MODEL = {
    "label": "SensorModel",
    "attrs": [
        {
            "label": "temperature",
            "type": "dynamic",
            "value_type": "float",
            "metadata": [
                {"label": "unit", "type": "meta", "value_type": "string", "static_value": "C"},
                {"label": "precision", "type": "meta", "value_type": "integer", "static_value": 2},
            ],
        },
        {
            "label": "model-id",
            "type": "static",
            "value_type": "string",
            "static_value": "model-001",
            "metadata": [{"label": "vendor", "type": "lwm2m", "value_type": "string", "static_value": "acme"}],
        },
    ],
}


def _ids(template: dict[str, Any]) -> dict[str, int]:
    """label -> id of every attribute, and "<attribute>/<meta>" -> id of every meta attribute."""
    out: dict[str, int] = {}
    for a in template["attrs"]:
        out[a["label"]] = a["id"]
        for m in a.get("metadata", []):
            out[f"{a['label']}/{m['label']}"] = m["id"]
    return out


def _shown(device: dict[str, Any], template: int) -> dict[str, dict[str, Any]]:
    """What a device shows of one template: label (or "<attribute>/<meta>") -> the rendered entry."""
    out: dict[str, dict[str, Any]] = {}
    for a in device["attrs"][str(template)]:
        out[a["label"]] = a
        for m in a.get("metadata", []):
            out[f"{a['label']}/{m['label']}"] = m
    return out


def test_documented_templates_get_dojot_ids_and_devices_override_by_them(api: Api) -> None:
    thermometer = api.post("/template", THERMOMETER)["template"]
    assert thermometer["id"] == 1
    assert _ids(thermometer) == {"temperature": 1, "fan": 2}  # as the tutorial shows

    sensor = api.post("/template", SENSOR_MODEL)["template"]
    assert sensor["id"] == 2
    # dojot: the attributes first, in the body's order, then their metadata.
    assert _ids(sensor) == {
        "temperature": 3,
        "model-id": 4,
        "temperature/unit": 5,
        "temperature/precision": 6,
        "model-id/vendor": 7,
    }
    assert [a["label"] for a in sensor["attrs"]] == ["temperature", "model-id"]
    assert api.get("/template/2") == sensor

    # dojot's override list: each entry names its template, the attribute's id and label, and metadata by id.
    body = {
        "label": "sensor",
        "templates": ["2"],
        "attrs": [
            {"template_id": "2", "id": 4, "label": "model-id", "static_value": "model-002"},
            {"template_id": "2", "id": 3, "label": "temperature", "metadata": [{"id": 5, "static_value": "K"}]},
        ],
    }
    device = api.device(**body)  # type: ignore[arg-type]
    shown = _shown(api.get(f"/device/{device}"), 2)
    assert (shown["model-id"]["static_value"], shown["model-id"]["is_static_overridden"]) == ("model-002", True)
    assert (shown["temperature/unit"]["static_value"], shown["temperature/unit"]["is_static_overridden"]) == (
        "K",
        True,
    )
    assert shown["temperature/precision"]["static_value"] == 2
    assert shown["temperature/precision"]["is_static_overridden"] is False
    assert shown["model-id/vendor"]["is_static_overridden"] is False
    assert api.get("/template/2") == sensor  # the template is untouched

    # The shape GET returns works too; attrs given replace the overrides.
    again = {
        "label": "sensor",
        "templates": [2],
        "attrs": {"2": [{"id": 4, "label": "model-id", "metadata": [{"id": 7, "static_value": "other"}]}]},
    }
    shown = _shown(api.put(f"/device/{device}", again)["device"], 2)
    assert (shown["model-id"]["static_value"], shown["model-id"]["is_static_overridden"]) == ("model-001", False)
    assert (shown["model-id/vendor"]["static_value"], shown["model-id/vendor"]["is_static_overridden"]) == (
        "other",
        True,
    )
    assert shown["temperature/unit"]["is_static_overridden"] is False


def test_point_1_ids_attributes_first_then_metadata_on_create_and_update(api: Api) -> None:
    t = api.template(
        "thermo",
        attr("temperature", metadata=[{"label": "unit", "type": "meta", "value_type": "string", "static_value": "C"}]),
        attr("serial", "static", "string", static_value="none"),
        attr(
            "position",
            "dynamic",
            "geo:point",
            metadata=[{"label": "datum", "type": "lwm2m", "value_type": "string", "static_value": "WGS84"}],
        ),
    )
    tid = t["id"]
    assert _ids(t) == {"temperature": 1, "serial": 2, "position": 3, "temperature/unit": 4, "position/datum": 5}
    device = api.device(
        "d",
        [tid],
        attrs=[
            {"template_id": str(tid), "id": 2, "label": "serial", "static_value": "sn-1"},
            {"template_id": str(tid), "id": 1, "label": "temperature", "metadata": [{"id": 4, "static_value": "K"}]},
            {"template_id": str(tid), "id": 3, "label": "position", "metadata": [{"id": 5, "static_value": "SAD69"}]},
        ],
    )

    # PUT: keep position and temperature (label and type) with one new meta attribute each, add humidity with
    # metadata, change serial's type (dojot: a new attribute). dojot walks the old attributes by id: temperature
    # queues "scale"; dropping the old serial writes it (6); position queues "precision". Then the new attributes
    # in the body's order (humidity 7, serial 8), the queued "precision" (9), the new attributes' metadata (10).
    body = {
        "label": "thermo",
        "attrs": [
            attr(
                "position",
                "dynamic",
                "geo:point",
                metadata=[
                    {"label": "datum", "type": "lwm2m", "value_type": "string", "static_value": "WGS84"},
                    {"label": "precision", "type": "meta", "value_type": "integer", "static_value": 5},
                ],
            ),
            attr("humidity", metadata=[{"label": "unit", "type": "lwm2m", "value_type": "string"}]),
            attr(
                "temperature",
                metadata=[
                    {"label": "unit", "type": "meta", "value_type": "string", "static_value": "C"},
                    {"label": "scale", "type": "meta", "value_type": "string", "static_value": "linear"},
                ],
            ),
            attr("serial", "dynamic", "string"),
        ],
    }
    updated = api.put(f"/template/{tid}", body)["updated"]
    assert _ids(updated) == {
        "position": 3,
        "position/datum": 5,
        "position/precision": 9,
        "humidity": 7,
        "humidity/unit": 10,
        "temperature": 1,
        "temperature/unit": 4,
        "temperature/scale": 6,
        "serial": 8,
    }
    assert [a["label"] for a in updated["attrs"]] == ["position", "humidity", "temperature", "serial"]

    # The device keeps its overrides of what kept its id; the old serial went with its override.
    shown = _shown(api.get(f"/device/{device}"), tid)
    assert shown["temperature/unit"]["static_value"] == "K" and shown["temperature/unit"]["is_static_overridden"]
    assert shown["position/datum"]["static_value"] == "SAD69" and shown["position/datum"]["is_static_overridden"]
    assert "static_value" not in shown["serial"] and shown["serial"]["is_static_overridden"] is False

    # An attribute kept whose body has no "metadata" keeps its metadata (dojot); an empty list removes them.
    body["attrs"][0] = attr("position", "dynamic", "geo:point")
    body["attrs"][2] = attr("temperature", metadata=[])
    again = api.put(f"/template/{tid}", body)["updated"]
    assert _ids(again) == {k: v for k, v in _ids(updated).items() if not k.startswith("temperature/")}
    shown = _shown(api.get(f"/device/{device}"), tid)
    assert shown["position/datum"]["static_value"] == "SAD69"
    assert "temperature/unit" not in shown

    # Ids keep counting from where they are, attributes and metadata alike.
    nxt = api.template("next", attr("a", metadata=[{"label": "m", "type": "meta", "value_type": "string"}]))
    assert _ids(nxt) == {"a": 11, "a/m": 12}


def test_point_2_unknown_template_of_a_device_is_404(api: Api, settings: Settings) -> None:
    t = api.template("t", attr("temperature"))
    device = api.device("d", [t["id"]])
    before = api.get(f"/device/{device}")
    events = outbox_count(settings.db_url)
    dojot = {"error": "not_found", "message": "No such template: 999", "status": 404}

    assert api.post("/device", {"label": "x", "templates": [999]}, status=404) == dojot
    assert api.post("/device", {"label": "x", "templates": [t["id"], "999", 998]}, status=404) == dojot
    assert api.put(f"/device/{device}", {"label": "x", "templates": [t["id"], 999]}, status=404) == dojot
    assert api.put(f"/device/{device}/template/999", status=404) == dojot
    assert api.get(f"/device/{device}") == before
    assert outbox_count(settings.db_url) == events


def test_point_3_override_without_label_is_400(api: Api, settings: Settings) -> None:
    t = api.template("t", attr("serial", "static", "string", static_value="none"))
    tid, serial = t["id"], t["attrs"][0]["id"]
    device = api.device("d", [tid])
    before = api.get(f"/device/{device}")
    events = outbox_count(settings.db_url)
    dojot = {"error": "invalid", "message": ["missing label attribute"], "status": 400}

    shapes: list[Any] = [
        [{"template_id": str(tid), "id": serial, "static_value": "sn-1"}],  # dojot's list
        {str(tid): [{"id": serial, "static_value": "sn-1"}]},  # the shape GET returns
        [{"template_id": str(tid), "id": serial, "label": "serial"}, {"template_id": "77", "id": 5}],
    ]
    for overrides in shapes:
        assert api.post("/device", {"label": "x", "templates": [tid], "attrs": overrides}, status=400) == dojot
        body = {"label": "d", "templates": [tid], "attrs": overrides}
        assert api.put(f"/device/{device}", body, status=400) == dojot
    assert api.get(f"/device/{device}") == before
    assert outbox_count(settings.db_url) == events

    # With its label the same override is taken.
    ok = [{"template_id": str(tid), "id": serial, "label": "serial", "static_value": "sn-1"}]
    shown = _shown(api.put(f"/device/{device}", {"label": "d", "templates": [tid], "attrs": ok})["device"], tid)
    assert shown["serial"]["static_value"] == "sn-1" and shown["serial"]["is_static_overridden"] is True


def test_point_4_template_in_use_cannot_be_removed(api: Api) -> None:
    t = api.template("t", attr("temperature"))
    free = api.template("free", attr("level"))
    devices = sorted(d["id"] for d in api.post("/device?count=2", {"label": "d", "templates": [t["id"]]})["devices"])
    dojot = {"error": "invalid", "message": IN_USE, "status": 400}
    details = {"devices": devices, "device_count": 2}

    assert api.delete(f"/template/{t['id']}", status=400) == {**dojot, "details": details}
    assert api.delete("/template", status=400) == {**dojot, "details": details}
    assert [x["id"] for x in api.get("/template")["templates"]] == [t["id"], free["id"]]
    api.delete(f"/template/{free['id']}")
    api.delete("/device")
    assert api.delete(f"/template/{t['id']}")["result"] == "ok"


def test_point_5_metadata_take_any_type_attributes_do_not(api: Api) -> None:
    kinds = ["lwm2m", "mapping", "meta", "static", "dojot:custom"]
    metadata = [{"label": f"m{i}", "type": k, "value_type": "string", "static_value": k} for i, k in enumerate(kinds)]
    t = api.template("lwm2m", attr("temperature", metadata=metadata), attr("fw", "actuator", "string"))
    assert [m["type"] for m in t["attrs"][0]["metadata"]] == kinds
    device = api.device("d", [t["id"]])
    shown = api.get(f"/device/{device}")["attrs"][str(t["id"])][0]["metadata"]
    assert [m["type"] for m in shown] == kinds
    body = {"label": "lwm2m", "attrs": [attr("temperature", metadata=[{**metadata[0], "type": "firmware"}])]}
    updated = api.put(f"/template/{t['id']}", body)["updated"]
    assert updated["attrs"][0]["metadata"][0]["type"] == "firmware"

    # An attribute's own type stays one of dojot's documented four; a meta attribute's must be a non-empty string.
    err = api.post("/template", {"label": "x", "attrs": [attr("a", "lwm2m")]}, status=400)
    assert "attrs[0].type must be one of dynamic, static, actuator, meta" in err["message"]
    for bad in ("", 3, "x" * 33):
        bad_meta = [{"label": "m", "type": bad, "value_type": "string"}]
        err = api.post("/template", {"label": "x", "attrs": [attr("a", metadata=bad_meta)]}, status=400)
        assert "attrs[0].metadata[0].type must be a non-empty string" in err["message"], bad


def test_an_attribute_named_twice_in_a_device_is_400(api: Api) -> None:
    template = api.post("/template", THERMOMETER)["template"]
    tid = str(template["id"])
    body = {
        "templates": [template["id"]],
        "label": "twice",
        "attrs": {tid: [{"label": "temperature", "static_value": 1}, {"label": "temperature", "static_value": 2}]},
    }
    out = api.post("/device", body, status=400)
    assert out["message"] == "a device can not have repeated attributes"
    assert api.get("/device")["devices"] == []
