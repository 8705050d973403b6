"""docs/api/x509_mgmt.yaml documents every route the service serves, and its references resolve."""

from __future__ import annotations

import pytest

from tests.openapi_checks import assert_references_resolve, assert_routes_documented, blueprint_routes, load_spec
from x509_mgmt.api import blueprint

pytestmark = pytest.mark.unit

SPEC = "x509_mgmt.yaml"


def test_every_route_is_documented() -> None:
    served = blueprint_routes(blueprint(None))  # type: ignore[arg-type]  (routes only; never called)
    assert_routes_documented(served, load_spec(SPEC))


def test_every_reference_resolves() -> None:
    assert_references_resolve(load_spec(SPEC))
