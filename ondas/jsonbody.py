"""The one rule for every JSON document the platform reads from a client: REST bodies (ondas.web.json_body) and
device payloads (agents.core.payload, the HTTP agent). Pure functions, no I/O.

A document is accepted when it is at most ``max_bytes`` long, UTF-8, nested at most ``max_depth`` levels (a
scalar is 0, ``{}`` and ``[]`` are 1) and JSON (without NaN or Infinity). The depth is measured on the text
before it is parsed, so a document nested thousands of levels deep is refused without ever reaching the
recursive parser (which would raise RecursionError: a 500).

Refusals are :class:`BadJson` with a short ``reason`` (``too_large``, ``not_utf8``, ``too_deep``, ``not_json``);
callers map it to their own error (the REST services: 400 ``invalid`` or 413 ``payload_too_large``).
"""

from __future__ import annotations

import json
import re
from typing import Any

DEFAULT_MAX_DEPTH = 64

# A JSON string literal (escapes included), or one bracket: what the depth scan needs to see.
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")


class BadJson(ValueError):
    """A document is not acceptable; ``reason`` is a short, bounded label (an error kind, a metric label)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def reject_constant(name: str) -> Any:
    """``json.loads(..., parse_constant=reject_constant)``: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


def depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value: a scalar is 0, ``{}`` and ``[]`` are 1 (iterative: no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest


def text_depth(raw: bytes, stop: int | None = None) -> int:
    """Nesting depth of a JSON text, brackets inside strings not counted. For text that is not JSON the count
    is of its brackets (an unterminated string's brackets too): an upper bound, never an error. With ``stop``,
    the scan ends as soon as the depth exceeds it (the answer is then ``stop + 1``)."""
    deepest = level = 0
    if b"[" not in raw and b"{" not in raw:
        return 0
    for m in _TOKEN.finditer(raw):
        first = raw[m.start()]
        if first in _OPEN:
            level += 1
            if level > deepest:
                deepest = level
                if stop is not None and deepest > stop:
                    break
        elif first != 0x22:  # a closing bracket; a string is skipped
            level -= 1
    return deepest


def loads(raw: bytes, *, max_bytes: int | None = None, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """The JSON value of ``raw``; raises :class:`BadJson` with the reason it is not acceptable."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise BadJson("too_large", f"{len(raw)} bytes, at most {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJson("not_utf8", f"not UTF-8: {exc}") from exc
    if text_depth(raw, stop=max_depth) > max_depth:
        raise BadJson("too_deep", f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=reject_constant)
    except RecursionError as exc:  # not reached under the depth limit; kept so it can never be a 500
        raise BadJson("too_deep", f"nested deeper than {max_depth} levels") from exc
    except ValueError as exc:  # JSONDecodeError and the constants above
        raise BadJson("not_json", f"not JSON: {exc}") from exc
