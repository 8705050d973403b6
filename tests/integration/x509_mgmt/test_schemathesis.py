"""schemathesis against docs/api/x509_mgmt.yaml and a real x509_mgmt (gunicorn on a fresh database, its CA, a
real HTTP server for the device manager's internal route, a valid token): whatever the fuzzer sends, the
answer is never a 5xx and its status code is documented."""

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
from tests.integration.x509_mgmt.helpers import DeviceRoute
from tests.unit.x509_mgmt import pki
from tests.waiting import http_ok, wait_for

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[3] / "docs" / "api" / "x509_mgmt.yaml"
schema = schemathesis.openapi.from_path(SPEC)
TENANT = "fuzz" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def x509_mgmt(
    pg_database: Callable[[str], str],
    kafka_bootstrap: str,
    tokens: Any,
    tmp_path_factory: pytest.TempPathFactory,
    device_route: DeviceRoute,
) -> Iterator[str]:
    port = free_port()
    data = tmp_path_factory.mktemp("x509fuzz")
    env = {
        **os.environ,
        "X509_MGMT_DB_URL": pg_database("x509fuzz"),
        "X509_MGMT_HTTP_PORT": str(port),
        "X509_MGMT_HTTP_WORKERS": "1",
        "X509_MGMT_DATA_DIR": str(data / "ca"),
        "X509_MGMT_DEVICE_MANAGER_URL": device_route.url,
        "ONDAS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
        "ONDAS_BIND_HOST": "127.0.0.1",
        "ONDAS_LOG_LEVEL": "WARNING",
        "ONDAS_AUTHZ": "signature",  # test tokens, no auth
    }
    log_path = data / "api.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "x509_mgmt", "api"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ok(f"{base}/health/ready"), timeout=30, what="x509_mgmt to be ready")
        # Something to find: a device with a certificate, and a trusted CA.
        device_route.add(TENANT, "abc123")
        headers = tokens.headers(TENANT)
        requests.post(
            f"{base}/x509/v1/certificates", json={"csr": pki.csr_pem("abc123")}, headers=headers, timeout=10
        ).raise_for_status()
        requests.post(
            f"{base}/x509/v1/trusted-cas", json={"caPem": pki.pem(pki.ca_cert("Fuzz")[0])}, headers=headers, timeout=10
        ).raise_for_status()
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
@settings(max_examples=25, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, x509_mgmt: str, auth: dict[str, str]) -> None:
    response = case.call(base_url=x509_mgmt, headers=auth, timeout=10)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
