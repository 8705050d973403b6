"""Flows as dojot stores them, the node catalogue and the validation of a flow on save. No I/O.

A flow is dojot's Node-RED JSON array: every element an object with ``id``, ``type``, ``z`` (the tab), ``x``/``y``
(editor position), ``wires`` (one list of target node ids per output) and the node's own fields. The array is
stored exactly as given (a flow exported from dojot is accepted unchanged and given back unchanged); what is
checked is what the engine needs: known node types, unique ids, wires that lead to nodes of the flow, and each
node's required fields.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ondas.errors import Invalid, NotFound

NodeJson = dict[str, Any]


class UnknownFlow(NotFound):
    """404 in dojot's shape: ``{"message": "Unknown flow: <id>", "flow": "<id>"}`` (plus the platform's ``error``)."""

    def __init__(self, flow_id: str) -> None:
        super().__init__(f"Unknown flow: {flow_id}")
        self.flow_id = flow_id

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.kind, "message": self.message, "flow": self.flow_id}


class MissingField(Invalid):
    """400 in dojot's shape: ``{"message": "Missing mandatory field", "field": <name>}``."""

    def __init__(self, name: str) -> None:
        super().__init__("Missing mandatory field")
        self.field = name

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.kind, "message": self.message, "field": self.field}


class InvalidFlow(Invalid):
    """400: the flow cannot run. ``node`` is the id of the node at fault (None for the array itself)."""

    def __init__(self, reason: str, node: str | None = None) -> None:
        where = f"node {node}: " if node is not None else ""
        super().__init__(f"Given flow is invalid: {where}{reason}")
        self.node = node
        self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.kind, "message": self.message, "node": self.node, "reason": self.reason}


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Flow:
    id: str
    name: str
    enabled: bool
    flow: list[NodeJson]
    created: int
    updated: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "enabled": self.enabled,
            "id": self.id,
            "flow": self.flow,
            "created": self.created,
            "updated": self.updated,
        }


@dataclass(frozen=True)
class FlowSpec:
    """What a client sends to create or replace a flow: ``{"name", "enabled", "flow"}``."""

    name: str
    enabled: bool
    flow: list[NodeJson]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> FlowSpec:
        if "flow" not in body or body["flow"] is None:
            raise MissingField("flow")
        nodes = body["flow"]
        if not isinstance(nodes, list):
            raise InvalidFlow("flow must be an array of nodes")
        name = body.get("name", "")
        if name is None:
            name = ""
        if not isinstance(name, str):
            raise InvalidFlow("name must be a string")
        if len(name) > 256:
            raise InvalidFlow("name must be at most 256 characters")
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise InvalidFlow("enabled must be true or false")
        validate_flow(nodes)
        return cls(name=name, enabled=enabled, flow=nodes)


# -- node catalogue ------------------------------------------------------------------------------------------------

Check = Callable[[NodeJson], None]


@dataclass(frozen=True)
class NodeType:
    """A node type of the catalogue. ``entry``: it starts a flow (no inputs); ``implemented``: the engine runs it
    (a known dojot type that is not is accepted on save, so dojot's flows import, and ends its branch with an error
    at run time); ``deprecated`` as in dojot's palette."""

    type: str
    module_id: str
    entry: bool = False
    implemented: bool = True
    deprecated: bool = False
    structural: bool = False  # tab, comment: not executed, no wires
    checks: tuple[Check, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.module_id,
            "name": self.type,
            "module": "dojot",
            "version": "1.0.0",
            "enabled": self.implemented,
            "local": True,
            "types": [self.type],
        }


class _Fault(Exception):
    pass


def _str(node: NodeJson, name: str) -> str:
    value = node.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _Fault(f"field {name} is required")
    return value


def _required(*names: str) -> Check:
    def check(node: NodeJson) -> None:
        for n in names:
            _str(node, n)

    return check


def _one_of(name: str, choices: tuple[str, ...], default: str | None = None) -> Check:
    def check(node: NodeJson) -> None:
        value = node.get(name, default)
        if value not in choices:
            raise _Fault(f"field {name} must be one of {', '.join(choices)}, got {value!r}")

    return check


def _targets(node: NodeJson) -> None:
    """multi device out / multi actuate / device out: where the data goes."""
    source = node.get("device_source", "self")
    if source not in ("self", "configured", "dynamic"):
        raise _Fault(f"field device_source must be one of self, configured, dynamic, got {source!r}")
    if source == "configured":
        configured = node.get("devices_source_configured")
        single = node.get("_device_id")
        ids = [d for d in configured if isinstance(d, str) and d] if isinstance(configured, list) else []
        if not ids and not (isinstance(single, str) and single):
            raise _Fault("device_source is configured but no device is given (devices_source_configured)")
    if source == "dynamic" and not any(
        isinstance(node.get(k), str) and node[k].strip() for k in ("devices_source_dynamic", "device_source_msg")
    ):
        raise _Fault("device_source is dynamic but no property names the devices (devices_source_dynamic)")


