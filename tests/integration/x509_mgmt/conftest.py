"""Fixtures of the x509_mgmt integration tests: the real app on a fresh PostgreSQL database, its CA in a
temporary directory, and a real HTTP server for the device manager's internal route."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.integration.x509_mgmt.helpers import DeviceRoute, make_settings
from x509_mgmt.app import build_api, close_api
from x509_mgmt.settings import Settings


@pytest.fixture(scope="package")
def device_route() -> Iterator[DeviceRoute]:
    route = DeviceRoute()
    yield route
    route.close()


@pytest.fixture(scope="package")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CA for the package (bootstrapping one per test would only cost time)."""
    return tmp_path_factory.mktemp("x509")


@pytest.fixture
def settings(
    pg_database: Callable[[str], str], kafka_bootstrap: str, tokens: Any, ca_dir: Path, device_route: DeviceRoute
) -> Settings:
    return make_settings(pg_database("x509"), kafka_bootstrap, str(tokens.public_file), ca_dir, device_route.url)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = build_api(settings)
    yield application
    close_api(application)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c
