"""docs/api/http_agent.yaml documents what the agent answers."""

from pathlib import Path

import pytest
import yaml

from agents.http.api import PREFIX
from agents.http.messages import STATUS

pytestmark = pytest.mark.unit

SPEC = Path(__file__).resolve().parents[3] / "docs" / "api" / "http_agent.yaml"


def _spec() -> dict:
    return yaml.safe_load(SPEC.read_text())


def test_both_routes_with_basic_credentials_and_their_statuses():
    spec = _spec()
    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["basic"] == {
        "type": "http",
        "scheme": "basic",
        "description": spec["components"]["securitySchemes"]["basic"]["description"],
    }
    one = spec["paths"][PREFIX]["post"]
    many = spec["paths"][f"{PREFIX}/create-many"]["post"]
    assert {"204", "400", "401", "403", "404", "413", "422", "503"} == set(one["responses"])
    assert {"204", "207", "400", "401", "403", "404", "413", "422", "503"} == set(many["responses"])


def test_every_refusal_reason_is_documented_with_its_status():
    spec = _spec()
    reasons = set(spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"])
    assert set(STATUS) - {"internal_error"} <= reasons
    documented = {str(status) for status in STATUS.values() if status != 500}
    assert documented <= set(spec["paths"][PREFIX]["post"]["responses"])


def test_a_message_is_ts_and_data_only():
    message = _spec()["components"]["schemas"]["Message"]
    assert message["required"] == ["data"]
    assert set(message["properties"]) == {"ts", "data"}
    assert message["additionalProperties"] is False
