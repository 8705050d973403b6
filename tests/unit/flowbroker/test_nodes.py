"""Each node's documented behaviour, error cases included (in process; the engine and Kafka are tested apart)."""

from __future__ import annotations

from typing import Any

import pytest

from flowbroker.nodes import context, function, location, output
from flowbroker.nodes.base import NodeError, get_path, path_parts, set_path
from tests.unit.flowbroker.helpers import DictContexts, ListOutputs, run_context

pytestmark = pytest.mark.unit


def event_msg(attrs: dict[str, Any], device: str = "9face8", ts: int = 1623163659936) -> dict[str, Any]:
    return {
        "payload": {
            "data": {"attrs": attrs, "id": device},
            "metadata": {"timestamp": ts, "tenant": "acme"},
            "event": "publish",
        }
    }


# -- paths ---------------------------------------------------------------------------------------------------------


def test_paths() -> None:
    assert path_parts('msg.payload.data["a b"][2].c') == ["payload", "data", "a b", 2, "c"]
    msg: dict[str, Any] = {}
    set_path(msg, "msg.output.list[1]", "x")
    assert msg == {"output": {"list": [None, "x"]}}
    assert get_path(msg, "output.list.1") == "x"
    assert get_path(msg, "output.missing.deeper", "d") == "d"


# -- change --------------------------------------------------------------------------------------------------------


def _change(rules: list[dict[str, Any]], msg: dict[str, Any]) -> dict[str, Any]:
    (out,) = function.change({"id": "c", "rules": rules}, msg, run_context())
    assert out is not None
    return out


def test_change_set_from_message_and_typed_values() -> None:
    out = _change(
        [
            {"t": "set", "p": "output.temp", "pt": "msg", "to": "payload.data.attrs.temperature", "tot": "msg"},
            {"t": "set", "p": "output.severity", "pt": "msg", "to": "4", "tot": "num"},
            {"t": "set", "p": "output.on", "pt": "msg", "to": "true", "tot": "bool"},
            {"t": "set", "p": "output.obj", "pt": "msg", "to": '{"a": [1]}', "tot": "json"},
            {"t": "set", "p": "output.msg", "pt": "msg", "to": "kitchen OK", "tot": "str"},
            {"t": "set", "p": "output.when", "pt": "msg", "to": "", "tot": "date"},
        ],
        event_msg({"temperature": 41.5}),
    )
    assert out["output"] == {
        "temp": 41.5,
        "severity": 4,
        "on": True,
        "obj": {"a": [1]},
        "msg": "kitchen OK",
        "when": 1_700_000_000_000,
    }


def test_change_copies_values_not_references() -> None:
    msg = event_msg({"pos": {"lat": 1}})
    out = _change([{"t": "set", "p": "copy", "pt": "msg", "to": "payload.data.attrs.pos", "tot": "msg"}], msg)
    out["copy"]["lat"] = 2
    assert out["payload"]["data"]["attrs"]["pos"] == {"lat": 1}


def test_change_replace_delete_move() -> None:
    msg = {"payload": {"text": "the cat sat", "code": "A1", "n": 5, "gone": 1, "old": "v"}}
    out = _change(
        [
            {"t": "change", "p": "payload.text", "pt": "msg", "from": "cat", "fromt": "str", "to": "dog", "tot": "str"},
            {
                "t": "change",
                "p": "payload.code",
                "pt": "msg",
                "from": "([A-Z])(\\d)",
                "fromt": "re",
                "to": "$2$1",
                "tot": "str",
            },
            {"t": "change", "p": "payload.n", "pt": "msg", "from": "5", "fromt": "num", "to": "six", "tot": "str"},
            {"t": "delete", "p": "payload.gone", "pt": "msg"},
            {"t": "move", "p": "payload.old", "pt": "msg", "to": "payload.new", "tot": "msg"},
        ],
        msg,
    )
    assert out["payload"] == {"text": "the dog sat", "code": "1A", "n": "six", "new": "v"}


