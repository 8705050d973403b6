"""kafka_ws's domain types, with no I/O: the signed ticket payload, the close codes and the two filter grammars
of dojot's Kafka WS (``fields`` and ``where``, docs/api/kafka_ws-websocket.md).

``where`` is applied first (a message that fails one condition is not sent), then ``fields`` (what is left of
the message). Both are parsed once per connection, when it opens; a bad filter closes the connection with the
close code of its error (4000-4004)."""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from typing import Any


class CloseCode(enum.IntEnum):
    """Every close code kafka_ws sends (dojot's list, plus SLOW_CLIENT, Ondas's own, and NORMAL/GOING_AWAY)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    INVALID_SYNTAX = 4000
    INVALID_OPERATOR = 4001
    INVALID_ESCAPE_VALUE = 4002
    INVALID_OPERATOR_ARITY = 4003
    INVALID_VALUE = 4004
    INVALID_PATHNAME = 4400
    INVALID_TICKET = 4401
    FORBIDDEN_TOPIC = 4403
    EXPIRED_CONNECTION = 4408
    SLOW_CLIENT = 4429
    INTERNAL = 4999


class CloseError(Exception):
    """Why a connection is (to be) closed: its close code and the reason sent in the close frame."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    @property
    def frame_reason(self) -> str:
        """``<NAME>: <reason>``, cut to fit the 123 bytes a close frame's reason may have."""
        text = f"{self.code.name}: {self.reason}"
        raw = text.encode()[:123]
        return raw.decode("utf-8", "ignore")


# -- tickets ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketPayload:
    """What a ticket stands for: who asked for it and until when it may be used (epoch seconds)."""

    tenant: str
    user: str
    expires_at: float

    def to_json(self) -> bytes:
        return json.dumps(
            {"tenant": self.tenant, "user": self.user, "expires_at": self.expires_at}, sort_keys=True
        ).encode()


def sign_payload(payload: TicketPayload, secret: bytes) -> bytes:
    """The payload as stored: ``<base64 json>.<hex HMAC-SHA256 of it>``."""
    body = base64.urlsafe_b64encode(payload.to_json())
    mac = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    return body + b"." + mac