CHANGE_ACTIONS = ("set", "change", "delete", "move")
SWITCH_OPERATORS = (
    "eq", "neq", "lt", "lte", "gt", "gte", "btwn", "cont", "regex", "true", "false", "null", "nnull",
    "empty", "nempty", "istype", "hask", "else", "head", "tail", "index", "jsonata_exp",
)  # fmt: skip


def _change_rules(node: NodeJson) -> None:
    rules = node.get("rules")
    if not isinstance(rules, list) or not rules:
        raise _Fault("field rules is required (at least one rule)")
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise _Fault(f"rule {i} must be an object")
        if rule.get("t") not in CHANGE_ACTIONS:
            raise _Fault(f"rule {i}: t must be one of {', '.join(CHANGE_ACTIONS)}, got {rule.get('t')!r}")
        if not isinstance(rule.get("p"), str) or not rule["p"]:
            raise _Fault(f"rule {i}: p (the property) is required")
        if rule["t"] == "move" and (not isinstance(rule.get("to"), str) or not rule["to"]):
            raise _Fault(f"rule {i}: a move needs to (the new property)")
        if rule["t"] == "change" and "from" not in rule:
            raise _Fault(f"rule {i}: a change needs from (what to replace)")


def _switch_rules(node: NodeJson) -> None:
    _str(node, "property")
    rules = node.get("rules")
    if not isinstance(rules, list):
        raise _Fault("field rules must be a list")
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or rule.get("t") not in SWITCH_OPERATORS:
            got = rule.get("t") if isinstance(rule, dict) else rule
            raise _Fault(f"rule {i}: unknown operator {got!r}")
        if rule.get("vt") == "re" or rule["t"] == "regex":
            try:
                re.compile(str(rule.get("v", "")))
            except re.error as exc:
                raise _Fault(f"rule {i}: bad regular expression: {exc}") from exc
    if str(node.get("checkall", "true")) not in ("true", "false"):
        raise _Fault("field checkall must be true or false")


def _template(node: NodeJson) -> None:
    if not isinstance(node.get("template"), str):
        raise _Fault("field template is required")
    _one_of("syntax", ("mustache", "plain"), "mustache")(node)
    _one_of("output", ("str", "json"), "str")(node)


def _notification(node: NodeJson) -> None:
    kind = node.get("msgType")
    if kind is None:  # the first version of the node: a static message_notification
        _str(node, "message_notification")
        return
    if kind == "static":
        _str(node, "messageStatic")
    elif kind == "dynamic":
        _str(node, "messageDynamic")
    else:
        raise _Fault(f"field msgType must be static or dynamic, got {kind!r}")


def _http(node: NodeJson) -> None:
    _one_of("method", ("GET", "POST", "PUT", "DELETE", "PATCH", "use"), "GET")(node)
    _one_of("ret", ("txt", "bin", "obj"), "txt")(node)
    _str(node, "body")
    _str(node, "response")
    url = node.get("url", "")
    if not isinstance(url, str):
        raise _Fault("field url must be a string")
    if "://" in url and not url.strip().startswith("http") and "{{" not in url:
        raise _Fault("field url must be an http or https URL")


def _geofence(node: NodeJson) -> None:
    _one_of("filter", ("inside", "outside"), "inside")(node)
    points = node.get("points")
    if not isinstance(points, list) or len(points) < 3:
        raise _Fault("field points must hold the area's corners (at least 3)")
    for i, p in enumerate(points):
        try:
            lat, lng = float(p["latitude"]), float(p["longitude"])
        except (TypeError, KeyError, ValueError) as exc:
            raise _Fault(f"point {i} needs a numeric latitude and longitude") from exc
        if not (-90 <= lat <= 90 and -180 <= lng <= 180):
            raise _Fault(f"point {i} is not a position on Earth")


def _cumulative_sum(node: NodeJson) -> None:
    _required("targetAttribute", "timestamp", "output")(node)
    try:
        period = float(node.get("timePeriod"))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise _Fault("field timePeriod (minutes) must be a number") from exc
    if not period > 0:
        raise _Fault("field timePeriod (minutes) must be greater than 0")


def _event_flags(*names: str) -> Check:
    def check(node: NodeJson) -> None:
        for n in names:
            value = node.get(n, False)
            if not isinstance(value, bool):
                raise _Fault(f"field {n} must be true or false")

    return check


def _template_in(node: NodeJson) -> None:
    if template_of(node) is None:
        raise _Fault("field device_template (the template that triggers the flow) is required")


def template_of(node: NodeJson) -> str | None:
    """The template id a deprecated ``template in`` node names (dojot stored it under a few names)."""
    for key in ("device_template_id", "template_id"):
        value = node.get(key)
        if isinstance(value, str | int) and str(value):
            return str(value)
    tpl = node.get("device_template")
    if isinstance(tpl, dict) and tpl.get("id") not in (None, ""):
        return str(tpl["id"])
    if isinstance(tpl, str | int) and str(tpl):
        return str(tpl)
    return None