def test_change_errors() -> None:
    with pytest.raises(NodeError):
        _change([{"t": "set", "p": "x", "pt": "msg", "to": "{bad", "tot": "json"}], {})
    with pytest.raises(NodeError):
        _change([{"t": "set", "p": "x", "pt": "msg", "to": "abc", "tot": "num"}], {})
    with pytest.raises(NodeError):
        _change([{"t": "set", "p": "x", "pt": "msg", "to": "$.a", "tot": "jsonata"}], {})


# -- switch --------------------------------------------------------------------------------------------------------


def _switch(rules: list[dict[str, Any]], value: Any, checkall: str = "true") -> list[bool]:
    node = {
        "id": "s",
        "property": "payload.v",
        "propertyType": "msg",
        "rules": rules,
        "checkall": checkall,
        "wires": [[] for _ in rules],
    }
    return [m is not None for m in function.switch(node, {"payload": {"v": value, "other": 3}}, run_context())]


@pytest.mark.parametrize(
    ("rule", "value", "hit"),
    [
        ({"t": "eq", "v": "5", "vt": "num"}, 5, True),
        ({"t": "eq", "v": "5", "vt": "str"}, 5, True),  # JavaScript ==
        ({"t": "eq", "v": "on", "vt": "str"}, "off", False),
        ({"t": "neq", "v": "on", "vt": "str"}, "off", True),
        ({"t": "lt", "v": "40", "vt": "num"}, 39.9, True),
        ({"t": "lte", "v": "40", "vt": "num"}, 40, True),
        ({"t": "gt", "v": "100", "vt": "num"}, 100, False),
        ({"t": "gt", "v": "100", "vt": "num"}, "101", True),
        ({"t": "gte", "v": "payload.other", "vt": "msg"}, 3, True),
        ({"t": "btwn", "v": "1", "vt": "num", "v2": "10", "v2t": "num"}, 10, True),
        ({"t": "btwn", "v": "10", "vt": "num", "v2": "1", "v2t": "num"}, 5, True),
        ({"t": "btwn", "v": "1", "vt": "num", "v2": "10", "v2t": "num"}, 11, False),
        ({"t": "cont", "v": "fire", "vt": "str"}, "kitchen on fire", True),
        ({"t": "regex", "v": "^ab+c$", "vt": "str", "case": True}, "ABBC", True),
        ({"t": "regex", "v": "^ab+c$", "vt": "str", "case": False}, "ABBC", False),
        ({"t": "true"}, True, True),
        ({"t": "false"}, 0, False),
        ({"t": "null"}, None, True),
        ({"t": "nnull"}, 0, True),
        ({"t": "empty"}, "", True),
        ({"t": "nempty"}, [1], True),
        ({"t": "istype", "v": "number", "vt": "number"}, 1.5, True),
        ({"t": "istype", "v": "string", "vt": "string"}, 1.5, False),
        ({"t": "hask", "v": "a", "vt": "str"}, {"a": 1}, True),
        ({"t": "lt", "v": "abc", "vt": "num"}, 1, None),
    ],
)
def test_switch_operators(rule: dict[str, Any], value: Any, hit: bool | None) -> None:
    if hit is None:
        with pytest.raises(NodeError):
            _switch([rule], value)
    else:
        assert _switch([rule], value) == [hit]


def test_switch_check_all_or_stop_after_first_match() -> None:
    rules = [{"t": "gt", "v": "1", "vt": "num"}, {"t": "gt", "v": "2", "vt": "num"}, {"t": "else"}]
    assert _switch(rules, 5, checkall="true") == [True, True, False]
    assert _switch(rules, 5, checkall="false") == [True, False, False]
    assert _switch(rules, 0, checkall="true") == [False, False, True]


def test_switch_on_missing_property_matches_null_only() -> None:
    node = {
        "id": "s",
        "property": "payload.none",
        "rules": [{"t": "null"}, {"t": "eq", "v": "1", "vt": "num"}],
        "checkall": "true",
        "wires": [[], []],
    }
    assert [m is not None for m in function.switch(node, {"payload": {}}, run_context())] == [True, False]


