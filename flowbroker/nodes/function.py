"""Function nodes: change (set / change / delete / move), switch (every Node-RED operator dojot offers, "stop after
first match" or "check all rules") and template (mustache or plain text, string or JSON output)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import chevron
from chevron.tokenizer import ChevronError

from flowbroker.nodes.base import (
    Msg,
    NodeError,
    NodeJson,
    Result,
    RunContext,
    clone,
    delete_path,
    get_path,
    has_path,
    js_string,
    set_path,
)

# -- typed values (Node-RED "typedInput": the value of a field and the type beside it) ---------------------------


def typed_value(value: Any, kind: str | None, msg: Msg, ctx: RunContext) -> Any:
    kind = kind or "str"
    if kind == "str":
        return "" if value is None else str(value)
    if kind == "num":
        return _number(value)
    if kind == "bool":
        return value is True or str(value).strip().lower() == "true"
    if kind == "json":
        try:
            return json.loads(value) if isinstance(value, str) else value
        except ValueError as exc:
            raise NodeError(f"invalid JSON value {value!r}: {exc}") from exc
    if kind == "msg":
        return clone_value(get_path(msg, str(value)))
    if kind == "date":
        return ctx.now_ms()
    if kind in ("flow", "global"):
        layer = "flow" if kind == "flow" else "tenant"
        return ctx.contexts.get(ctx.context_key(layer, str(value)))
    if kind == "re":
        return str(value)
    raise NodeError(f"value type {kind!r} is not supported")


def clone_value(value: Any) -> Any:
    return clone({"v": value})["v"] if isinstance(value, dict | list) else value


def _number(value: Any) -> float | int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    try:
        text = str(value).strip()
        number = float(text)
    except (TypeError, ValueError) as exc:
        raise NodeError(f"{value!r} is not a number") from exc
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


# -- change ------------------------------------------------------------------------------------------------------


def _property_kind(rule: dict[str, Any], key: str) -> str:
    kind = str(rule.get(key) or "msg")
    if kind != "msg":
        raise NodeError(f"only msg properties can be changed, not {kind!r}")
    return kind


def change(node: NodeJson, msg: Msg, ctx: RunContext) -> Result:
    for rule in node.get("rules", []):
        action, prop = rule["t"], str(rule["p"])
        _property_kind(rule, "pt")
        if action == "set":
            set_path(msg, prop, typed_value(rule.get("to"), rule.get("tot"), msg, ctx))
        elif action == "delete":
            delete_path(msg, prop)
        elif action == "move":
            if rule.get("tot") not in (None, "msg"):
                raise NodeError("a move goes to a msg property")
            if has_path(msg, prop):
                value = get_path(msg, prop)
                delete_path(msg, prop)
                set_path(msg, str(rule["to"]), value)
        else:  # change: search and replace
            _replace(rule, prop, msg, ctx)
    return [msg]


def _replace(rule: dict[str, Any], prop: str, msg: Msg, ctx: RunContext) -> None:
    if not has_path(msg, prop):
        return
    current = get_path(msg, prop)
    replacement = typed_value(rule.get("to"), rule.get("tot"), msg, ctx)
    from_kind = rule.get("fromt") or "str"
    if from_kind == "re":
        try:
            pattern = re.compile(str(rule.get("from", "")))
        except re.error as exc:
            raise NodeError(f"bad regular expression {rule.get('from')!r}: {exc}") from exc
        if isinstance(current, str):
            text = re.sub(r"\$(\d+)", r"\\\1", str(replacement)) if isinstance(replacement, str) else None
            if text is None:
                if pattern.fullmatch(current):
                    set_path(msg, prop, replacement)
            else:
                set_path(msg, prop, pattern.sub(text, current))
        return
    target = typed_value(rule.get("from"), from_kind, msg, ctx)
    if isinstance(current, str) and isinstance(target, str) and target:
        if current == target:
            set_path(msg, prop, replacement)  # a complete match may change the type
        else:
            set_path(msg, prop, current.replace(target, js_string(replacement)))
    elif (current == target and not isinstance(current, bool | dict | list)) or current is target:
        set_path(msg, prop, replacement)
    elif isinstance(current, bool) and isinstance(target, bool) and current == target:
        set_path(msg, prop, replacement)


# -- switch ------------------------------------------------------------------------------------------------------


def _loose_eq(a: Any, b: Any) -> bool:
    """JavaScript's ``==`` for JSON values."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        if isinstance(a, bool) and isinstance(b, bool):
            return a == b
        return _loose_eq(int(a) if isinstance(a, bool) else a, int(b) if isinstance(b, bool) else b)
    if (isinstance(a, int | float) and isinstance(b, str)) or (isinstance(a, str) and isinstance(b, int | float)):
        try:
            return float(a) == float(b) if str(a if isinstance(a, str) else b).strip() else (a or b) == 0
        except ValueError:
            return False
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return a is b
    return bool(a == b)