CATALOGUE: dict[str, NodeType] = {
    t.type: t
    for t in (
        NodeType("tab", "node-red/tab", structural=True),
        NodeType("comment", "node-red/comment", structural=True),
        NodeType(
            "event device in",
            "dojot/event-device-in",
            entry=True,
            checks=(_required("device_id"), _event_flags("event_configure", "event_publish")),
        ),
        NodeType(
            "event template in",
            "dojot/event-template-in",
            entry=True,
            checks=(
                _required("template_id"),
                _event_flags("event_create", "event_update", "event_remove", "event_configure", "event_publish"),
            ),
        ),
        NodeType("device in", "dojot/device-in", entry=True, deprecated=True, checks=(_required("_device_id"),)),
        NodeType("template in", "dojot/template-in", entry=True, deprecated=True, checks=(_template_in,)),
        NodeType("change", "dojot/change", checks=(_change_rules,)),
        NodeType("switch", "dojot/switch", checks=(_switch_rules,)),
        NodeType("template", "dojot/template", checks=(_template,)),
        NodeType("multi device out", "dojot/multi-device-out", checks=(_required("attrs"), _targets)),
        NodeType("device out", "dojot/device-out", deprecated=True, checks=(_required("attrs"), _targets)),
        NodeType("notification", "dojot/notification", checks=(_notification,)),
        NodeType("http", "dojot/http", checks=(_http,)),
        NodeType("geofence", "dojot/geofence", checks=(_geofence,)),
        NodeType(
            "get context",
            "dojot/get-context",
            checks=(_required("contextName", "contextContent"), _one_of("contextLayer", ("tenant", "flow"), "tenant")),
        ),
        NodeType("merge data", "dojot/merge-data", checks=(_required("targetData", "mergedData"),)),
        NodeType("cumulative sum", "dojot/cumulative-sum", checks=(_cumulative_sum,)),
        NodeType(
            "publish-ftp",
            "dojot/publish-ftp",
            checks=(
                _required("filename", "filecontent"),
                _one_of("encode", ("ascii", "base64", "hex", "utf16le", "utf8", "binary"), "base64"),
            ),
        ),
        NodeType("multi actuate", "dojot/multi-actuate", checks=(_required("attrs"), _targets)),
        NodeType("actuate", "dojot/actuate", deprecated=True, checks=(_required("attrs"), _targets)),
        NodeType("ftp", "dojot/ftp", implemented=False),
        NodeType("cron", "dojot/cron", implemented=False),
        NodeType("cron-batch", "dojot/cron-batch", implemented=False),
    )
}

MAX_NODES = 2000


def referenced_devices(nodes: list[NodeJson]) -> list[tuple[str, str]]:
    """(node id, device id) of every device a flow names: the devices its entry nodes listen to and the devices
    its output nodes write to."""
    found: list[tuple[str, str]] = []
    for node in nodes:
        kind = node.get("type")
        ids: list[Any] = []
        if kind == "event device in":
            ids = [node.get("device_id")]
        elif kind == "device in":
            ids = [node.get("_device_id")]
        elif kind in ("multi device out", "multi actuate", "device out", "actuate"):
            if node.get("device_source", "self") == "configured":
                configured = node.get("devices_source_configured")
                ids = list(configured) if isinstance(configured, list) else []
                ids.append(node.get("_device_id"))
        for device_id in ids:
            if isinstance(device_id, str) and device_id and (node["id"], device_id) not in found:
                found.append((node["id"], device_id))
    return found


def validate_flow(nodes: list[Any]) -> None:
    """Raise :class:`InvalidFlow` naming the first node at fault."""
    if len(nodes) > MAX_NODES:
        raise InvalidFlow(f"a flow has at most {MAX_NODES} nodes")
    ids: set[str] = set()
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise InvalidFlow(f"element {i} of the flow is not a node object")
        node_id = node.get("id")
        if not isinstance(node_id, str) or not node_id:
            raise InvalidFlow(f"element {i} of the flow has no id")
        if node_id in ids:
            raise InvalidFlow("duplicate node id", node_id)
        ids.add(node_id)
    by_id = {n["id"]: n for n in nodes}
    for node in nodes:
        node_id = node["id"]
        kind = CATALOGUE.get(node.get("type"))
        if kind is None:
            raise InvalidFlow(f"unknown node type {node.get('type')!r}", node_id)
        wires = node.get("wires", [])
        if not isinstance(wires, list) or not all(isinstance(port, list) for port in wires):
            raise InvalidFlow("wires must be a list of lists of node ids", node_id)
        for port in wires:
            for target in port:
                if target not in ids:
                    raise InvalidFlow(f"wire to unknown node {target!r}", node_id)
                target_kind = CATALOGUE.get(by_id[target].get("type"))
                if target_kind is None:
                    raise InvalidFlow(f"unknown node type {by_id[target].get('type')!r}", target)
                if target_kind.entry or target_kind.structural:
                    raise InvalidFlow(f"wire to node {target!r}, which takes no input", node_id)
        for check in kind.checks:
            try:
                check(node)
            except _Fault as exc:
                raise InvalidFlow(str(exc), node_id) from exc
