from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.servers import Servers


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    from ondas.kafka import close_producer

    s = Servers()
    yield s
    close_producer()  # before the broker goes away, so nothing retries against a closed port
    s.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(servers: Servers) -> str:
    return servers.ensure("kafka").kafka_bootstrap


@pytest.fixture(scope="session")
def mongo_url(servers: Servers) -> str:
    return servers.ensure("mongo").mongo_url


@pytest.fixture(scope="session")
def redis_url(servers: Servers) -> str:
    return servers.ensure("redis").redis_url


@pytest.fixture(scope="session")
def pg_database(servers: Servers) -> Callable[[str], str]:
    """A factory: ``pg_database("prefix")`` creates a fresh database and returns its URL."""
    from ondasctl.infra import create_databases

    cfg = servers.ensure("postgres")

    def make(prefix: str = "test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        create_databases(cfg, [name])
        return cfg.postgres_url(name)

    return make


@pytest.fixture(scope="session")
def mosquitto(servers: Servers) -> Servers:
    """The platform's Mosquitto with its generated config. Ports: cfg.ports['mqtt'|'mqtts'|'mqtt_internal'];
    agent login: ondasctl.infra.MQTT_AGENT_USER / cfg.secret('mqtt-agent')."""
    servers.ensure("mosquitto")
    return servers


@pytest.fixture
def unique() -> str:
    """A short unique lowercase name for tenants, groups and topics of one test."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def tokens(tmp_path_factory: pytest.TempPathFactory):
    """Signs test tokens; ``tokens.public_file`` is what services get as ONDAS_JWT_PUBLIC_KEY_FILE."""
    from tests.tokens import TokenMaker

    return TokenMaker(tmp_path_factory.mktemp("keys"))
