"""Credentials mode end to end: a Mosquitto of its own whose device listener asks each device for its password
(dynamic security plugin + the %u ACL file), the agent provisioning it, real paho devices.

Covers: per-device credentials through the authenticated REST route (shown once, replaced on request),
identity/topic binding for password logins, cross-device and cross-tenant attempts, wrong passwords, and a
removed device kicked within 5 s and refused afterwards."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
import redis
import requests
from confluent_kafka import Producer
from paho.mqtt.enums import CallbackAPIVersion

from agents.core.credentials_redis import tenant_key
from ondas.contracts import DeviceEvent, TenancyEvent
from ondas.timestamps import now_ms
from ondas.topics import TENANCY_TOPIC
from ondasctl import infra
from ondasctl.ports import free_port
from tests.integration.agents_mqtt.conftest import Agent, Broker, Stub, device, launch_agent, own_broker, wait_until
from tests.servers import DEVICE_CREDENTIALS_KEY

pytestmark = pytest.mark.integration

LIVENESS = "mqtt_agent_liveness_events_total"
KICK_WITHIN_S = 5.0  # the bound for a removed device's session to end


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with own_broker("credentials") as b:
        yield b


@pytest.fixture(scope="module")
def cagent(
    broker: Broker,
    kafka_bootstrap: str,
    redis_url: str,
    stub: Stub,
    tokens: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Agent, str]]:
    cfg = broker.cfg
    api_port = free_port()
    log_path = tmp_path_factory.mktemp("mqtt-agent-creds") / "agent.log"
    a = launch_agent(
        broker,  # type: ignore[arg-type]
        kafka_bootstrap,
        stub,
        log_path,
        "test-agent-" + uuid.uuid4().hex[:8],
        extra_env={
            "MQTT_AGENT_DYNSEC_PORT": str(cfg.ports["mqtt"]),
            "MQTT_AGENT_DYNSEC_USERNAME": infra.MQTT_DYNSEC_ADMIN,
            "MQTT_AGENT_DYNSEC_PASSWORD": cfg.secret("mqtt-dynsec"),
            "MQTT_AGENT_API_PORT": str(api_port),
            "MQTT_AGENT_REDIS_URL": redis_url,
            "MQTT_AGENT_CREDENTIALS_KEY": DEVICE_CREDENTIALS_KEY,
            "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
        },
    )
    yield a, f"http://127.0.0.1:{api_port}"
    assert a.stop() == 0, log_path.read_text()[-5000:]


def credentials(api: str, tokens: Any, tenant: str, device_id: str) -> dict[str, str]:
    resp = requests.post(
        f"{api}/basic-auth/v1/devices/{device_id}/basic-credentials", headers=tokens.headers(tenant), timeout=20
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"username", "password"}
    return body


class PwDevice:
    """A paho MQTT v5 client logging in with a username and password; records how its sessions end."""

    def __init__(self, cfg: Any, username: str, password: str | None) -> None:
        self.username = username
        self.received: list[tuple[str, bytes]] = []
        self.connack: list[Any] = []
        self.disconnected = threading.Event()
        self._connack = threading.Event()
        self._subacks: list[int] = []
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"pw-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
        )
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnected.set()
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subacks.append(mid)
        self.client.connect(cfg.host, cfg.ports["mqtt"])
        self.client.loop_start()
        assert self._connack.wait(10), "no CONNACK"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack.append(rc)
        if rc.is_failure:
            client.disconnect()  # a refused device does not retry in these tests
        self._connack.set()

    @property
    def accepted(self) -> bool:
        return bool(self.connack) and not self.connack[0].is_failure

    def publish(self, payload: str, topic: str | None = None) -> None:
        self.client.publish(topic or f"{self.username}/attrs", payload, qos=1).wait_for_publish(10)

    def subscribe(self, topic: str) -> None:
        _, mid = self.client.subscribe(topic, qos=1)
        wait_until(lambda: mid in self._subacks, 10, "SUBACK")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def connect(broker: Broker) -> Iterator[Any]:
    opened: list[PwDevice] = []

    def make(username: str, password: str | None) -> PwDevice:
        d = PwDevice(broker.cfg, username, password)
        opened.append(d)
        return d

    yield make
    for d in opened:
        d.close()


def test_route_needs_a_token_and_an_existing_device(cagent, tenant, tokens):
    _, api = cagent
    url = f"{api}/basic-auth/v1/devices/dev1/basic-credentials"
    assert requests.post(url, timeout=10).status_code == 401
    ghost = requests.post(url.replace("dev1", "ghost"), headers=tokens.headers(tenant), timeout=10)
    assert ghost.status_code == 404
    # Another tenant's token addresses that tenant's devices only: dev1 does not exist there.
    other = requests.post(url, headers=tokens.headers("t" + uuid.uuid4().hex[:10]), timeout=10)
    assert other.status_code == 404


def test_password_login_binds_identity_and_topics(cagent, tenant, tokens, connect, reader):
    _, api = cagent
    c1 = credentials(api, tokens, tenant, "dev1")
    c2 = credentials(api, tokens, tenant, "dev2")
    assert c1["username"] == f"{tenant}:dev1" and c1["password"] != c2["password"]

    dev1 = connect(c1["username"], c1["password"])
    assert dev1.accepted
    mark = uuid.uuid4().hex
    dev1.publish(json.dumps({"mark": mark}))
    assert reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)["key"] == "dev1"

    # Refused logins: a wrong password, no password, another device's password, a device without credentials.
    assert not connect(c1["username"], "wrong").accepted
    assert not connect(c1["username"], None).accepted
    assert not connect(c1["username"], c2["password"]).accepted
    assert not connect(f"{tenant}:dev3", "anything").accepted

    # Cross-device and cross-tenant: publishes go nowhere, subscriptions receive nothing.
    dev2 = connect(c2["username"], c2["password"])
    dev2.subscribe(f"{tenant}:dev1/config")
    dev2.subscribe(f"{tenant}:dev2/config")
    agent, _ = cagent
    foreign = agent.metric("mqtt_agent_messages_received_total", tenant="_unknown")
    spoof = uuid.uuid4().hex
    dev2.publish(json.dumps({"mark": spoof}), topic=f"{tenant}:dev1/attrs")
    dev2.publish(json.dumps({"mark": spoof}), topic="other:dev1/attrs")
    after = uuid.uuid4().hex
    dev2.publish(json.dumps({"mark": after}))
    reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == after)
    assert not [m for m in reader.messages if m["value"]["attrs"].get("mark") == spoof]
    # The other tenant's topic never reached the agent either (it would count it under "_unknown").
    assert agent.metric("mqtt_agent_messages_received_total", tenant="_unknown") == foreign


def test_configure_reaches_only_its_device(cagent, tenant, tokens, connect, send_event):
    _, api = cagent
    c1 = credentials(api, tokens, tenant, "dev1")
    c2 = credentials(api, tokens, tenant, "dev2")
    dev1, dev2 = connect(c1["username"], c1["password"]), connect(c2["username"], c2["password"])
    dev1.subscribe(f"{tenant}:dev1/config")
    dev2.subscribe(f"{tenant}:dev1/config")
    dev2.subscribe(f"{tenant}:dev2/config")
    send_event(DeviceEvent.configure(tenant, "dev1", {"fan": 7}, now_ms()))
    send_event(DeviceEvent.configure(tenant, "dev2", {"fan": 8}, now_ms()))
    wait_until(lambda: dev1.received and dev2.received, what="both configurations")
    assert [(t, json.loads(p)) for t, p in dev1.received] == [(f"{tenant}:dev1/config", {"fan": 7})]
    assert [(t, json.loads(p)) for t, p in dev2.received] == [(f"{tenant}:dev2/config", {"fan": 8})]


def test_new_credentials_end_the_old_ones(cagent, tenant, tokens, connect):
    _, api = cagent
    old = credentials(api, tokens, tenant, "dev2")
    live = connect(old["username"], old["password"])
    assert live.accepted
    new = credentials(api, tokens, tenant, "dev2")
    assert new["password"] != old["password"]
    assert live.disconnected.wait(KICK_WITHIN_S), "the session opened with the old password is still up"
    assert not connect(old["username"], old["password"]).accepted
    assert connect(new["username"], new["password"]).accepted


def test_a_removed_device_is_kicked_and_refused(cagent, stub, tenant, tokens, connect, send_event):
    agent, api = cagent
    c = credentials(api, tokens, tenant, "dev3")
    dev = connect(c["username"], c["password"])
    assert dev.accepted
    # As the device manager does it: the device is gone from its answers, then the removal is announced.
    stub.devices[tenant] = [d for d in stub.devices[tenant] if d["id"] != "dev3"]
    send_event(DeviceEvent.removed(tenant, "dev3"))
    assert dev.disconnected.wait(KICK_WITHIN_S), f"dev3 still connected {KICK_WITHIN_S} s after its removal"
    assert not connect(c["username"], c["password"]).accepted
    # The kick is seen as such by liveness.
    wait_until(lambda: agent.metric(LIVENESS, tenant=tenant, event="offline", reason="kicked") >= 1, what="kicked")
    # And the route no longer hands out credentials for it (it asks the device manager, not its cache).
    resp = requests.post(
        f"{api}/basic-auth/v1/devices/dev3/basic-credentials", headers=tokens.headers(tenant), timeout=10
    )
    assert resp.status_code == 404


def test_a_disabled_device_is_kicked_refused_and_let_in_again(cagent, tenant, tokens, connect, send_event):
    _, api = cagent
    c = credentials(api, tokens, tenant, "dev1")
    dev = connect(c["username"], c["password"])
    assert dev.accepted
    dev.publish(json.dumps({"before": "disable"}))
    send_event(DeviceEvent.updated(tenant, {**device("dev1"), "disabled": True}))
    assert dev.disconnected.wait(KICK_WITHIN_S), f"dev1 still connected {KICK_WITHIN_S} s after it was disabled"
    assert not connect(c["username"], c["password"]).accepted
    send_event(DeviceEvent.updated(tenant, {**device("dev1"), "disabled": False}))
    wait_until(lambda: connect(c["username"], c["password"]).accepted, 10, "dev1 let in again")
    # The agent's statistics saw the device (through its operator route, with the tenant's token).
    stats = requests.get(f"{api}/mqtt-agent/v1/statistics/devices/dev1", headers=tokens.headers(tenant), timeout=10)
    assert stats.status_code == 200, stats.text
    assert stats.json()["received"] >= 1 and stats.json()["published"] >= 1
    other = requests.get(
        f"{api}/mqtt-agent/v1/statistics", headers=tokens.headers("t" + uuid.uuid4().hex[:8]), timeout=10
    )
    assert other.status_code == 200 and other.json()["received"] == 0


def test_a_deleted_tenant_loses_every_password_and_session(
    cagent, stub, tenant, tokens, connect, redis_url, kafka_bootstrap
):
    """Last in this module: it deletes the module's tenant."""
    c = credentials(cagent[1], tokens, tenant, "dev2")
    dev = connect(c["username"], c["password"])
    assert dev.accepted
    store = redis.Redis.from_url(redis_url)
    assert store.hexists(tenant_key(tenant), "dev2")

    # As auth does it: the tenant is gone from auth's answers, then the deletion is announced.
    stub.tenants = [t for t in stub.tenants if t != tenant]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(TENANCY_TOPIC, TenancyEvent(type="DELETE", tenant=tenant).to_bytes(), key=tenant)
    assert producer.flush(10) == 0

    assert dev.disconnected.wait(KICK_WITHIN_S * 4), "the deleted tenant's device is still connected"
    assert not connect(c["username"], c["password"]).accepted
    wait_until(lambda: not store.exists(tenant_key(tenant)), 10, "the tenant's stored passwords to go")
    store.close()
