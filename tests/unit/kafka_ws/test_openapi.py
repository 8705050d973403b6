"""docs/api/kafka_ws.yaml documents every HTTP route the service serves, and its references resolve."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kafka_ws.api import Connections, health_routes, routes

pytestmark = pytest.mark.unit

SPEC = Path(__file__).resolve().parents[3] / "docs" / "api" / "kafka_ws.yaml"


def _spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC.read_text())


def test_every_route_is_documented() -> None:
    defs = routes(None, None, None, Connections(), queue_size=1, max_lifetime_seconds=1)  # type: ignore[arg-type]
    defs += health_routes(None, None, None)
    served = {
        (re.sub(r"\{[^}]+\}", "{}", d.path), d.method.lower())
        for d in defs
        if "{tail" not in d.path  # the catch-all that closes stray websockets with 4400
    }
    documented = {
        (re.sub(r"\{[\w.]+\}", "{}", path), method) for path, ops in _spec()["paths"].items() for method in ops
    }
    assert served <= documented, served - documented


def test_every_reference_resolves() -> None:
    spec = _spec()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    target: Any = spec
                    for part in value.removeprefix("#/").split("/"):
                        target = target[part]
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
