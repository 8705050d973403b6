"""Output nodes: multi device out and the deprecated device out (``device-data`` for the target devices, dojot's
shape, on ``<tenant>.device-data``), notification (``<tenant>.dojot.notifications``) and publish in FTP topic
(``<tenant>.dojot.ftp``). Each queues its messages with the run context; the engine commits the source message only
after the broker accepted them."""

from __future__ import annotations

import uuid
from typing import Any

from flowbroker.nodes.base import Msg, NodeError, NodeJson, Result, RunContext, get_path
from ondas.topics import DEVICE_DATA, NOTIFICATIONS

FTP = "dojot.ftp"
FLOW_HEADER = "ondas-flow"
GENERATION_HEADER = "ondas-flow-generation"
OUTPUT_ID_HEADER = "ondas-flow-output-id"


def target_devices(node: NodeJson, msg: Msg, ctx: RunContext) -> list[str]:
    """The devices a device-out or actuate node writes to: the originating device, the configured ones, or the ids
    in a message property (one id or a list). Each device once, in order."""
    source = node.get("device_source", "self")
    ids: list[Any]
    if source == "self":
        ids = [ctx.device_id]
    elif source == "configured":
        configured = node.get("devices_source_configured")
        ids = [d for d in configured if d] if isinstance(configured, list) else []
        if not ids and node.get("_device_id"):
            ids = [node["_device_id"]]
    elif source == "dynamic":
        found = get_path(msg, str(node.get("devices_source_dynamic") or node.get("device_source_msg") or ""))
        ids = found if isinstance(found, list) else [] if found is None else [found]
    else:
        raise NodeError(f"invalid device source {source!r}")
    result: list[str] = []
    for d in ids:
        if not isinstance(d, str | int) or isinstance(d, bool) or not str(d):
            raise NodeError(f"invalid device id {d!r}")
        if str(d) not in result:
            result.append(str(d))
    if not result:
        raise NodeError("could not define target devices")
    return result


def _headers(ctx: RunContext, node_id: str, index: int, device_id: str | None = None) -> list[tuple[str, str]]:
    headers = [("content-type", "application/json"), ("ondas-tenant", ctx.tenant)]
    if device_id is not None:
        headers.append(("ondas-device", device_id))
    headers += [
        (FLOW_HEADER, ctx.flow_id),
        (GENERATION_HEADER, str(ctx.generation + 1)),
        (OUTPUT_ID_HEADER, ctx.output_id(node_id, index)),
    ]
    return headers


def device_out(node: NodeJson, msg: Msg, ctx: RunContext) -> Result:
    attrs = get_path(msg, str(node["attrs"]))
    if not isinstance(attrs, dict):
        raise NodeError(f"the data source {node['attrs']!r} is not an object of attributes")
    for i, device_id in enumerate(target_devices(node, msg, ctx)):
        stamp = ctx.stamp_for(device_id)
        record = {"attrs": attrs, "metadata": {"timestamp": stamp, "tenant": ctx.tenant, "deviceid": device_id}}
        ctx.outputs.send(DEVICE_DATA, device_id, record, _headers(ctx, node["id"], i, device_id))
    return []


def actuate(node: NodeJson, msg: Msg, ctx: RunContext) -> Result:
    """multi actuate and the deprecated actuate: the attributes at ``attrs`` sent to each target device through the
    device manager's actuation path (it checks the device is the tenant's and the attributes are actuators, and
    publishes the ``configure`` event); done when the device manager has committed it."""
    if ctx.actuator is None:
        raise NodeError("actuation is not configured (no device manager)")
    attrs = get_path(msg, str(node["attrs"]))
    if not isinstance(attrs, dict) or not attrs:
        raise NodeError(f"the data source {node['attrs']!r} is not an object of attributes")
    for device_id in target_devices(node, msg, ctx):
        ctx.actuator.actuate(ctx.tenant, device_id, attrs)
    return []


def notification(node: NodeJson, msg: Msg, ctx: RunContext) -> Result:
    meta: Any = {}
    if node.get("source"):
        meta = get_path(msg, str(node["source"]))
    kind = node.get("msgType")
    if kind == "dynamic":
        message = get_path(msg, str(node.get("messageDynamic", "")))
    elif kind == "static":
        message = node.get("messageStatic")
    else:
        message = node.get("message_notification")
    if meta is None:
        raise NodeError("metadata must be defined")
    if not isinstance(meta, dict):
        raise NodeError("metadata must be an object (not an array)")
    if not message:
        raise NodeError("message must be defined")
    if not isinstance(message, str):
        raise NodeError("message must be a string")
    meta = dict(meta)
    meta.setdefault("shouldPersist", True)
    body = {
        "msgID": str(uuid.uuid5(uuid.NAMESPACE_URL, ctx.output_id(node["id"]))),
        "timestamp": ctx.now_ms(),
        "message": message,
        "metaAttrsFilter": meta,
        "subject": "user_notification",
    }
    ctx.outputs.send(NOTIFICATIONS, ctx.device_id, body, _headers(ctx, node["id"], 0))
    return []


def publish_ftp(node: NodeJson, msg: Msg, ctx: RunContext) -> Result:
    filename = get_path(msg, str(node["filename"]))
    content = get_path(msg, str(node["filecontent"]))
    if not isinstance(filename, str) or not filename:
        raise NodeError(f"the file name {node['filename']!r} is not a string")
    if not isinstance(content, str):
        raise NodeError(f"the file content {node['filecontent']!r} is not a string")
    body = {
        "metadata": {
            "msgId": str(uuid.uuid5(uuid.NAMESPACE_URL, ctx.output_id(node["id"]))),
            "ts": ctx.now_ms(),
            "service": "flowbroker",
            "contentType": "application/vnd.dojot.ftp+json",
        },
        "data": {"filename": filename, "encoding": node.get("encode") or "base64", "content": content},
    }
    ctx.outputs.send(FTP, ctx.device_id, body, _headers(ctx, node["id"], 0))
    return []
