"""The engine in process: entry matching, wiring, isolation of a failing node, hop limits."""

from __future__ import annotations

from typing import Any

import pytest

from flowbroker.engine import NODE_ERRORS, CompiledFlow, Device, Engine, Incoming, entry_message
from flowbroker.models import Flow, validate_flow
from tests.unit.flowbroker import flows
from tests.unit.flowbroker.helpers import DictContexts, ListOutputs, NoHttp

pytestmark = pytest.mark.unit


def compiled(nodes: list[dict[str, Any]], flow_id: str = "f1") -> CompiledFlow:
    validate_flow(nodes)
    return CompiledFlow.of("acme", Flow(id=flow_id, name="", enabled=True, flow=nodes, created=0, updated=0))


def data(device: str, attrs: dict[str, Any], offset: int = 1, generation: int = 0, ts: int = 1000) -> Incoming:
    return Incoming(
        tenant="acme",
        device_id=device,
        kind="publish",
        attrs=attrs,
        timestamp=ts,
        message_id=f"acme.device-data:0:{offset}",
        generation=generation,
    )


def engine(**kw: Any) -> Engine:
    return Engine(DictContexts(), NoHttp(), clock=lambda: 5, **kw)


def test_kitchen_alarm() -> None:
    flow = compiled(flows.kitchen_flow("th1", "alarm"))
    outs = ListOutputs()
    e = engine()
    assert e.run(flow, data("th1", {"temperature": 25}), None, outs)
    assert e.run(flow, data("th1", {"temperature": 45}, offset=2), None, outs)
    assert not e.run(flow, data("other", {"temperature": 45}), None, outs)
    assert [(s, k, v["attrs"]) for s, k, v, _ in outs.sent] == [
        ("device-data", "alarm", {"message": "kitchen OK", "severity": 4}),
        ("device-data", "alarm", {"message": "kitchen on fire", "severity": 1}),
    ]


def test_values_written_to_a_device_in_one_millisecond_keep_their_order() -> None:
    """The clock stands still (one batch in one millisecond): each value a flow writes to a device is stamped
    later than the last one written there, so history (ordered by the stamp) shows them in order."""
    flow = compiled(flows.kitchen_flow("th1", "alarm"))
    outs = ListOutputs()
    e = engine()
    for offset, t in enumerate((25, 45, 39, 20), start=1):
        assert e.run(flow, data("th1", {"temperature": t}, offset=offset), None, outs)
    other = compiled(flows.rename_flow("th1", "virt"), flow_id="f2")
    assert e.run(other, data("th1", {"temperature": 1}, offset=9), None, outs)
    stamps = [(k, v["metadata"]["timestamp"]) for _, k, v, _ in outs.sent]
    assert stamps == [("alarm", 5), ("alarm", 6), ("alarm", 7), ("alarm", 8), ("virt", 5)]


def test_event_in_message_shape_with_static_attrs() -> None:
    node = flows.event_in("in", "9face8", [], publish=True, configure=True)
    device = Device("9face8", ("1",), {"static_example": "static_example_value"})
    msg = entry_message(node, data("9face8", {"temperature": 10}, ts=1623163659936), device)
    assert msg == {
        "payload": {
            "data": {"attrs": {"static_example": "static_example_value", "temperature": 10}, "id": "9face8"},
            "metadata": {"tenant": "acme", "timestamp": 1623163659936},
            "event": "publish",
        }
    }
    configure = Incoming(
        tenant="acme", device_id="9face8", kind="configure", attrs={"fan": 1}, timestamp=7, message_id="m"
    )
    out = entry_message(node, configure, device)
    assert out is not None and out["payload"]["event"] == "configure"
    assert entry_message({**node, "event_configure": False}, configure, device) is None


