"""What every node handler shares: message paths (``msg.payload.data.attrs.x``), the error that ends a branch, and
the run context a handler is given (tenant, flow, the originating device, outputs, context store, HTTP client)."""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

Msg = dict[str, Any]
NodeJson = dict[str, Any]
#: One entry per output port of the node: the message sent there, or None.
Result = list[Msg | None]


class NodeError(Exception):
    """A node could not handle a message: its branch ends here (counted and logged by the engine)."""


class Outputs(Protocol):
    def send(self, topic_subject: str, key: str, value: dict[str, Any], headers: list[tuple[str, str]]) -> None:
        """Queue a message for ``<tenant>.<topic_subject>``; the engine waits for the broker before committing."""


class ContextStore(Protocol):
    def get(self, key: str) -> Any: ...

    def update(self, key: str, change: Callable[[Any], tuple[Any, Any]]) -> Any:
        """Atomically replace the value at ``key`` with ``change(old)[0]``; returns ``change(old)[1]``."""


class HttpClient(Protocol):
    def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes, str]:
        """(status, headers, body, final url); raises NodeError when refused, timed out or too large."""


class Actuator(Protocol):
    def actuate(self, tenant: str, device_id: str, attrs: dict[str, Any]) -> None:
        """Send ``attrs`` to the device through the device manager; NodeError when it refuses."""


@dataclass
class RunContext:
    tenant: str
    flow_id: str
    device_id: str
    message_id: str  # deterministic id of the source message (topic/partition/offset)
    generation: int  # how many flows produced the source message, one after the other
    outputs: Outputs
    contexts: ContextStore
    http: HttpClient
    now_ms: Callable[[], int]
    actuator: Actuator | None = None
    #: The stamp of a value written to ``(tenant, device)``: now, later than the last one this worker wrote there.
    device_stamp: Callable[[str, str], int] | None = None

    def stamp_for(self, device_id: str) -> int:
        return self.device_stamp(self.tenant, device_id) if self.device_stamp is not None else self.now_ms()

    def output_id(self, node_id: str, index: int = 0) -> str:
        return f"{self.flow_id}:{node_id}:{self.message_id}:{index}"

    def context_key(self, layer: str, name: str, node_id: str | None = None) -> str:
        if layer == "tenant":
            return f"tenant:{self.tenant}:{name}"
        if layer == "flow":
            return f"flow:{self.tenant}:{self.flow_id}:{name}"
        return f"node:{self.tenant}:{self.flow_id}:{node_id}:{name}"


Handler = Callable[[NodeJson, Msg, RunContext], Result]

_TOKEN = re.compile(r"""\[\s*(['"])(.*?)\1\s*\]|\[\s*(\d+)\s*\]|([^.\[\]]+)""")


def path_parts(path: str) -> list[str | int]:
    """``msg.a.b[0]["c d"]`` -> ``["a", "b", 0, "c d"]`` (a leading ``msg`` is the message itself)."""
    parts: list[str | int] = []
    for m in _TOKEN.finditer(path.strip()):
        if m.group(2) is not None:
            parts.append(m.group(2))
        elif m.group(3) is not None:
            parts.append(int(m.group(3)))
        else:
            parts.append(m.group(4).strip())
    if parts and parts[0] == "msg":
        parts = parts[1:]
    return parts


_MISSING = object()


def get_path(msg: Any, path: str, default: Any = None) -> Any:
    """The value at ``path`` in ``msg``, or ``default`` when a step is missing."""
    current = msg
    for part in path_parts(path):
        if isinstance(current, dict) and isinstance(part, str) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif isinstance(current, list) and isinstance(part, str) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return default
    return current


def has_path(msg: Any, path: str) -> bool:
    return get_path(msg, path, _MISSING) is not _MISSING


def set_path(msg: Msg, path: str, value: Any) -> None:
    """Set ``path`` in ``msg``, creating the objects on the way (as Node-RED does)."""
    parts = path_parts(path)
    if not parts:
        raise NodeError(f"cannot set the whole message (property {path!r})")
    current: Any = msg
    for part, nxt in itertools.pairwise(parts):
        if isinstance(current, list) and isinstance(part, int):
            while len(current) <= part:
                current.append(None)
            if not isinstance(current[part], dict | list):
                current[part] = [] if isinstance(nxt, int) else {}
            current = current[part]
        elif isinstance(current, dict):
            key = str(part)
            if not isinstance(current.get(key), dict | list):
                current[key] = [] if isinstance(nxt, int) else {}
            current = current[key]
        else:
            raise NodeError(f"cannot set {path!r}: a step is not an object")
    last = parts[-1]
    if isinstance(current, list) and isinstance(last, int):
        while len(current) <= last:
            current.append(None)
        current[last] = value
    elif isinstance(current, dict):
        current[str(last)] = value
    else:
        raise NodeError(f"cannot set {path!r}: a step is not an object")


def delete_path(msg: Msg, path: str) -> None:
    parts = path_parts(path)
    if not parts:
        raise NodeError("cannot delete the whole message")
    parent = get_path(msg, ".".join(str(p) for p in parts[:-1])) if len(parts) > 1 else msg
    last = parts[-1]
    if isinstance(parent, dict):
        parent.pop(str(last), None)
    elif isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent):
        parent.pop(last)


def clone(msg: Msg) -> Msg:
    return copy.deepcopy(msg)


def js_string(value: Any) -> str:
    """A value as JavaScript's ``String(value)`` shows it (what dojot's nodes compare and render)."""
    import json

    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, int | float):
        return json.dumps(value)
    return str(value)
