from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

SPEC = Path(__file__).resolve().parents[3] / "docs" / "api" / "history.yaml"


def test_openapi_documents_the_route_its_parameters_and_the_no_data_rule() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    assert spec["openapi"].startswith("3.")
    op = spec["paths"]["/device/{device_id}/history"]["get"]
    assert {p["name"] for p in op["parameters"]} == {
        "device_id",
        "attr",
        "lastN",
        "firstN",
        "hLimit",
        "dateFrom",
        "dateTo",
        "shape",
        "kind",
    }
    assert {"200", "400", "401", "404"} <= set(op["responses"])
    assert set(op["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert set(op["responses"]["200"]["headers"]) == {"X-Ondas-Truncated", "Link"}
    latest = spec["paths"]["/device/{device_id}/latest"]["get"]
    assert {p["name"] for p in latest["parameters"]} == {"device_id", "attr"}
    assert {"200", "401", "404"} <= set(latest["responses"])
    # Only an unknown device is a 404 (dojot issue #1340): no "Attr not found" any more.
    assert spec["components"]["schemas"]["NotFound"]["allOf"][1]["properties"]["title"]["enum"] == ["Device not found"]
    assert "#1340" in spec["info"]["description"]
