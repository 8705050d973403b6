"""Both agents as real processes side by side (``python -m agents.mqtt`` on the real Mosquitto,
``python -m agents.http`` under gunicorn), one tenant and one device, the real Kafka-protocol broker and Redis:

- the same device message, sent over MQTT and over HTTP, becomes the same device-data record: key, value and
  headers compared byte for byte as a Kafka consumer reads them (the MQTT agent adds only its ``ondas-agent``
  header, last: its processes split the devices between them);
- the credential store has one owner: a device gets its password from the MQTT agent's API, the HTTP agent
  takes it, and once the device manager announces the device's removal the MQTT agent deletes it and the HTTP
  agent refuses the password (401).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from confluent_kafka import Consumer, Producer

from agents.core.credentials_redis import RedisCredentialStore
from ondas.contracts import DeviceEvent
from ondas.kafka import consumer_config
from ondas.topics import device_data, device_events
from ondasctl.ports import free_port
from tests.integration.agents_http.conftest import URL, HttpAgent, launch_http_agent
from tests.integration.agents_mqtt.conftest import (
    Agent,
    DeviceClient,
    Stub,
    device,
    launch_agent,
    typed_device,
    wait_until,
)
from tests.servers import DEVICE_CREDENTIALS_KEY, Servers

pytestmark = pytest.mark.integration

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers: as the consumer got them


@pytest.fixture(scope="module")
def tenant() -> str:
    return "c" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def stub(tenant: str) -> Iterator[Stub]:
    s = Stub()
    s.tenants = [tenant]
    s.devices[tenant] = [typed_device("typed"), device("gone1")]
    yield s
    s.close()


@pytest.fixture(scope="module")
def store(redis_url: str) -> Iterator[RedisCredentialStore]:
    s = RedisCredentialStore.from_url(redis_url, integrity_key=DEVICE_CREDENTIALS_KEY)
    yield s
    s.close()


@pytest.fixture(scope="module")
def mqtt_agent(
    mosquitto: Servers,
    kafka_bootstrap: str,
    redis_url: str,
    stub: Stub,
    tokens: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Agent, str]]:
    api_port = free_port()
    log_path = tmp_path_factory.mktemp("both-mqtt") / "agent.log"
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


@pytest.fixture(scope="module")
def http_agent(
    kafka_bootstrap: str, redis_url: str, stub: Stub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpAgent]:
    log_path = tmp_path_factory.mktemp("both-http") / "agent.log"
    a = launch_http_agent(kafka_bootstrap, redis_url, stub, log_path, extra_env={"HTTP_AGENT_LIVENESS_TIMEOUT": "0"})
    yield a
    assert a.stop() == 0, log_path.read_text()[-5000:]


@pytest.fixture
def records(kafka_bootstrap: str, tenant: str) -> Iterator[Callable[[int, str], list[Record]]]:
    """The raw records on the tenant's device-data topic whose attrs carry a mark, read from the beginning."""
    consumer = Consumer(consumer_config(kafka_bootstrap, "test-" + uuid.uuid4().hex))
    consumer.subscribe([device_data(tenant)])
    got: list[Record] = []

    def read(count: int, mark: str) -> list[Record]:
        def enough() -> list[Record] | None:
            for m in consumer.consume(100, timeout=0.2):
                if m.error() is None and json.loads(m.value() or b"{}")["attrs"].get("mark") == mark:
                    got.append((m.key() or b"", m.value() or b"", [(k, v or b"") for k, v in m.headers() or []]))
            return got if len(got) >= count else None

        return list(wait_until(enough, 30, f"{count} record(s) marked {mark}"))

    yield read
    consumer.close()


def new_password(api: str, tokens: Any, tenant: str, device_id: str) -> str:
    r = requests.post(
        f"{api}/basic-auth/v1/devices/{device_id}/basic-credentials", headers=tokens.headers(tenant), timeout=20
    )
    assert r.status_code == 200, r.text
    password: str = r.json()["password"]
    return password


def test_both_agents_make_the_same_record_of_the_same_message(
    mqtt_agent: tuple[Agent, str],
    http_agent: HttpAgent,
    mosquitto: Servers,
    tokens: Any,
    tenant: str,
    records: Callable[[int, str], list[Record]],
) -> None:
    _, api = mqtt_agent
    password = new_password(api, tokens, tenant, "typed")
    mark = uuid.uuid4().hex
    values = {"temperature": 21.5, "count": 3, "mark": mark}  # "mark" is none of the device's attributes
    gathered = "2021-06-16T09:32:01.683Z"  # the device's time: the agent time would differ between the two

    mqtt_device = DeviceClient(mosquitto.cfg.host, mosquitto.cfg.ports["mqtt"], tenant, "typed")
    try:
        mqtt_device.publish(json.dumps({**values, "timestamp": gathered}))
        [over_mqtt] = records(1, mark)  # first, so the two are told apart by their order on the partition
    finally:
        mqtt_device.close()
    r = http_agent.post(URL, {"ts": gathered, "data": values}, auth=(tenant, "typed", password))
    assert r.status_code == 204, r.text
    _, over_http = records(2, mark)

    (mqtt_key, mqtt_value, mqtt_headers), (http_key, http_value, http_headers) = over_mqtt, over_http
    assert mqtt_key == http_key == b"typed"
    assert mqtt_value == http_value
    assert json.loads(http_value)["metadata"] == {"deviceid": "typed", "tenant": tenant, "timestamp": 1623835921683}
    # Every header the HTTP agent sends, byte for byte and in the same order; the MQTT agent's process last.
    assert (
        mqtt_headers[:-1]
        == http_headers
        == [
            ("content-type", b"application/json"),
            ("ondas-tenant", tenant.encode()),
            ("ondas-device", b"typed"),
        ]
    )
    name, forwarder = mqtt_headers[-1]
    assert name == "ondas-agent" and forwarder.rpartition(b":")[2].isdigit()


def test_a_removed_device_loses_its_credentials_and_the_http_agent_refuses_it(
    mqtt_agent: tuple[Agent, str],
    http_agent: HttpAgent,
    store: RedisCredentialStore,
    tokens: Any,
    tenant: str,
    kafka_bootstrap: str,
) -> None:
    _, api = mqtt_agent
    auth = (tenant, "gone1", new_password(api, tokens, tenant, "gone1"))
    assert http_agent.post(URL, {"data": {}}, auth=auth).status_code == 204
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(device_events(tenant), DeviceEvent.removed(tenant, "gone1").to_bytes(), key="gone1")
    assert producer.flush(10) == 0
    wait_until(lambda: not store.has_password(tenant, "gone1"), 20, "the credentials to be deleted")
    # The deletion is announced: the HTTP agent drops its remembered verdict at once.
    wait_until(lambda: http_agent.post(URL, {"data": {}}, auth=auth).status_code == 401, 10, "the password refused")
