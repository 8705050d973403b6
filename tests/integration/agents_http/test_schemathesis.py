"""schemathesis against docs/api/http_agent.yaml and a real HTTP agent (gunicorn, real Kafka-protocol broker and
Redis) with a device's valid credentials: whatever the fuzzer sends, the answer is never a 5xx and its status
code is documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, status_code_conformance

from tests.integration.agents_http.conftest import URL, HttpAgent, basic

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[3] / "docs" / "api" / "http_agent.yaml"
schema = schemathesis.openapi.from_path(SPEC)


@schema.exclude(path_regex="^/(health|metrics)").parametrize()
@settings(max_examples=40, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, agent: HttpAgent, passwords: dict, tenant: str) -> None:
    auth = basic(tenant, "typed", passwords[(tenant, "typed")])
    response = case.call(base_url=agent.base, headers={"Authorization": auth}, timeout=30)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance])


def test_the_fuzzed_agent_accepts_a_valid_message(agent: HttpAgent, passwords: dict, tenant: str) -> None:
    """The fuzzing above is meaningful only if the credentials it uses are accepted."""
    r = agent.post(URL, {"data": {"temperature": 1.5}}, auth=(tenant, "typed", passwords[(tenant, "typed")]))
    assert r.status_code == 204, r.text
