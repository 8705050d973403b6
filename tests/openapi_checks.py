"""What every service's OpenAPI test checks, once: the document under docs/api/, the routes it documents, the
routes a Flask blueprint serves, and that every ``$ref`` resolves."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Flask

API_DOCS = Path(__file__).resolve().parents[1] / "docs" / "api"

Route = tuple[str, str]  # (path with every parameter written "{}", lower-case method)


def load_spec(name: str) -> dict[str, Any]:
    """``docs/api/<name>``, parsed."""
    spec: dict[str, Any] = yaml.safe_load((API_DOCS / name).read_text())
    return spec


def _generic(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def documented_routes(spec: dict[str, Any]) -> set[Route]:
    return {(_generic(path), method) for path, ops in spec["paths"].items() for method in ops if method != "parameters"}


def routes(pairs: Iterable[tuple[str, str]]) -> set[Route]:
    """(path, method) pairs with any parameter style (``{x}``, ``<x>``, ``<int:x>``) made generic."""
    return {(_generic(re.sub(r"<(?:\w+:)?\w+>", "{}", path)), method.lower()) for path, method in pairs}


def blueprint_routes(bp: Blueprint) -> set[Route]:
    """The routes ``bp`` serves (HEAD and OPTIONS left out)."""
    app = Flask("openapi-check")
    app.register_blueprint(bp)
    return routes(
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    )


def assert_routes_documented(served: set[Route], spec: dict[str, Any], health: bool = True) -> None:
    missing = served - documented_routes(spec)
    assert not missing, f"served but not documented: {sorted(missing)}"
    if health:
        for path in ("/health/live", "/health/ready", "/metrics"):
            assert path in spec["paths"], path


def assert_references_resolve(spec: dict[str, Any]) -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    target: Any = spec
                    for part in value.removeprefix("#/").split("/"):
                        assert isinstance(target, dict) and part in target, f"unresolved $ref {value}"
                        target = target[part]
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
