"""What the agent accepts from a device and what it makes of it. Pure functions, no I/O.

Topics: a device publishes on ``<tenant>:<device-id>/attrs`` and receives on ``<tenant>:<device-id>/config``
(dojot v0.8.1, VerneMQ flavour). A payload is a UTF-8 JSON object of attribute values; an optional
``timestamp`` key (ISO 8601 or epoch s/ms) is when the values were gathered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ondas.contracts import DeviceData, DeviceDataMeta
from ondas.errors import Invalid
from ondas.tenant import validate_tenant
from ondas.timestamps import parse_timestamp

ATTRS = "attrs"
CONFIG = "config"
# Device ids are opaque to the agent; the device cache decides whether one exists. This only keeps out what
# can never be an id: empty, MQTT wildcards, separators and control characters.
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
TIMESTAMP_KEY = "timestamp"


class Drop(Exception):
    """The message is not forwarded. ``reason`` is a short, bounded label (a metric label value)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DeviceRef:
    tenant: str
    device_id: str

    @property
    def username(self) -> str:
        """The MQTT identity of the device: ``<tenant>:<device-id>``."""
        return f"{self.tenant}:{self.device_id}"


def parse_device(identity: str) -> DeviceRef:
    """Split ``<tenant>:<device-id>``; raises :class:`Drop` (``bad_topic``) for anything else."""
    tenant, sep, device_id = identity.partition(":")
    if not sep:
        raise Drop("bad_topic", f"{identity!r} is not <tenant>:<device-id>")
    try:
        validate_tenant(tenant)
    except Invalid as exc:
        raise Drop("bad_topic", f"invalid tenant {tenant!r}") from exc
    if not DEVICE_ID_RE.match(device_id):
        raise Drop("bad_topic", f"invalid device id {device_id!r}")
    return DeviceRef(tenant, device_id)


def parse_attrs_topic(topic: str) -> DeviceRef:
    """The device of an attrs topic ``<tenant>:<device-id>/attrs``."""
    identity, sep, kind = topic.partition("/")
    if not sep or kind != ATTRS:
        raise Drop("bad_topic", f"topic {topic!r} is not <tenant>:<device-id>/attrs")
    return parse_device(identity)


def attrs_topic(ref: DeviceRef) -> str:
    return f"{ref.username}/{ATTRS}"


def config_topic(ref: DeviceRef) -> str:
    return f"{ref.username}/{CONFIG}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep(value: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def decode_attrs(payload: bytes, max_bytes: int, max_depth: int) -> dict[str, Any]:
    """The attribute object of a payload; raises :class:`Drop` with the reason it is not acceptable."""
    if len(payload) > max_bytes:
        raise Drop("too_large", f"{len(payload)} bytes, at most {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Drop("not_utf8", str(exc)) from exc
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise Drop("too_deep", f"nested deeper than {max_depth} levels") from exc
    except ValueError as exc:  # JSONDecodeError and the constants above
        raise Drop("not_json", str(exc)) from exc
    if not isinstance(value, dict):
        raise Drop("not_object", f"expected a JSON object, got {type(value).__name__}")
    if _too_deep(value, max_depth):
        raise Drop("too_deep", f"nested deeper than {max_depth} levels")
    return value


def build_device_data(ref: DeviceRef, attrs: dict[str, Any], now_ms: int) -> DeviceData:
    """The device-data message: the device's timestamp when it sent one (removed from attrs), else ``now_ms``."""
    values = dict(attrs)
    timestamp = now_ms
    if TIMESTAMP_KEY in values:
        try:
            timestamp = parse_timestamp(values.pop(TIMESTAMP_KEY))
        except ValueError as exc:
            raise Drop("bad_timestamp", str(exc)) from exc
    return DeviceData(
        metadata=DeviceDataMeta(deviceid=ref.device_id, tenant=ref.tenant, timestamp=timestamp),
        attrs=values,
    )
