"""docs/api/flowbroker.yaml documents every route the API serves, and its references resolve."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask

from flowbroker.api import blueprint

pytestmark = pytest.mark.unit

SPEC = Path(__file__).resolve().parents[3] / "docs" / "api" / "flowbroker.yaml"


def _spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC.read_text())


def test_every_route_is_documented() -> None:
    app = Flask("t")
    app.register_blueprint(blueprint(None))  # type: ignore[arg-type]  (routes only; never called)
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    paths = _spec()["paths"]
    documented = {
        (re.sub(r"\{\w+\}", "{}", path), method)
        for path, ops in paths.items()
        for method in ops
        if method != "parameters"
    }
    assert {(re.sub(r"\{\w+\}", "{}", p), m) for p, m in served} <= documented
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert path in paths


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