# -- template ------------------------------------------------------------------------------------------------------


def _template(template: str, msg: dict[str, Any], out: str = "str", syntax: str = "mustache") -> Any:
    node = {"id": "t", "field": "result", "fieldType": "msg", "syntax": syntax, "template": template, "output": out}
    (res,) = function.template(node, msg, run_context())
    assert res is not None
    return res["result"]


def test_template_mustache_string_and_json() -> None:
    msg = event_msg({"temperature": 10.0, "on": False, "name": "<kitchen>"})
    assert _template("Sample message {{payload.data.attrs.temperature}}", msg) == "Sample message 10"
    assert _template('{"on": {{payload.data.attrs.on}}, "n": "{{{payload.data.attrs.name}}}"}', msg, "json") == {
        "on": False,
        "n": "<kitchen>",
    }
    assert _template("{{payload.data.attrs.name}}", msg) == "&lt;kitchen&gt;"
    section = "{{#payload.data.attrs.on}}yes{{/payload.data.attrs.on}}"
    assert _template(section + "{{^payload.data.attrs.on}}no{{/payload.data.attrs.on}}", msg) == "no"
    assert _template("{{missing}}x", msg) == "x"
    assert _template("{{not rendered}}", msg, syntax="plain") == "{{not rendered}}"


def test_template_errors() -> None:
    with pytest.raises(NodeError, match="syntax"):
        _template("{{#open}} never closed", {})
    with pytest.raises(NodeError, match="not JSON"):
        _template("{not json", {}, "json")


# -- outputs -------------------------------------------------------------------------------------------------------


def test_multi_device_out_writes_device_data_per_target() -> None:
    outs = ListOutputs()
    ctx = run_context(outs)
    node = {
        "id": "o",
        "type": "multi device out",
        "device_source": "configured",
        "devices_source_configured": ["abc123", "def456", "abc123"],
        "attrs": "output",
    }
    assert output.device_out(node, {"output": {"severity": 1}}, ctx) == []
    assert [(s, k) for s, k, _, _ in outs.sent] == [("device-data", "abc123"), ("device-data", "def456")]
    assert outs.sent[0][2] == {
        "attrs": {"severity": 1},
        "metadata": {"timestamp": 1_700_000_000_000, "tenant": "acme", "deviceid": "abc123"},
    }
    headers = dict(outs.sent[0][3])
    assert headers["ondas-flow"] == "flow1"
    assert headers["ondas-flow-generation"] == "1"
    assert headers["ondas-flow-output-id"] == "flow1:o:t.device-data:0:1:0"  # deterministic: same on redelivery


def test_device_out_self_dynamic_and_errors() -> None:
    outs = ListOutputs()
    ctx = run_context(outs, device_id="9face8")
    output.device_out({"id": "o", "device_source": "self", "attrs": "payload"}, {"payload": {"a": 1}}, ctx)
    output.device_out(
        {"id": "o", "device_source": "dynamic", "devices_source_dynamic": "list", "attrs": "payload"},
        {"payload": {"a": 1}, "list": ["d1", "d2"]},
        ctx,
    )
    assert [k for _, k, _, _ in outs.sent] == ["9face8", "d1", "d2"]
    with pytest.raises(NodeError, match="not an object"):
        output.device_out({"id": "o", "device_source": "self", "attrs": "payload.x"}, {"payload": {}}, ctx)
    with pytest.raises(NodeError, match="target devices"):
        output.device_out(
            {"id": "o", "device_source": "dynamic", "devices_source_dynamic": "none", "attrs": "p"},
            {"p": {"a": 1}},
            ctx,
        )
    # deprecated device out: a configured device in _device_id
    old = {"id": "o", "type": "device out", "device_source": "configured", "_device_id": "e1", "attrs": "p"}
    output.device_out(old, {"p": {"a": 1}}, ctx)
    assert outs.sent[-1][1] == "e1"