def test_template_entries_and_deprecated_device_in() -> None:
    device = Device("d1", ("7", "8"), {"model": "m1"})
    tpl = {
        "id": "t",
        "type": "event template in",
        "template_id": "8",
        "event_create": True,
        "event_publish": True,
        "wires": [[]],
    }
    assert entry_message(tpl, data("d1", {"a": 1}), device) is not None
    assert entry_message({**tpl, "template_id": "9"}, data("d1", {"a": 1}), device) is None
    created = Incoming(
        tenant="acme",
        device_id="d1",
        kind="create",
        attrs={},
        timestamp=None,
        message_id="m",
        device_event={
            "id": "d1",
            "label": "x",
            "templates": [7, 8],
            "attrs": {"7": [{"label": "model", "type": "static", "static_value": "m1"}]},
        },
    )
    msg = entry_message(tpl, created, device)
    assert msg is not None
    assert msg["payload"]["event"] == "create"
    assert msg["payload"]["data"]["attrs"]["model"]["static_value"] == "m1"  # keyed by label, as dojot's node
    old = {"id": "o", "type": "device in", "_device_id": "d1", "wires": [[]]}
    assert entry_message(old, data("d1", {"a": 1}), device) == {"payload": {"model": "m1", "a": 1}}
    old_tpl = {"id": "o", "type": "template in", "device_template": {"id": 7}, "wires": [[]]}
    assert entry_message(old_tpl, data("d1", {"a": 1}), device) is not None


def test_failing_node_ends_its_branch_only() -> None:
    nodes = [
        flows.tab(),
        flows.event_in("in", "d1", ["bad", "good"]),
        {
            "id": "bad",
            "type": "template",
            "syntax": "mustache",
            "template": "{{#x}}",
            "field": "p",
            "output": "str",
            "wires": [["out"]],
        },
        flows.change("good", [flows.set_rule("output.v", "payload.data.attrs.v", "msg")], ["out"]),
        flows.device_out("out", ["virt"]),
    ]
    flow = compiled(nodes, "iso")
    outs = ListOutputs()
    before = NODE_ERRORS.labels("acme", "iso", "bad", "template")._value.get()
    assert engine().run(flow, data("d1", {"v": 3}), None, outs)
    assert [v["attrs"] for _, _, v, _ in outs.sent] == [{"v": 3}]
    assert NODE_ERRORS.labels("acme", "iso", "bad", "template")._value.get() == before + 1


def test_branches_get_copies() -> None:
    nodes = [
        flows.tab(),
        flows.event_in("in", "d1", ["a", "b"]),
        flows.change("a", [flows.set_rule("output.v", "A")], ["out"]),
        flows.change("b", [flows.set_rule("output.v", "B")], ["out"]),
        flows.device_out("out", ["virt"]),
    ]
    outs = ListOutputs()
    engine().run(compiled(nodes), data("d1", {}), None, outs)
    assert sorted(v["attrs"]["v"] for _, _, v, _ in outs.sent) == ["A", "B"]


def test_loop_inside_a_flow_is_stopped_by_the_hop_limit() -> None:
    nodes = [
        flows.tab(),
        flows.event_in("in", "d1", ["a"]),
        flows.change("a", [flows.set_rule("n", "1", "num")], ["b"]),
        flows.change("b", [flows.set_rule("n", "2", "num")], ["a", "out"]),
        flows.device_out("out", ["virt"], attrs="payload.data.attrs"),
    ]
    outs = ListOutputs()
    assert engine(max_hops=50).run(compiled(nodes), data("d1", {"x": 1}), None, outs)
    assert 0 < len(outs.sent) <= 25


def test_device_data_produced_by_flows_too_often_is_stopped() -> None:
    # a device out writing to the device the flow listens to: each generation is counted in the header
    nodes = flows.rename_flow("d1", "d1")
    outs = ListOutputs()
    e = engine(max_generations=3)
    assert e.run(compiled(nodes), data("d1", {"temperature": 1}, generation=2), None, outs)
    assert dict(outs.sent[0][3])["ondas-flow-generation"] == "3"
    assert e.run(compiled(nodes), data("d1", {"temperature": 1}, generation=3), None, outs)
    assert len(outs.sent) == 1


def test_unimplemented_node_fails_its_branch() -> None:
    nodes = [flows.tab(), flows.event_in("in", "d1", ["cr"]), {"id": "cr", "type": "cron", "wires": [[]]}]
    assert engine().run(compiled(nodes, "cronflow"), data("d1", {}), None, ListOutputs())
    assert NODE_ERRORS.labels("acme", "cronflow", "cr", "cron")._value.get() == 1