def verify_payload(stored: bytes, secret: bytes) -> TicketPayload:
    """The payload of a stored, signed value; CloseError(INVALID_TICKET) when it was altered or is malformed."""
    body, sep, mac = stored.partition(b".")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    if not sep or not hmac.compare_digest(mac, expected):
        raise CloseError(CloseCode.INVALID_TICKET, "the ticket's payload does not verify")
    try:
        data = json.loads(base64.urlsafe_b64decode(body))
        return TicketPayload(str(data["tenant"]), str(data["user"]), float(data["expires_at"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise CloseError(CloseCode.INVALID_TICKET, "the ticket's payload is malformed") from exc


def is_ticket(text: str) -> bool:
    """A ticket is 64 lowercase hexadecimal characters."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


# -- fields ----------------------------------------------------------------------------------------------------

#: A parsed ``fields`` selector: name (or ``*``) -> what to select inside it (None: the whole value).
Mask = dict[str, "Mask | None"]


class _FieldsParser:
    """``list := item (',' item)*``, ``item := name ('/' item | '(' list ')')?``; names are trimmed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> CloseError:
        return CloseError(CloseCode.INVALID_SYNTAX, f"fields: {what} at position {self.pos}")

    def parse(self) -> Mask:
        mask = self.list()
        if self.pos != len(self.text):
            raise self.error(f"unexpected {self.text[self.pos]!r}")
        return mask

    def list(self) -> Mask:
        mask: Mask = {}
        while True:
            name, sub = self.item()
            _merge(mask, name, sub)
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
                continue
            return mask

    def item(self) -> tuple[str, Mask | None]:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ",/()":
            self.pos += 1
        name = self.text[start : self.pos].strip()
        if not name:
            raise self.error("a name is missing")
        if self.pos < len(self.text) and self.text[self.pos] == "/":
            self.pos += 1
            child, sub = self.item()
            return name, {child: sub}
        if self.pos < len(self.text) and self.text[self.pos] == "(":
            self.pos += 1
            inner = self.list()
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                raise self.error("')' expected")
            self.pos += 1
            return name, inner
        return name, None


def _merge(mask: Mask, name: str, sub: Mask | None) -> None:
    if name not in mask:
        mask[name] = sub
        return
    current = mask[name]
    if current is None or sub is None:
        mask[name] = None  # the whole value wins over a part of it
        return
    for key, value in sub.items():
        _merge(current, key, value)


def parse_fields(text: str) -> Mask | None:
    """The mask of a ``fields`` parameter (None for an absent or empty one: the whole message)."""
    if not text.strip():
        return None
    return _FieldsParser(text).parse()


def apply_fields(value: Any, mask: Mask | None) -> Any:
    """What ``mask`` selects of ``value``: selected names that are missing are left out (so ``attrs/humidity``
    of an object without it gives ``{"attrs": {}}``), and so are scalars a selection reaches into (``a/*/c``
    keeps only the objects under ``a``); a mask applied to a list applies to each element."""
    if mask is None:
        return value
    if isinstance(value, list):
        return [apply_fields(v, mask) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in mask:
            sub = mask[key]
        elif "*" in mask:
            sub = mask["*"]
        else:
            continue
        if sub is not None and not isinstance(item, dict | list):
            continue  # a selection inside a value that has no inside: nothing to select
        out[key] = apply_fields(item, sub)
    return out


# -- where -----------------------------------------------------------------------------------------------------

SET_OPERATORS = ("in", "nin")
ARITHMETIC_OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte")
BOOLEAN_OPERATORS = ("bool",)
OPERATORS = SET_OPERATORS + ARITHMETIC_OPERATORS + BOOLEAN_OPERATORS
#: Characters that a backslash may escape in a ``where`` parameter or value.
ESCAPABLE = frozenset("\\,;:=.")


@dataclass(frozen=True)
class Condition:
    path: tuple[str, ...]
    operator: str
    values: tuple[Any, ...]

    def holds(self, message: Any) -> bool:
        found, value = _lookup(message, self.path)
        if not found:
            return False
        if self.operator in SET_OPERATORS:
            text = _as_text(value)
            contained = [v in text for v in self.values]
            return any(contained) if self.operator == "in" else not all(contained)
        if self.operator == "bool":
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            return isinstance(value, bool) and value is self.values[0]
        number = _as_number(value)
        if number is None:
            return False
        ref = float(self.values[0])
        return {
            "eq": number == ref,
            "neq": number != ref,
            "gt": number > ref,
            "gte": number >= ref,
            "lt": number < ref,
            "lte": number <= ref,
        }[self.operator]


def _lookup(message: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    value = message
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _split(text: str, sep: str) -> list[str]:
    """Split on unescaped ``sep``, keeping escapes in the parts (they are resolved by :func:`_unescape`)."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in ESCAPABLE:
                bad = text[i : i + 2]
                raise CloseError(
                    CloseCode.INVALID_ESCAPE_VALUE, f"where: unsupported escape {bad!r}; escape only \\ , ; : = ."
                )
            out.append(text[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out).strip()


def _parse_condition(text: str) -> Condition:
    left, *rest = _split(text, "=")
    if not rest:
        raise CloseError(CloseCode.INVALID_SYNTAX, f"where: condition {text!r} has no '='")
    right = "=".join(rest)
    path = tuple(_unescape(p) for p in _split(left, "."))
    if not path or any(not p for p in path):
        raise CloseError(CloseCode.INVALID_SYNTAX, f"where: condition {text!r} has an empty parameter name")
    head, *tail = _split(right, ":")
    if tail:
        operator = _unescape(head).lower()
        raw_values = ":".join(tail)
        if operator not in OPERATORS:
            raise CloseError(
                CloseCode.INVALID_OPERATOR, f"where: unknown operator {operator!r}; use one of {', '.join(OPERATORS)}"
            )
    else:
        operator, raw_values = "eq", right
    values = [_unescape(v) for v in _split(raw_values, ",")]
    if any(v == "" for v in values):
        raise CloseError(CloseCode.INVALID_SYNTAX, f"where: condition {text!r} has an empty value")
    if operator in SET_OPERATORS:
        return Condition(path, operator, tuple(values))
    if len(values) != 1:
        raise CloseError(
            CloseCode.INVALID_OPERATOR_ARITY, f"where: operator {operator!r} takes one value, got {len(values)}"
        )
    if operator == "bool":
        if values[0].lower() not in ("true", "false"):
            raise CloseError(CloseCode.INVALID_VALUE, f"where: bool takes true or false, got {values[0]!r}")
        return Condition(path, operator, (values[0].lower() == "true",))
    try:
        number = float(values[0])
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise CloseError(CloseCode.INVALID_VALUE, f"where: {operator} takes a number, got {values[0]!r}")
    return Condition(path, operator, (number,))


def parse_where(text: str) -> tuple[Condition, ...]:
    """The conditions of a ``where`` parameter: ``selector=[operator:]values;`` each, every one ending with
    ``;`` (the reference grammar). An absent or empty parameter has none (every message passes)."""
    if not text.strip():
        return ()
    parts = _split(text, ";")
    if parts[-1].strip():
        raise CloseError(CloseCode.INVALID_SYNTAX, f"where: condition {parts[-1]!r} does not end with ';'")
    conditions = []
    for part in parts[:-1]:
        if not part.strip():
            raise CloseError(CloseCode.INVALID_SYNTAX, "where: an empty condition (';;')")
        conditions.append(_parse_condition(part))
    return tuple(conditions)


@dataclass(frozen=True)
class Filter:
    """A connection's filter: ``where`` first, then ``fields``."""

    conditions: tuple[Condition, ...] = ()
    mask: Mask | None = None

    @classmethod
    def parse(cls, fields: str = "", where: str = "") -> Filter:
        conditions = parse_where(where)
        return cls(conditions, parse_fields(fields))

    @property
    def is_identity(self) -> bool:
        return not self.conditions and self.mask is None

    def apply(self, message: Any) -> Any | None:
        """What is sent of ``message``, or None when it is not sent."""
        if not all(c.holds(message) for c in self.conditions):
            return None
        return apply_fields(message, self.mask)
