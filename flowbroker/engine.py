"""The execution engine: which flows a device message or device event starts, and running it through a flow's
nodes. No Kafka here (consumers.py feeds it; events.py takes its outputs).

A message runs through every enabled flow of its tenant whose entry node matches it. In a flow, each node's result
goes to the nodes wired to that output (a copy each when there are several). A node that fails (any exception)
ends that branch only: the failure is counted per flow and node and logged with the tenant, flow and node ids; the
other branches, flows and messages go on. ``max_hops`` node runs per message and flow stop a flow that loops
inside itself; ``max_generations`` stops device data that flows keep feeding back to themselves (a device out
writing to a device the flow listens to), counted from the ``ondas-flow-generation`` header.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from flowbroker.models import CATALOGUE, Flow, template_of
from flowbroker.nodes import context, function, location, output, request
from flowbroker.nodes.base import Actuator, ContextStore, Handler, HttpClient, Msg, NodeJson, Outputs, RunContext, clone
from ondas.stamping import DeviceClock

log = logging.getLogger("flowbroker.engine")

HANDLERS: dict[str, Handler] = {
    "change": function.change,
    "switch": function.switch,
    "template": function.template,
    "multi device out": output.device_out,
    "device out": output.device_out,
    "notification": output.notification,
    "multi actuate": output.actuate,
    "actuate": output.actuate,
    "publish-ftp": output.publish_ftp,
    "http": request.http,
    "geofence": location.geofence,
    "get context": context.get_context,
    "merge data": context.merge_data,
    "cumulative sum": context.cumulative_sum,
}

MESSAGES_IN = Counter("flowbroker_messages_in_total", "Messages that started a flow", ["tenant", "flow"])
NODE_ERRORS = Counter(
    "flowbroker_node_errors_total", "Node failures (the branch ended there)", ["tenant", "flow", "node", "type"]
)
LOOPS_STOPPED = Counter("flowbroker_loops_stopped_total", "Messages stopped by a hop limit", ["tenant", "flow", "kind"])


@dataclass(frozen=True)
class Device:
    """What the engine knows of a device: its templates and static attribute values (from the device events)."""

    id: str
    templates: tuple[str, ...] = ()
    static_attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Incoming:
    """A message from Kafka as the engine sees it. ``kind``: ``publish`` (device-data) or a device event kind
    (``create``, ``update``, ``remove``, ``configure``)."""

    tenant: str
    device_id: str
    kind: str
    attrs: dict[str, Any]
    timestamp: int | None
    message_id: str
    generation: int = 0
    device_event: dict[str, Any] | None = None  # the event's data (device events)
    source_flow: str | None = None  # the flow that produced this device data, if one did


@dataclass(frozen=True)
class CompiledFlow:
    tenant: str
    id: str
    nodes: dict[str, NodeJson]
    entries: tuple[NodeJson, ...]

    @classmethod
    def of(cls, tenant: str, flow: Flow) -> CompiledFlow:
        nodes = {n["id"]: n for n in flow.flow if not CATALOGUE[n["type"]].structural}
        entries = tuple(n for n in nodes.values() if CATALOGUE[n["type"]].entry)
        return cls(tenant=tenant, id=flow.id, nodes=nodes, entries=entries)


def _event_message(incoming: Incoming, device: Device | None, event: str) -> Msg:
    attrs = dict(device.static_attrs) if device is not None else {}
    attrs.update(incoming.attrs)
    metadata: dict[str, Any] = {"tenant": incoming.tenant}
    if incoming.timestamp is not None:
        metadata["timestamp"] = incoming.timestamp
    return {"payload": {"data": {"attrs": attrs, "id": incoming.device_id}, "metadata": metadata, "event": event}}


def _management_message(incoming: Incoming) -> Msg:
    data = dict(incoming.device_event or {"id": incoming.device_id})
    attrs = data.get("attrs")
    if isinstance(attrs, dict) and all(isinstance(v, list) for v in attrs.values()):
        # The device manager's event groups attributes by template; the flow message keys them by label.
        data["attrs"] = {
            a["label"]: a for group in attrs.values() for a in group if isinstance(a, dict) and "label" in a
        }
    return {"payload": {"data": data, "metadata": {"tenant": incoming.tenant}, "event": incoming.kind}}


def entry_message(node: NodeJson, incoming: Incoming, device: Device | None) -> Msg | None:
    """The message an entry node makes of ``incoming``, or None when the node does not match it."""
    kind = node["type"]
    templates = set(device.templates) if device is not None else set()
    if kind == "event device in":
        if str(node.get("device_id")) != incoming.device_id:
            return None
        if incoming.kind == "publish" and node.get("event_publish"):
            return _event_message(incoming, device, "publish")
        if incoming.kind == "configure" and node.get("event_configure"):
            return _event_message(incoming, device, "configure")
        return None
    if kind == "event template in":
        if str(node.get("template_id")) not in templates:
            return None
        if incoming.kind in ("publish", "configure"):
            return _event_message(incoming, device, incoming.kind) if node.get(f"event_{incoming.kind}") else None
        if node.get(f"event_{incoming.kind}"):
            return _management_message(incoming)
        return None
    if kind in ("device in", "template in"):
        if incoming.kind != "publish":
            return None
        if kind == "device in" and str(node.get("_device_id")) != incoming.device_id:
            return None
        if kind == "template in" and template_of(node) not in templates:
            return None
        payload = dict(device.static_attrs) if device is not None else {}
        payload.update(incoming.attrs)
        return {"payload": payload}
    return None


class Engine:
    def __init__(
        self,
        contexts: ContextStore,
        http: HttpClient,
        max_hops: int = 1000,
        max_generations: int = 16,
        clock: Callable[[], int] | None = None,
        actuator: Actuator | None = None,
    ) -> None:
        self._actuator = actuator
        self._contexts = contexts
        self._http = http
        self._max_hops = max_hops
        self._max_generations = max_generations
        self._clock = clock or (lambda: int(time.time() * 1000))
        # Values a flow writes to one device get increasing stamps, so history keeps their order.
        self._device_clock = DeviceClock(self._clock)

    def run(self, flow: CompiledFlow, incoming: Incoming, device: Device | None, outputs: Outputs) -> bool:
        """Run ``incoming`` through ``flow``; True when an entry node matched. Never raises for a node's failure."""
        starts = [(n, m) for n in flow.entries if (m := entry_message(n, incoming, device)) is not None]
        if not starts:
            return False
        MESSAGES_IN.labels(flow.tenant, flow.id).inc()
        if incoming.generation >= self._max_generations:
            LOOPS_STOPPED.labels(flow.tenant, flow.id, "generations").inc()
            log.error(
                "flow loop stopped: device data produced by flows %d times in a row",
                incoming.generation,
                extra={"tenant": flow.tenant, "flow": flow.id, "device": incoming.device_id,
                       "source_flow": incoming.source_flow},
            )  # fmt: skip
            return True
        ctx = RunContext(
            tenant=flow.tenant,
            flow_id=flow.id,
            device_id=incoming.device_id,
            message_id=incoming.message_id,
            generation=incoming.generation,
            outputs=outputs,
            contexts=self._contexts,
            http=self._http,
            now_ms=self._clock,
            actuator=self._actuator,
            device_stamp=self._device_clock.stamp,
        )
        queue: deque[tuple[str, Msg]] = deque()
        for node, msg in starts:
            self._forward(flow, node, [msg], queue)
        hops = 0
        while queue:
            node_id, msg = queue.popleft()
            hops += 1
            if hops > self._max_hops:
                LOOPS_STOPPED.labels(flow.tenant, flow.id, "hops").inc()
                log.error(
                    "flow loop stopped: more than %d node runs for one message",
                    self._max_hops,
                    extra={"tenant": flow.tenant, "flow": flow.id, "node": node_id},
                )
                return True
            node = flow.nodes[node_id]
            handler = HANDLERS.get(node["type"])
            try:
                if handler is None:
                    raise NotImplementedError(f"node type {node['type']!r} is not implemented yet")
                result = handler(node, msg, ctx)
            except Exception as exc:  # noqa: BLE001 - a node's failure ends its branch, never the engine
                NODE_ERRORS.labels(flow.tenant, flow.id, node_id, node["type"]).inc()
                log.warning(
                    "node failed, branch ended",
                    extra={"tenant": flow.tenant, "flow": flow.id, "node": node_id, "type": node["type"],
                           "error": f"{type(exc).__name__}: {exc}", "device": incoming.device_id},
                )  # fmt: skip
                continue
            self._forward(flow, node, result, queue)
        return True

    @staticmethod
    def _forward(flow: CompiledFlow, node: NodeJson, result: list[Msg | None], queue: deque[tuple[str, Msg]]) -> None:
        wires = node.get("wires") or []
        for port, msg in enumerate(result):
            if msg is None or port >= len(wires):
                continue
            targets = [t for t in wires[port] if t in flow.nodes]
            for i, target in enumerate(targets):
                queue.append((target, msg if i == 0 else clone(msg)))
