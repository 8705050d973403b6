"""Context nodes: get context (tenant or flow layer), merge data and cumulative sum (node layer). The context store
is shared by every worker (Redis); each change is one atomic read-modify-write."""

from __future__ import annotations

import math
from typing import Any

from flowbroker.nodes.base import Msg, NodeError, NodeJson, Result, RunContext, get_path, set_path


def get_context(node: NodeJson, msg: Msg, ctx: RunContext) -> Result:
    name: Any = node["contextName"]
    if node.get("contextNameType") == "msg":
        name = get_path(msg, str(name))
        if not isinstance(name, str) or not name:
            raise NodeError(f"context name {node['contextName']!r} is not a string")
    layer = node.get("contextLayer") or "tenant"
    set_path(msg, str(node["contextContent"]), ctx.contexts.get(ctx.context_key(layer, str(name))))
    return [msg]


def _deep_merge(base: Any, extra: Any) -> Any:
    """lodash.merge for JSON values: objects merged key by key, arrays index by index, anything else replaced."""
    if isinstance(base, dict) and isinstance(extra, dict):
        merged = dict(base)
        for k, v in extra.items():
            merged[k] = _deep_merge(base.get(k), v) if k in base else v
        return merged
    if isinstance(base, list) and isinstance(extra, list):
        merged_list = list(base)
        for i, v in enumerate(extra):
            if i < len(merged_list):
                merged_list[i] = _deep_merge(merged_list[i], v)
            else:
                merged_list.append(v)
        return merged_list
    return base if extra is None and base is not None else extra


def merge_data(node: NodeJson, msg: Msg, ctx: RunContext) -> Result:
    target = get_path(msg, str(node["targetData"]))
    if not isinstance(target, dict | list) or not target:
        raise NodeError(f"invalid target data at {node['targetData']!r}: an object is needed")

    def change(old: Any) -> tuple[Any, Any]:
        merged = _deep_merge(old if isinstance(old, dict | list) else {}, target)
        return merged, merged

    merged = ctx.contexts.update(ctx.context_key("node", "data", node["id"]), change)
    set_path(msg, str(node["mergedData"]), merged)
    return [msg]


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or value is None or value == "":
        raise NodeError(f"invalid {what} {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise NodeError(f"invalid {what} {value!r}") from exc
    if not math.isfinite(number):
        raise NodeError(f"invalid {what} {value!r}")
    return number


def cumulative_sum(node: NodeJson, msg: Msg, ctx: RunContext) -> Result:
    """Sum of the target attribute over the last ``timePeriod`` minutes (by the message timestamps), kept in the
    node's context. A message older than the newest one summed is refused (dojot's "messy time"); a message seen
    before (redelivered) is not added twice."""
    value = _finite(get_path(msg, str(node["targetAttribute"])), "target attribute")
    stamp = _finite(get_path(msg, str(node["timestamp"])), "timestamp")
    period_ms = float(node["timePeriod"]) * 60000
    seen_id = ctx.message_id

    def change(old: Any) -> tuple[Any, Any]:
        state = old if isinstance(old, dict) and isinstance(old.get("entries"), list) else {"entries": []}
        entries: list[dict[str, Any]] = state["entries"]
        if any(e.get("id") == seen_id for e in entries):
            return state, ("ok", sum(e["value"] for e in entries))
        if entries and entries[-1]["timestamp"] > stamp:
            return state, ("messy", None)
        threshold = stamp - period_ms
        kept = [e for e in entries if e["timestamp"] >= threshold]
        kept.append({"timestamp": stamp, "value": value, "id": seen_id})
        total = sum(e["value"] for e in kept)
        return {"entries": kept}, ("ok", total)

    outcome, total = ctx.contexts.update(ctx.context_key("node", "data", node["id"]), change)
    if outcome == "messy":
        raise NodeError("messy time: the message is older than the last one summed")
    set_path(msg, str(node["output"]), int(total) if float(total).is_integer() else total)
    return [msg]
