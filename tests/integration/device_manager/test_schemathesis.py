"""schemathesis against docs/api/device_manager.yaml and a real device manager (gunicorn on a fresh database,
a valid token): whatever the fuzzer sends, the answer is never a 5xx and its status code is documented."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, status_code_conformance

from ondasctl.ports import free_port
from tests.integration.device_manager.helpers import wait_for
from tests.waiting import http_ok

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[3] / "docs" / "api" / "device_manager.yaml"
schema = schemathesis.openapi.from_path(SPEC)
TENANT = "fuzz" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def device_manager(
    pg_database: Callable[[str], str], kafka_bootstrap: str, tokens: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DEVICE_MANAGER_DB_URL": pg_database("dmfuzz"),
        "DEVICE_MANAGER_HTTP_PORT": str(port),
        "DEVICE_MANAGER_HTTP_WORKERS": "1",
        "ONDAS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
        "ONDAS_BIND_HOST": "127.0.0.1",
        "ONDAS_LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path_factory.mktemp("fuzz") / "api.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "device_manager", "api"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ok(f"{base}/health/ready"), timeout=30, what="the device manager to be ready")
        # Something to find: a template with every kind of attribute, and a device built from it.
        headers = tokens.headers(TENANT)
        body = {
            "label": "fuzz",
            "attrs": [
                {"label": "t", "type": "dynamic", "value_type": "float"},
                {"label": "s", "type": "static", "value_type": "string", "static_value": "x"},
                {"label": "a", "type": "actuator", "value_type": "integer"},
            ],
        }
        requests.post(f"{base}/template", json=body, headers=headers, timeout=10).raise_for_status()
        requests.post(f"{base}/device", json={"label": "d", "templates": [1]}, headers=headers, timeout=10)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        if proc.returncode != 0:
            print(log_path.read_text()[-3000:])


@pytest.fixture(scope="module")
def auth(tokens: Any) -> dict[str, str]:
    return dict(tokens.headers(TENANT))


@schema.exclude(path_regex="^/(health|metrics)").parametrize()
@settings(
    max_examples=10,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Any, device_manager: str, auth: dict[str, str]) -> None:
    response = case.call(base_url=device_manager, headers=auth, timeout=10)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
