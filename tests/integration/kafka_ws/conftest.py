"""Fixtures of kafka_ws's integration tests: the real process (``python -m kafka_ws``) against the session's
Kafka-protocol broker and Redis, with tokens signed by the test key (ONDAS_AUTHZ=signature: the token check is
TokenCheck's, without auth) and auth's tenant list served by tests/auth_stub.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ondas import kafka
from ondas.topics import device_data
from tests.auth_stub import AuthStub
from tests.integration.kafka_ws.helpers import KafkaWsProcess


def _tenant() -> str:
    return "kws" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="package")
def tenants() -> tuple[str, str]:
    """Two tenants, A and B, that every kafka_ws process of these tests serves."""
    return _tenant(), _tenant()


@pytest.fixture(scope="package")
def auth_stub(tenants: tuple[str, str]) -> Iterator[AuthStub]:
    stub = AuthStub(list(tenants))
    yield stub
    stub.close()


@pytest.fixture(scope="package")
def base_env(
    kafka_bootstrap: str, redis_url: str, tokens: Any, auth_stub: AuthStub, tenants: tuple[str, str]
) -> dict[str, str]:
    kafka.ensure_topics(kafka_bootstrap, [device_data(t) for t in tenants])
    return {
        "ONDAS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "ONDAS_AUTH_URL": auth_stub.url,
        "ONDAS_AUTHZ": "signature",
        "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
        "ONDAS_BIND_HOST": "127.0.0.1",
        "ONDAS_LOG_LEVEL": "INFO",
        "KAFKA_WS_REDIS_URL": redis_url,
        "KAFKA_WS_TICKET_SECRET": "test-secret-" + uuid.uuid4().hex,
    }


@pytest.fixture(scope="package")
def start_kafka_ws(
    base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., KafkaWsProcess]]:
    """``start_kafka_ws(**env)``: a kafka_ws process with these settings on top of the base ones, ready."""
    started: list[KafkaWsProcess] = []

    def start(ready: bool = True, **env: str) -> KafkaWsProcess:
        log = tmp_path_factory.mktemp("kafka_ws") / "kafka_ws.log"
        proc = KafkaWsProcess({**base_env, **env}, log)
        started.append(proc)
        return proc.wait_ready() if ready else proc.wait_live()

    yield start
    codes = {p.log_file: p.stop() for p in started}
    bad = {str(path): Path(path).read_text()[-3000:] for path, code in codes.items() if code != 0}
    assert not bad, bad


@pytest.fixture(scope="package")
def kws(start_kafka_ws: Callable[..., KafkaWsProcess]) -> KafkaWsProcess:
    """The package's shared kafka_ws process (default settings)."""
    return start_kafka_ws()