def test_notification_dynamic_static_and_errors() -> None:
    outs = ListOutputs()
    ctx = run_context(outs)
    msg = {"n": {"text": "Rain!", "meta": {"station": "s1"}}}
    node = {"id": "n", "msgType": "dynamic", "messageDynamic": "n.text", "source": "n.meta"}
    assert output.notification(node, msg, ctx) == []
    subject, _, body, _ = outs.sent[0]
    assert subject == "dojot.notifications"
    assert body["message"] == "Rain!"
    assert body["metaAttrsFilter"] == {"station": "s1", "shouldPersist": True}
    assert body["subject"] == "user_notification"
    assert body["timestamp"] == 1_700_000_000_000
    output.notification({"id": "n", "msgType": "static", "messageStatic": "static text"}, {}, ctx)
    assert outs.sent[1][2]["message"] == "static text"
    with pytest.raises(NodeError, match="message must be defined"):
        output.notification({"id": "n", "msgType": "dynamic", "messageDynamic": "nothing"}, {}, ctx)
    with pytest.raises(NodeError, match="metadata must be an object"):
        output.notification({"id": "n", "msgType": "static", "messageStatic": "x", "source": "l"}, {"l": [1]}, ctx)


def test_publish_ftp_message() -> None:
    outs = ListOutputs()
    node = {"id": "f", "encode": "base64", "filename": "file.name", "filecontent": "file.content"}
    output.publish_ftp(node, {"file": {"name": "a.jpg", "content": "AAEC"}}, run_context(outs))
    subject, _, body, _ = outs.sent[0]
    assert subject == "dojot.ftp"
    assert body["data"] == {"filename": "a.jpg", "encoding": "base64", "content": "AAEC"}
    assert body["metadata"]["service"] == "flowbroker"
    assert body["metadata"]["contentType"] == "application/vnd.dojot.ftp+json"
    with pytest.raises(NodeError):
        output.publish_ftp(node, {"file": {"name": 3, "content": ""}}, run_context(outs))


# -- geofence ------------------------------------------------------------------------------------------------------

AREA = [
    {"latitude": -22.80, "longitude": -47.30},
    {"latitude": -22.80, "longitude": -47.20},
    {"latitude": -22.85, "longitude": -47.20},
    {"latitude": -22.85, "longitude": -47.30},
]


def test_geofence_inside_and_outside() -> None:
    inside = {"id": "g", "name": "in area", "filter": "inside", "points": AREA}
    outside = {"id": "g2", "filter": "outside", "points": AREA}
    car_in = {"payload": {"position": "-22.820156, -47.2682535"}}
    car_out = {"payload": {"position": "0,0"}}
    assert location.geofence(inside, car_in, run_context()) == [car_in]
    assert car_in["location"] == {"isat": ["in area"]}
    assert location.geofence(inside, car_out, run_context()) == []
    assert location.geofence(outside, car_out, run_context()) == [car_out]
    assert location.geofence(outside, {"payload": {"position": "-22.82,-47.25"}}, run_context()) == []
    # an event-in message: the position is among payload.data.attrs
    assert location.geofence(inside, event_msg({"position": "-22.82,-47.25"}), run_context()) != []


def test_geofence_without_position_is_an_error() -> None:
    with pytest.raises(NodeError, match="no geographic position"):
        location.geofence({"id": "g", "filter": "inside", "points": AREA}, {"payload": {"t": 1}}, run_context())


# -- context nodes -------------------------------------------------------------------------------------------------


def _sum(contexts: DictContexts, rain: Any, ts: int, message_id: str) -> Any:
    node = {
        "id": "sum1",
        "timePeriod": "60",
        "targetAttribute": "payload.data.attrs.rain",
        "timestamp": "payload.metadata.timestamp",
        "output": "payload.data.attrs.rain60Min",
    }
    (out,) = context.cumulative_sum(
        node, event_msg({"rain": rain}, ts=ts), run_context(contexts=contexts, message_id=message_id)
    )
    assert out is not None
    return out["payload"]["data"]["attrs"]["rain60Min"]