def _to_number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        text = str(value).strip()
        return float(text) if text else 0.0
    except ValueError:
        return math.nan


def _compare(a: Any, b: Any) -> float | None:
    """a - b as JavaScript's relational operators see it (None: incomparable)."""
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    x, y = _to_number(a), _to_number(b)
    if math.isnan(x) or math.isnan(y):
        return None
    return x - y


def _empty(value: Any) -> bool:
    if isinstance(value, str | list | dict):
        return len(value) == 0
    return False


def _istype(value: Any, kind: str) -> bool:
    return {
        "string": isinstance(value, str),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
        "null": value is None,
        "undefined": False,
        "json": isinstance(value, str) and _is_json(value),
        "buffer": False,
    }.get(kind, False)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _rule_matches(rule: dict[str, Any], value: Any, previous: Any, msg: Msg, ctx: RunContext) -> bool:
    op = rule["t"]
    if op in ("true", "false"):
        return value is (op == "true")
    if op == "null":
        return value is None
    if op == "nnull":
        return value is not None
    if op == "empty":
        return _empty(value)
    if op == "nempty":
        return isinstance(value, str | list | dict) and not _empty(value)
    if op == "istype":
        return _istype(value, str(rule.get("v")))
    if op in ("head", "tail", "index", "jsonata_exp"):
        raise NodeError(f"switch operator {op!r} is not supported")
    vt = rule.get("vt") or "str"
    test = previous if vt == "prev" else typed_value(rule.get("v"), "str" if vt == "re" else vt, msg, ctx)
    if op == "eq":
        return _loose_eq(value, test)
    if op == "neq":
        return not _loose_eq(value, test)
    if op in ("lt", "lte", "gt", "gte"):
        diff = _compare(value, test)
        if diff is None:
            return False
        return {"lt": diff < 0, "lte": diff <= 0, "gt": diff > 0, "gte": diff >= 0}[op]
    if op == "btwn":
        v2t = rule.get("v2t") or "num"
        other = previous if v2t == "prev" else typed_value(rule.get("v2"), v2t, msg, ctx)
        lo, hi = _compare(value, test), _compare(value, other)
        if lo is None or hi is None:
            return False
        return (lo >= 0 and hi <= 0) or (lo <= 0 and hi >= 0)
    if op == "cont":
        return (isinstance(value, str) and js_string(test) in value) or (isinstance(value, list) and test in value)
    if op == "regex":
        flags = re.IGNORECASE if rule.get("case") else 0
        try:
            return re.search(str(test), js_string(value), flags) is not None
        except re.error as exc:
            raise NodeError(f"bad regular expression {test!r}: {exc}") from exc
    if op == "hask":
        return isinstance(value, dict) and js_string(test) in value
    raise NodeError(f"unknown switch operator {op!r}")


def switch(node: NodeJson, msg: Msg, ctx: RunContext) -> Result:
    prop_kind = node.get("propertyType") or "msg"
    value = (
        typed_value(node["property"], prop_kind, msg, ctx) if prop_kind != "msg" else get_path(msg, node["property"])
    )
    check_all = str(node.get("checkall", "true")) == "true"
    rules = node.get("rules", [])
    ports = max(len(rules), len(node.get("wires", [])))
    result: Result = [None] * ports
    matched = False
    previous = None
    for i, rule in enumerate(rules):
        if rule["t"] == "else":
            hit = not matched
        else:
            hit = _rule_matches(rule, value, previous, msg, ctx)
        previous = value
        if hit:
            result[i] = msg if not matched else clone(msg)
            matched = True
            if not check_all:
                break
    return result


# -- template ----------------------------------------------------------------------------------------------------


class _JsBool:
    """A boolean that renders as JavaScript renders it (``true``/``false``) and is still false in a section."""

    __slots__ = ("value",)
    _CHEVRON_return_scope_when_falsy = True  # rendered as "false", not as the empty string

    def __init__(self, value: bool) -> None:
        self.value = value

    def __bool__(self) -> bool:
        return self.value

    def __str__(self) -> str:
        return "true" if self.value else "false"


def _js_view(value: Any) -> Any:
    if isinstance(value, bool):
        return _JsBool(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _js_view(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_js_view(v) for v in value]
    return value


def template(node: NodeJson, msg: Msg, ctx: RunContext) -> Result:
    text = str(node.get("template", ""))
    if (node.get("syntax") or "mustache") == "mustache":
        try:
            rendered = chevron.render(text, _js_view(msg), warn=False)
        except ChevronError as exc:
            raise NodeError(f"template syntax error: {exc}") from exc
        except (IndexError, KeyError, TypeError, ValueError) as exc:
            raise NodeError(f"template cannot be rendered: {exc}") from exc
    else:
        rendered = text
    value: Any = rendered
    if (node.get("output") or "str") == "json":
        try:
            value = json.loads(rendered)
        except ValueError as exc:
            raise NodeError(f"template output is not JSON: {exc}") from exc
    set_path(msg, str(node.get("field") or "payload"), value)
    return [msg]
