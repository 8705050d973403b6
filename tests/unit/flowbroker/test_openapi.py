"""docs/api/flowbroker.yaml documents every route the service serves, and its references resolve."""

from __future__ import annotations

import pytest

from flowbroker.api import blueprint
from tests.openapi_checks import assert_references_resolve, assert_routes_documented, blueprint_routes, load_spec

pytestmark = pytest.mark.unit

SPEC = "flowbroker.yaml"


def test_every_route_is_documented() -> None:
    served = blueprint_routes(blueprint(None))  # type: ignore[arg-type]  (routes only; never called)
    assert_routes_documented(served, load_spec(SPEC))


def test_every_reference_resolves() -> None:
    assert_references_resolve(load_spec(SPEC))
