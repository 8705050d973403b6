"""Flows as dojot v0.8.1 stores them (a tab node, ``z``, ``x``, ``y``, ``wires``, the dojot type names and every
field the editor saves), shared by the unit and integration tests."""

from __future__ import annotations

from typing import Any

TAB = "A38da0ec10754c2"


def tab() -> dict[str, Any]:
    return {"id": TAB, "type": "tab", "label": "Fluxo 1"}


def event_in(
    node_id: str, device: str, wires: list[str], publish: bool = True, configure: bool = False
) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "event device in",
        "z": TAB,
        "name": "D1",
        "event_configure": configure,
        "event_publish": publish,
        "device_id": device,
        "x": 126.5,
        "y": 44,
        "wires": [wires],
    }


def device_out(node_id: str, devices: list[str], attrs: str = "output") -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "multi device out",
        "z": TAB,
        "name": "virtual",
        "device_source": "configured",
        "devices_source_dynamic": "",
        "devices_source_dynamicFieldType": "msg",
        "devices_source_configured": devices,
        "attrs": attrs,
        "_devices_loaded": True,
        "x": 422.5,
        "y": 40,
        "wires": [],
    }


def change(node_id: str, rules: list[dict[str, Any]], wires: list[str]) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "change",
        "z": TAB,
        "name": "",
        "rules": rules,
        "action": "",
        "property": "",
        "from": "",
        "to": "",
        "reg": False,
        "x": 300,
        "y": 80,
        "wires": [wires],
    }


def set_rule(prop: str, to: Any, tot: str = "str") -> dict[str, Any]:
    return {"t": "set", "p": prop, "pt": "msg", "to": to, "tot": tot}


def rename_flow(source: str, target: str) -> list[dict[str, Any]]:
    """device-data in -> change (temperature -> output.temp) -> device out to the virtual device ``target``."""
    return [
        tab(),
        event_in("A920a88fb88b6a8", source, ["Ac1"]),
        change("Ac1", [set_rule("output.temp", "payload.data.attrs.temperature", "msg")], ["A2a3e9053e945f"]),
        device_out("A2a3e9053e945f", [target]),
    ]


def kitchen_flow(thermometer: str, alarm: str) -> list[dict[str, Any]]:
    """§10.2: temperature < 40 -> severity 4 "kitchen OK"; otherwise severity 1 "kitchen on fire"."""
    return [
        tab(),
        event_in("in1", thermometer, ["sw1"]),
        {
            "id": "sw1",
            "type": "switch",
            "z": TAB,
            "name": "hot?",
            "property": "payload.data.attrs.temperature",
            "propertyType": "msg",
            "rules": [{"t": "lt", "v": "40", "vt": "num"}, {"t": "gte", "v": "40", "vt": "num"}],
            "checkall": "true",
            "repair": False,
            "outputs": 2,
            "x": 250,
            "y": 60,
            "wires": [["ok"], ["fire"]],
        },
        change("ok", [set_rule("output.message", "kitchen OK"), set_rule("output.severity", "4", "num")], ["out"]),
        change(
            "fire", [set_rule("output.message", "kitchen on fire"), set_rule("output.severity", "1", "num")], ["out"]
        ),
        device_out("out", [alarm]),
    ]


def rain_flow(station: str) -> list[dict[str, Any]]:
    """§12.2.3: cumulative sum of rain over 60 minutes -> switch > 100 -> template -> notification."""
    return [
        tab(),
        event_in("in1", station, ["sum1"]),
        {
            "id": "sum1",
            "type": "cumulative sum",
            "z": TAB,
            "name": "rain 60 min",
            "timePeriod": "60",
            "targetAttribute": "payload.data.attrs.rain",
            "timestamp": "payload.metadata.timestamp",
            "output": "payload.data.attrs.rain60Min",
            "x": 250,
            "y": 60,
            "wires": [["sw1"]],
        },
        {
            "id": "sw1",
            "type": "switch",
            "z": TAB,
            "name": "> 100",
            "property": "payload.data.attrs.rain60Min",
            "propertyType": "msg",
            "rules": [{"t": "gt", "v": "100", "vt": "num"}],
            "checkall": "true",
            "repair": False,
            "outputs": 1,
            "x": 400,
            "y": 60,
            "wires": [["tpl1"]],
        },
        {
            "id": "tpl1",
            "type": "template",
            "z": TAB,
            "name": "",
            "field": "notify",
            "fieldType": "msg",
            "format": "handlebars",
            "syntax": "mustache",
            "template": '{"message": "Rain in the last hour: {{payload.data.attrs.rain60Min}} mm",'
            ' "meta": {"station": "{{payload.data.id}}", "rain": {{payload.data.attrs.rain60Min}}}}',
            "output": "json",
            "x": 550,
            "y": 60,
            "wires": [["n1"]],
        },
        {
            "id": "n1",
            "type": "notification",
            "z": TAB,
            "name": "",
            "msgType": "dynamic",
            "messageDynamic": "notify.message",
            "messageStatic": "",
            "source": "notify.meta",
            "x": 700,
            "y": 60,
            "wires": [],
        },
    ]
