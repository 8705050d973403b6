"""schemathesis against docs/api/auth.yaml and a real auth (``python -m auth``: gunicorn on a fresh database,
Redis and the broker), called with a token of the management tenant's administrator: whatever the fuzzer sends,
the answer is never a 5xx and its status code is documented."""

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
from tests.integration.auth.helpers import ADMIN_PASSWORD, MASTER_SECRET, poll
from tests.waiting import http_ok

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[3] / "docs" / "api" / "auth.yaml"
schema = schemathesis.openapi.from_path(SPEC)


@pytest.fixture(scope="module")
def auth_server(
    pg_database: Callable[[str], str],
    redis_url: str,
    kafka_bootstrap: str,
    tokens: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "AUTH_HTTP_PORT": str(port),
        "AUTH_DB_URL": pg_database("authfuzz"),
        "AUTH_REDIS_URL": redis_url,
        "AUTH_CACHE_PREFIX": f"fuzz:{uuid.uuid4().hex[:8]}:",
        "AUTH_JWT_PRIVATE_KEY_FILE": str(tokens.private_file),
        "AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "AUTH_SERVICE_MASTER_SECRET": MASTER_SECRET,
        "ONDAS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
        "ONDAS_BIND_HOST": "127.0.0.1",
        "ONDAS_LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path_factory.mktemp("authfuzz") / "auth.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "auth"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: http_ok(f"{base}/health/ready"), bool, timeout=60)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        log_text = log_path.read_text(errors="replace")
        assert "Traceback" not in log_text, log_text[-3000:]


@pytest.fixture(scope="module")
def admin_headers(auth_server: str) -> dict[str, str]:
    r = requests.post(f"{auth_server}/", json={"username": "admin", "passwd": ADMIN_PASSWORD}, timeout=10)
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['jwt']}"}


@schema.exclude(path_regex="^/(health|metrics)").parametrize()
@settings(max_examples=8, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, auth_server: str, admin_headers: dict[str, str]) -> None:
    headers = dict(admin_headers)
    if case.path.startswith("/admin/"):
        from ondas.service_identity import derive_service_key, service_authorization

        headers = {"Authorization": service_authorization("fuzzer", derive_service_key(MASTER_SECRET, "fuzzer"))}
    if case.path in ("/revoke", "/auth/revoke"):
        # Revoking the shared token would only leave the later cases unauthenticated: use a token of its own.
        r = requests.post(f"{auth_server}/", json={"username": "admin", "passwd": ADMIN_PASSWORD}, timeout=10)
        headers = {"Authorization": f"Bearer {r.json()['jwt']}"}
    response = case.call(base_url=auth_server, headers=headers, timeout=15)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