def test_cumulative_sum_window_and_redelivery() -> None:
    contexts = DictContexts()
    minute = 60_000
    assert _sum(contexts, 40, 0, "m1") == 40
    assert _sum(contexts, 30, 10 * minute, "m2") == 70
    assert _sum(contexts, 30, 10 * minute, "m2") == 70  # the same message again: not added twice
    assert _sum(contexts, 35, 50 * minute, "m3") == 105
    assert _sum(contexts, 5, 61 * minute, "m4") == 70  # the first (minute 0) left the 60 minute window
    with pytest.raises(NodeError, match="messy time"):
        _sum(contexts, 1, 20 * minute, "m5")
    with pytest.raises(NodeError, match="target attribute"):
        _sum(contexts, "lots", 70 * minute, "m6")


def test_merge_data_and_get_context() -> None:
    contexts = DictContexts()
    node = {"id": "m", "targetData": "payload.data.attrs", "mergedData": "merged"}
    ctx = run_context(contexts=contexts)
    (a,) = context.merge_data(node, event_msg({"t": 1, "nested": {"x": 1}}), ctx)
    (b,) = context.merge_data(node, event_msg({"h": 2, "nested": {"y": 2}}), ctx)
    assert a is not None and b is not None
    assert b["merged"] == {"t": 1, "h": 2, "nested": {"x": 1, "y": 2}}
    with pytest.raises(NodeError):
        context.merge_data(node, {"payload": {}}, ctx)
    contexts.values[ctx.context_key("tenant", "limits")] = {"max": 9}
    contexts.values[ctx.context_key("flow", "limits")] = {"max": 3}
    get = {
        "id": "g",
        "contextLayer": "tenant",
        "contextName": "limits",
        "contextNameType": "str",
        "contextContent": "ctx",
    }
    (c,) = context.get_context(get, {}, ctx)
    assert c is not None and c["ctx"] == {"max": 9}
    (d,) = context.get_context({**get, "contextLayer": "flow"}, {}, ctx)
    assert d is not None and d["ctx"] == {"max": 3}
    (e,) = context.get_context({**get, "contextName": "which", "contextNameType": "msg"}, {"which": "limits"}, ctx)
    assert e is not None and e["ctx"] == {"max": 9}


class RecordingActuator:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def actuate(self, tenant: str, device_id: str, attrs: dict[str, Any]) -> None:
        if device_id == "refused":
            raise NodeError("the device manager refused the actuation of refused")
        self.calls.append((tenant, device_id, attrs))


def test_multi_actuate_and_deprecated_actuate() -> None:
    act = RecordingActuator()
    ctx = run_context()
    ctx.actuator = act
    node = {
        "id": "a",
        "type": "multi actuate",
        "device_source": "configured",
        "devices_source_configured": ["lamp1", "lamp2"],
        "attrs": "cmd",
    }
    assert output.actuate(node, {"cmd": {"light": "off"}}, ctx) == []
    old = {"id": "b", "type": "actuate", "device_source": "dynamic", "device_source_msg": "who", "attrs": "cmd"}
    output.actuate(old, {"cmd": {"light": "on"}, "who": "lamp3"}, ctx)
    output.actuate({"id": "c", "type": "actuate", "device_source": "self", "attrs": "cmd"}, {"cmd": {"x": 1}}, ctx)
    assert act.calls == [
        ("acme", "lamp1", {"light": "off"}),
        ("acme", "lamp2", {"light": "off"}),
        ("acme", "lamp3", {"light": "on"}),
        ("acme", "9face8", {"x": 1}),
    ]
    with pytest.raises(NodeError, match="refused"):
        output.actuate({**node, "devices_source_configured": ["refused"]}, {"cmd": {"a": 1}}, ctx)
    with pytest.raises(NodeError, match="not an object"):
        output.actuate(node, {"cmd": "off"}, ctx)
    with pytest.raises(NodeError, match="not configured"):
        output.actuate(node, {"cmd": {"a": 1}}, run_context())
