"""What a device may post and what it becomes: pure functions, no I/O.

A message is ``{"ts"?: <ISO 8601 | epoch ms | epoch s>, "data": {<attr>: <value>, ...}}``; ``create-many``
takes a JSON array of them. ``data`` follows the agent core's rules (agents/core/payload.py): the same
attribute policy, depth limit and timestamp parsing as MQTT. ``ts``, when present, is when the values were
gathered (it wins over a ``timestamp`` key inside ``data``, which is honoured otherwise, as over MQTT).

Every refusal is a :class:`~agents.core.payload.Drop` whose ``reason`` is the ``error`` of the answer and a
metric label; :data:`STATUS` maps each reason to its HTTP status, in this one place.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from agents.core.payload import (
    TIMESTAMP_KEY,
    DeviceRef,
    Drop,
    apply_rules,
    depth,
    parse_device,
)
from ondas import jsonbody
from ondas.contracts import DeviceData

FIELDS = ("ts", "data")

# reason -> HTTP status of the answer.
STATUS: dict[str, int] = {
    # the request as a whole
    "too_large": 413,
    "not_utf8": 400,
    "not_json": 400,
    "too_deep": 400,
    "not_array": 400,
    "empty_batch": 400,
    "too_many_items": 400,
    # one message
    "not_object": 400,
    "unknown_field": 400,
    "missing_data": 400,
    "data_not_object": 400,
    "bad_timestamp": 400,
    "wrong_type": 422,
    # who is posting
    "no_credentials": 401,
    "bad_identity": 401,
    "bad_credentials": 401,
    "bad_certificate": 401,
    "revoked_certificate": 401,
    "tenant_disabled": 403,
    "device_disabled": 403,
    "unknown_device": 404,
    # the platform
    "unavailable": 503,
    "internal_error": 500,
}


@dataclass(frozen=True)
class Message:
    """One message as posted: ``ts`` exactly as sent (None when absent) and the ``data`` object."""

    data: dict[str, Any]
    ts: Any = None


def parse_credentials(authorization: str | None) -> tuple[DeviceRef, str]:
    """The device and password of an ``Authorization: Basic`` header. The username is the device's identity
    ``<tenant>:<device-id>`` (dojot's ``<tenant>@<device-id>`` is accepted too), so the decoded text is
    ``<tenant>:<device-id>:<password>``: tenants and device ids never contain ``:`` or ``@``."""
    if not authorization:
        raise Drop("no_credentials", "send 'Authorization: Basic base64(<tenant>:<device-id>:<password>)'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise Drop("no_credentials", "the Authorization header must be 'Basic <base64 credentials>'")
    try:
        text = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise Drop("no_credentials", "the Basic credentials are not base64 of UTF-8 text") from exc
    user, sep, password = text.partition(":")
    if not sep:
        raise Drop("bad_identity", "the credentials must be '<tenant>:<device-id>:<password>'")
    if "@" in user:
        tenant, _, device_id = user.partition("@")
    else:
        tenant = user
        device_id, sep, password = password.partition(":")
        if not sep:
            raise Drop("bad_identity", "the credentials must be '<tenant>:<device-id>:<password>'")
    try:
        ref = parse_device(f"{tenant}:{device_id}")
    except Drop as exc:
        raise Drop("bad_identity", f"the username is not <tenant>:<device-id>: {exc.detail}") from exc
    if not password:
        raise Drop("bad_credentials", "wrong username or password")
    return ref, password


def decode_json(body: bytes, max_depth: int = jsonbody.DEFAULT_MAX_DEPTH) -> Any:
    """The JSON value of a request body; raises :class:`Drop`. The platform's one JSON rule (ondas.jsonbody):
    the whole body may be nested ``max_depth`` levels (each message's ``data`` is checked on its own)."""
    if not body.strip():
        raise Drop("not_json", "the request needs a JSON body")
    try:
        return jsonbody.loads(body, max_depth=max_depth)
    except jsonbody.BadJson as exc:
        raise Drop(exc.reason, f"the body is {exc.detail}") from exc


def parse_message(value: Any, max_depth: int) -> Message:
    """One message object; raises :class:`Drop`. ``data`` may be nested ``max_depth`` levels (itself one)."""
    if not isinstance(value, dict):
        raise Drop("not_object", f"a message is a JSON object with 'data', got {_kind(value)}")
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        raise Drop("unknown_field", f"unknown field(s) {', '.join(map(repr, unknown))}; a message has 'ts' and 'data'")
    if "data" not in value:
        raise Drop("missing_data", "a message needs 'data': an object of attribute values")
    data = value["data"]
    if not isinstance(data, dict):
        raise Drop("data_not_object", f"'data' must be a JSON object of attribute values, got {_kind(data)}")
    if depth(data) > max_depth:
        raise Drop("too_deep", f"'data' is nested deeper than {max_depth} levels")
    return Message(data=data, ts=value.get("ts"))


def parse_batch(value: Any, max_items: int) -> list[Any]:
    """The items of a ``create-many`` body (each still to be parsed with :func:`parse_message`)."""
    if not isinstance(value, list):
        raise Drop("not_array", f"create-many takes a JSON array of messages, got {_kind(value)}")
    if not value:
        raise Drop("empty_batch", "the array holds no message")
    if len(value) > max_items:
        raise Drop("too_many_items", f"{len(value)} messages, at most {max_items} in one request")
    return value


def message_attrs(message: Message) -> dict[str, Any]:
    """The attribute values of a message as the agent core takes them: ``data``, with ``ts`` (when sent) as the
    device's ``timestamp`` (so it wins over one inside ``data``)."""
    if message.ts is None:
        return message.data
    return {**message.data, TIMESTAMP_KEY: message.ts}


def device_data(ref: DeviceRef, message: Message, types: dict[str, str], now_ms: int) -> tuple[DeviceData, list[str]]:
    """The device-data message and the keys that are none of the device's attributes; raises :class:`Drop`
    (``wrong_type``, ``bad_timestamp``): the agent core's rules (agents/core/payload.py), which the ingest path
    applies too."""
    return apply_rules(ref, message_attrs(message), types, now_ms)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
