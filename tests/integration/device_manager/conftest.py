"""Fixtures of the device manager's integration tests: the real app on a fresh database, the outbox relay
in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from device_manager.app import build_api, close_api
from device_manager.settings import Settings
from tests.integration.device_manager.helpers import Api, RelayRunner, make_settings


@pytest.fixture(autouse=True, scope="package")
def signature_only() -> Iterator[None]:
    """These tests sign their own tokens (tests/tokens.py) and run no auth: the device manager checks token
    signatures only and leaves internal routes unchecked (ONDAS_AUTHZ=signature, also for the processes the tests
    start). tests/e2e/test_direct_ports.py covers the full check against the real auth."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ONDAS_AUTHZ", "signature")
        yield


@pytest.fixture
def dm_db(pg_database: Callable[[str], str]) -> str:
    return pg_database("dm")


@pytest.fixture
def settings(dm_db: str, kafka_bootstrap: str, tokens: Any) -> Settings:
    return make_settings(dm_db, kafka_bootstrap, str(tokens.public_file))


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = build_api(settings)
    yield application
    close_api(application)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


@pytest.fixture
def start_relay(settings: Settings) -> Iterator[Callable[[], RelayRunner]]:
    runners: list[RelayRunner] = []

    def start() -> RelayRunner:
        runner = RelayRunner(settings).start()
        runners.append(runner)
        return runner

    yield start
    for r in runners:
        r.stop()


@pytest.fixture
def relay(start_relay: Callable[[], RelayRunner]) -> RelayRunner:
    return start_relay()


@pytest.fixture
def api(client: FlaskClient, tokens: Any, unique: str) -> Api:
    """The API as the tenant ``unique``."""
    return Api(client, tokens.headers(unique))
