"""schemathesis against docs/api/history.yaml and a real history process (gunicorn) reading the real store with
data in it: whatever the fuzzer sends, the answer is never a 5xx and its status code is documented."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, status_code_conformance

from ondas.timestamps import parse_timestamp
from ondasctl.ports import free_port
from persister.models import Point
from persister.store_mongo import MongoPointStore
from tests.waiting import http_ok, wait_for

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[3] / "docs" / "api" / "history.yaml"
schema = schemathesis.openapi.from_path(SPEC)
TENANT = "fuzz" + uuid.uuid4().hex[:8]
PREFIX = "ondas_history_"


@pytest.fixture(scope="module")
def history(mongo_url: str, tokens: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = MongoPointStore(mongo_url, PREFIX)
    t0 = parse_timestamp("2018-06-05T18:00:00Z")
    store.write(TENANT, [Point("3bb9", "temperature", 20.5 + i, t0 + 1000 * i, {"protocol": "mqtt"}) for i in range(5)])
    store.close()
    port = free_port()
    env = {
        **os.environ,
        "HISTORY_MONGO_URL": mongo_url,
        "HISTORY_HTTP_PORT": str(port),
        "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
        "ONDAS_LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path_factory.mktemp("fuzz") / "history.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "history"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ok(f"{base}/health/ready"), timeout=30, what="history to be ready")
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


@schema.exclude(path_regex="^/(health|metrics)").parametrize()
@settings(max_examples=40, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, history: str, tokens: Any) -> None:
    response = case.call(base_url=history, headers=dict(tokens.headers(TENANT)), timeout=10)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance])


def test_the_fuzzed_service_finds_the_data(history: str, tokens: Any) -> None:
    """The fuzzing above is meaningful only if the service answers with data for a real device."""
    r = requests.get(
        f"{history}/device/3bb9/history?lastN=2&attr=temperature", headers=tokens.headers(TENANT), timeout=10
    )
    assert r.status_code == 200
    assert [e["value"] for e in r.json()] == [24.5, 23.5]
