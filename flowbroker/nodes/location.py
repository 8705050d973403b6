"""Geofence: passes the message on only when its position is inside (or outside) the node's polygon; a message
without a position ends the branch with an error, as in dojot."""

from __future__ import annotations

import re
from typing import Any

from flowbroker.nodes.base import Msg, NodeError, NodeJson, Result, RunContext

_LATLNG = re.compile(r"([+-]?\d+(?:\.\d+)?)\s*,\s*([+-]?\d+(?:\.\d+)?)")


def position(msg: Msg) -> tuple[float, float] | None:
    """The first ``"lat, lng"`` string among the payload's attributes (dojot's rule); an event-in message's
    attributes are under ``payload.data.attrs``."""
    payload = msg.get("payload")
    candidates: list[Any] = []
    if isinstance(payload, dict):
        candidates += list(payload.values())
        data = payload.get("data")
        if isinstance(data, dict) and isinstance(data.get("attrs"), dict):
            candidates += list(data["attrs"].values())
    for value in candidates:
        if isinstance(value, str):
            m = _LATLNG.search(value)
            if m:
                return float(m.group(1)), float(m.group(2))
    return None


def inside(point: tuple[float, float], polygon: list[tuple[float, float]]) -> bool:
    """Ray casting on (lat, lng) pairs, a point on an edge counted inside."""
    lat, lng = point
    result = False
    j = len(polygon) - 1
    for i in range(len(polygon)):
        lat_i, lng_i = polygon[i]
        lat_j, lng_j = polygon[j]
        if (lng_i > lng) != (lng_j > lng):
            cross = (lat_j - lat_i) * (lng - lng_i) / (lng_j - lng_i) + lat_i
            if lat < cross:
                result = not result
            elif lat == cross:
                return True
        j = i
    return result


def geofence(node: NodeJson, msg: Msg, ctx: RunContext) -> Result:
    point = position(msg)
    if point is None:
        raise NodeError("message has no geographic position attached")
    polygon = [(float(p["latitude"]), float(p["longitude"])) for p in node["points"]]
    hit = inside(point, polygon)
    if hit and (node.get("filter") or "inside") == "inside":
        if node.get("name"):
            location = msg.setdefault("location", {})
            if isinstance(location, dict):
                location.setdefault("isat", []).append(node["name"])
        return [msg]
    if not hit and node.get("filter") == "outside":
        return [msg]
    return []
