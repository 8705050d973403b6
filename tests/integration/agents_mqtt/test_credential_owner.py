"""The MQTT agent owns the device credential store: it writes a device's password (its credentials API) and, with
no other agent running, deletes it when the device manager announces the device's removal. Real agent process,
real Mosquitto (unsecured mode: the store is the only place a password is kept), real Kafka-protocol broker and
Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from confluent_kafka import Producer

from agents.core.credentials_redis import RedisCredentialStore
from ondas.contracts import DeviceEvent
from ondas.topics import device_events
from ondasctl.ports import free_port
from tests.integration.agents_mqtt.conftest import Agent, Stub, launch_agent, wait_until
from tests.servers import DEVICE_CREDENTIALS_KEY, Servers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(redis_url: str) -> Iterator[RedisCredentialStore]:
    s = RedisCredentialStore.from_url(redis_url, integrity_key=DEVICE_CREDENTIALS_KEY)
    yield s
    s.close()


@pytest.fixture(scope="module")
def owner(
    mosquitto: Servers,
    kafka_bootstrap: str,
    redis_url: str,
    stub: Stub,
    tokens: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Agent, str]]:
    """The MQTT agent alone (no HTTP agent anywhere for this module's tenant), with its API and the store."""
    api_port = free_port()
    log_path = tmp_path_factory.mktemp("mqtt-agent-owner") / "agent.log"
    a = launch_agent(
        mosquitto,
        kafka_bootstrap,
        stub,
        log_path,
        "test-agent-" + uuid.uuid4().hex[:8],
        extra_env={
            "MQTT_AGENT_API_PORT": str(api_port),
            "MQTT_AGENT_REDIS_URL": redis_url,
            "MQTT_AGENT_CREDENTIALS_KEY": DEVICE_CREDENTIALS_KEY,
            "MQTT_AGENT_LIVENESS": "off",
            "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
        },
    )
    yield a, f"http://127.0.0.1:{api_port}"
    assert a.stop() == 0, log_path.read_text()[-5000:]


def new_password(api: str, tokens: Any, tenant: str, device_id: str) -> str:
    r = requests.post(
        f"{api}/basic-auth/v1/devices/{device_id}/basic-credentials", headers=tokens.headers(tenant), timeout=20
    )
    assert r.status_code == 200, r.text
    password: str = r.json()["password"]
    return password


def test_removing_a_device_removes_its_credentials_with_only_the_mqtt_agent_running(
    owner: tuple[Agent, str], store: RedisCredentialStore, tokens: Any, tenant: str, kafka_bootstrap: str
) -> None:
    agent, api = owner
    removed, kept = new_password(api, tokens, tenant, "dev2"), new_password(api, tokens, tenant, "dev3")
    assert store.verify(tenant, "dev2", removed) and store.verify(tenant, "dev3", kept)

    # The removal as the device manager's outbox relay publishes it: key = device id, the event as the value.
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(device_events(tenant), DeviceEvent.removed(tenant, "dev2").to_bytes(), key="dev2")
    assert producer.flush(10) == 0

    wait_until(lambda: not store.has_password(tenant, "dev2"), 20, "the removed device's credentials to go")
    assert store.has_password(tenant, "dev3"), "another device's credentials went too"
    assert agent.alive()
