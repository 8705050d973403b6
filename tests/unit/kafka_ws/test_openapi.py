"""docs/api/kafka_ws.yaml documents every HTTP route the service serves, and its references resolve."""

from __future__ import annotations

import pytest

from kafka_ws.api import Connections, health_routes, routes
from tests.openapi_checks import assert_references_resolve, assert_routes_documented, load_spec
from tests.openapi_checks import routes as generic_routes

pytestmark = pytest.mark.unit

SPEC = "kafka_ws.yaml"


def test_every_route_is_documented() -> None:
    defs = routes(None, None, None, Connections(), queue_size=1, max_lifetime_seconds=1)  # type: ignore[arg-type]
    defs += health_routes(None, None, None)
    served = generic_routes(
        (d.path, d.method)
        for d in defs
        if "{tail" not in d.path  # the catch-all that closes stray websockets with 4400
    )
    assert_routes_documented(served, load_spec(SPEC))


def test_every_reference_resolves() -> None:
    assert_references_resolve(load_spec(SPEC))
