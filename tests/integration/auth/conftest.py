"""Fixtures of auth's integration tests: the real app (Flask test client) on a fresh PostgreSQL database, the
session's Redis (a key prefix of its own per app) and the session's Kafka-protocol broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask

from auth.app import build, close, prepare
from auth.settings import Settings
from ondas.service_identity import derive_service_key, service_authorization
from ondas.settings import CommonSettings
from tests.integration.auth.helpers import ADMIN_PASSWORD, MASTER_SECRET, AuthClient


@pytest.fixture(scope="session")
def make_settings(
    pg_database: Callable[[str], str], redis_url: str, kafka_bootstrap: str, tokens: Any
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        base = Settings(
            common=CommonSettings(
                kafka_bootstrap=kafka_bootstrap,
                auth_url="http://127.0.0.1:9",
                jwt_public_key_file=str(tokens.public_file),
                log_level="INFO",
                bind_host="127.0.0.1",
            ),
            http_port=0,
            db_url=pg_database("auth"),
            redis_url=redis_url,
            jwt_private_key_file=str(tokens.private_file),
            jwt_ttl_seconds=600,
            admin_password=ADMIN_PASSWORD,
            management_tenant="admin",
            service_master_secret=MASTER_SECRET,
            cache_ttl_seconds=600,
            cache_prefix=f"test:{uuid.uuid4().hex[:8]}:",
            passwd_min_len=8,
            passwd_history_len=3,
            passwd_reset_minutes=30,
            argon2_time_cost=2,
            argon2_memory_kib=19456,
        )
        return replace(base, **overrides)

    return make


@pytest.fixture(scope="session")
def start_auth() -> Iterator[Callable[[Settings], AuthClient]]:
    apps: list[Flask] = []

    def start(settings: Settings) -> AuthClient:
        prepare(settings)
        app = build(settings)
        apps.append(app)
        return AuthClient(app, settings)

    yield start
    for app in apps:
        close(app)


@pytest.fixture(scope="module")
def auth(make_settings: Callable[..., Settings], start_auth: Callable[[Settings], AuthClient]) -> AuthClient:
    """One auth per test module; tests keep apart by creating tenants with unique names."""
    return start_auth(make_settings())


@pytest.fixture(scope="session")
def service_headers() -> dict[str, str]:
    return {"Authorization": service_authorization("persister", derive_service_key(MASTER_SECRET, "persister"))}
