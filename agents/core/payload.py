"""What an agent accepts from a device and what it makes of it, for every protocol. Pure functions, no I/O.

A device's identity is ``<tenant>:<device-id>``. A payload is a UTF-8 JSON object of attribute values; an
optional ``timestamp`` key (ISO 8601 or epoch s/ms) is when the values were gathered.

Attribute policy (one rule for every agent): a value sent for one of the device's attributes must match the
attribute's ``value_type``, or the whole message is rejected (reason ``wrong_type``: a device that sends a
string for a float is misconfigured, and half a message would be a lie about when values were gathered).
Keys that are none of the device's attributes are forwarded unchanged and counted (dojot forwards them too;
consumers decide what to keep).

Headers (:func:`device_headers`, the one builder of the headers of every record an agent publishes for a device:
device-data and device-liveness): ``content-type``, ``ondas-tenant``, ``ondas-device``, in this order, the same
bytes from every agent; then ``ondas-agent: <host>:<pid>`` from an agent whose processes split the devices between
them and keep a device's order per process (the MQTT agent's shards), naming the process that forwarded it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ondas import jsonbody
from ondas.contracts import DeviceData, DeviceDataMeta
from ondas.errors import Invalid
from ondas.tenant import validate_tenant
from ondas.timestamps import parse_timestamp

# Device ids are opaque to the agent; the device cache decides whether one exists. This only keeps out what
# can never be an id: empty, MQTT wildcards, separators and control characters.
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
TIMESTAMP_KEY = "timestamp"

# The platform's JSON rule (ondas/jsonbody.py), re-exported under their old names for the agents.
depth = jsonbody.depth
reject_constant = jsonbody.reject_constant


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
        """The identity of the device: ``<tenant>:<device-id>`` (the MQTT username and certificate CN)."""
        return f"{self.tenant}:{self.device_id}"


Headers = list[tuple[str, str | bytes | None]]
FORWARDER_HEADER = "ondas-agent"


def device_headers(tenant: str, device_id: str, forwarder: str | None = None) -> Headers:
    """The headers of a record about a device (see the module's doc); ``forwarder``: the agent process."""
    headers: Headers = [("content-type", "application/json"), ("ondas-tenant", tenant), ("ondas-device", device_id)]
    if forwarder is not None:
        headers.append((FORWARDER_HEADER, forwarder))
    return headers


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


def decode_attrs(payload: bytes, max_bytes: int, max_depth: int) -> dict[str, Any]:
    """The attribute object of a payload; raises :class:`Drop` with the reason it is not acceptable. The size,
    UTF-8, depth and JSON checks are the platform's one rule (ondas.jsonbody), the REST services' too."""
    try:
        value = jsonbody.loads(payload, max_bytes=max_bytes, max_depth=max_depth)
    except jsonbody.BadJson as exc:
        raise Drop(exc.reason, exc.detail) from exc
    if not isinstance(value, dict):
        raise Drop("not_object", f"expected a JSON object, got {type(value).__name__}")
    return value


_GEO_POINT = re.compile(r"^\s*-?\d+(\.\d+)?\s*,\s*-?\d+(\.\d+)?\s*$")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# value_type -> does a JSON value fit it. The spellings are the device manager's (dojot's and its GUI's).
_FITS: dict[str, Any] = {
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "float": _is_number,
    "bool": lambda v: isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "geo:point": lambda v: isinstance(v, str) and bool(_GEO_POINT.match(v)),
    "geopoint": lambda v: isinstance(v, str) and bool(_GEO_POINT.match(v)),
    "object": lambda v: isinstance(v, dict),
    "json": lambda v: True,
}


def attribute_types(device: dict[str, Any]) -> dict[str, str]:
    """label -> value_type of a device's attributes (device manager shape: ``attrs`` by template id)."""
    types: dict[str, str] = {}
    groups = device.get("attrs")
    if not isinstance(groups, dict):
        return types
    for attrs in groups.values():
        for attr in attrs if isinstance(attrs, list) else ():
            if (
                isinstance(attr, dict)
                and isinstance(attr.get("label"), str)
                and isinstance(attr.get("value_type"), str)
            ):
                types[attr["label"]] = attr["value_type"]
    return types


def check_attrs(attrs: dict[str, Any], types: dict[str, str]) -> list[str]:
    """The keys that are none of the device's attributes; raises :class:`Drop` (``wrong_type``) for a value
    that does not fit its attribute's ``value_type``."""
    unknown: list[str] = []
    for key, value in attrs.items():
        if key == TIMESTAMP_KEY:
            continue
        value_type = types.get(key)
        if value_type is None:
            unknown.append(key)
            continue
        fits = _FITS.get(value_type)
        if fits is not None and not fits(value):
            raise Drop("wrong_type", f"attribute {key!r} is {value_type}, got {type(value).__name__}")
    return unknown


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


def apply_rules(
    ref: DeviceRef, attrs: dict[str, Any], types: dict[str, str], now_ms: int
) -> tuple[DeviceData, list[str]]:
    """The attribute policy and timestamp rule applied to one message of a device: its device-data message and the
    keys that are none of its attributes; raises :class:`Drop` (``wrong_type``, ``bad_timestamp``)."""
    unknown = check_attrs(attrs, types)
    return build_device_data(ref, attrs, now_ms), unknown
