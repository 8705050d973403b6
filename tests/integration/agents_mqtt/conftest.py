"""The MQTT agent as a real process (``python -m agents.mqtt``) against the real Mosquitto and Kafka-protocol
broker; auth and the device manager are a tiny HTTP stub of their two routes the agent calls."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import requests
from confluent_kafka import Consumer, Producer
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from ondas.contracts import DeviceEvent
from ondas.kafka import consumer_config
from ondas.topics import device_data, device_events
from ondasctl import infra
from ondasctl.config import Config
from ondasctl.ports import free_port
from ondasctl.procs import Proc
from tests.servers import Servers, make_test_config
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[3]
MAX_PAYLOAD = 1024


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    return wait_for(predicate, timeout, what)


class Stub:
    """GET /admin/tenants and GET /internal/tenants/<t>/devices[/<id>], from mutable state."""

    def __init__(self) -> None:
        self.tenants: list[str] = []
        self.devices: dict[str, list[dict[str, Any]]] = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if parts == ["admin", "tenants"]:
                    self._json(200, {"tenants": stub.tenants})
                elif len(parts) == 4 and parts[:2] == ["internal", "tenants"] and parts[3] == "devices":
                    self._json(200, {"devices": stub.devices.get(parts[2], [])})
                elif len(parts) == 5 and parts[:2] == ["internal", "tenants"] and parts[3] == "devices":
                    found = [d for d in stub.devices.get(parts[2], []) if d.get("id") == parts[4]]
                    self._json(200, found[0]) if found else self._json(404, {"error": "not_found"})
                else:
                    self._json(404, {"error": "not_found"})

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def device(device_id: str) -> dict[str, Any]:
    return {"id": device_id, "label": f"device {device_id}", "templates": [1], "attrs": {"1": []}}


TYPED_ATTRS = {"temperature": "float", "count": "integer", "on": "bool", "name": "string", "where": "geo:point"}


def typed_device(device_id: str) -> dict[str, Any]:
    """A device whose template declares one attribute of each common value type."""
    attrs = [
        {"template_id": "2", "label": label, "value_type": vt, "type": "dynamic", "id": i}
        for i, (label, vt) in enumerate(TYPED_ATTRS.items(), start=1)
    ]
    return {"id": device_id, "label": f"device {device_id}", "templates": [2], "attrs": {"2": attrs}}


class Agent:
    def __init__(self, proc: subprocess.Popen[bytes], health_url: str, log_path: Path) -> None:
        self.proc = proc
        self.health_url = health_url
        self.log_path = log_path

    def metric(self, name: str, **labels: str) -> float:
        text = requests.get(f"{self.health_url}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None and requests.get(f"{self.health_url}/health/live", timeout=5).ok


@pytest.fixture(scope="module")
def tenant() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def stub(tenant: str) -> Iterator[Stub]:
    s = Stub()
    s.tenants = [tenant]
    s.devices[tenant] = [device(d) for d in ("dev1", "dev2", "dev3")] + [typed_device("typed")]
    yield s
    s.close()


def launch_agent(
    servers: Servers,
    bootstrap: str,
    stub: Stub,
    log_path: Path,
    client_id: str,
    extra_env: dict[str, str] | None = None,
) -> Agent:
    """Start ``python -m agents.mqtt`` with its settings in the environment and wait until it is ready."""
    cfg = servers.cfg
    port = free_port()
    env = {
        **os.environ,
        "ONDAS_KAFKA_BOOTSTRAP": bootstrap,
        "ONDAS_AUTH_URL": stub.url,
        # Test tokens and a stub instead of auth: signatures only (tests/e2e/test_direct_ports.py: the full check).
        "ONDAS_AUTHZ": "signature",
        "ONDAS_LOG_LEVEL": "INFO",
        "ONDAS_BIND_HOST": "127.0.0.1",
        "MQTT_AGENT_HEALTH_PORT": str(port),
        "MQTT_AGENT_BROKER_HOST": cfg.host,
        "MQTT_AGENT_BROKER_PORT": str(cfg.ports["mqtt_internal"]),
        "MQTT_AGENT_BROKER_PASSWORD": cfg.secret("mqtt-agent"),
        "MQTT_AGENT_BROKER_CLIENT_ID": client_id,
        "MQTT_AGENT_DEVICE_MANAGER_URL": stub.url,
        "MQTT_AGENT_MAX_PAYLOAD_BYTES": str(MAX_PAYLOAD),
        # A group per agent unless a test shares one: a member of another module's agent that left the group
        # while its first join was pending was seen to keep the embedded broker's group from assigning anyone.
        "MQTT_AGENT_CONSUMER_GROUP": f"mqtt-agent-{client_id}",
        # Test agents do not come back (each has a client id of its own): a graceful stop leaves the shared
        # subscription, or the kept session would take its share of the next module's messages.
        "MQTT_AGENT_LEAVE_ON_STOP": "on",
        **(extra_env or {}),
    }
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agents.mqtt"], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    a = Agent(proc, f"http://127.0.0.1:{port}", log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            return requests.get(f"{a.health_url}/health/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(ready, 60, "the agent to be ready")
    except BaseException:
        a.stop()
        raise
    return a


@pytest.fixture(scope="module")
def agent(
    mosquitto: Servers, kafka_bootstrap: str, stub: Stub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    log_path = tmp_path_factory.mktemp("mqtt-agent") / "agent.log"
    a = launch_agent(mosquitto, kafka_bootstrap, stub, log_path, "test-agent-" + uuid.uuid4().hex[:8])
    yield a
    assert a.stop() == 0, log_path.read_text()[-5000:]


class DeviceClient:
    """A real MQTT device: username ``<tenant>:<id>``, no password, on the plain device listener; ``anonymous``:
    no username at all, as a Mosca-era device (MQTT 3.1.1)."""

    def __init__(self, host: str, port: int, tenant: str, device_id: str, anonymous: bool = False) -> None:
        self.topic_base = f"{tenant}:{device_id}"
        self.received: list[tuple[str, bytes]] = []
        self._connected = threading.Event()
        self._subacks: dict[int, int] = {}  # mid -> reason code of the first topic
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{device_id}-{uuid.uuid4().hex[:6]}",
            protocol=paho.MQTTv311 if anonymous else paho.MQTTv5,
        )
        if not anonymous:
            self.client.username_pw_set(self.topic_base, None)
        self.client.on_connect = lambda c, u, f, rc, p: self._connected.set()
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subacks.__setitem__(mid, rcs[0].value)
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._connected.wait(10):
            self.close()
            raise AssertionError("device could not connect")

    def publish(self, payload: bytes | str, topic: str | None = None) -> None:
        info = self.client.publish(topic or f"{self.topic_base}/attrs", payload, qos=1)
        info.wait_for_publish(10)

    def subscribe(self, topic: str) -> int:
        """The SUBACK's reason code (below 0x80: granted)."""
        _, mid = self.client.subscribe(topic, qos=1)
        wait_until(lambda: mid in self._subacks, 10, "SUBACK")
        return self._subacks[mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def devices(mosquitto: Servers, tenant: str) -> Iterator[Callable[[str], DeviceClient]]:
    opened: list[DeviceClient] = []

    def make(device_id: str, of_tenant: str | None = None, anonymous: bool = False) -> DeviceClient:
        c = DeviceClient(mosquitto.cfg.host, mosquitto.cfg.ports["mqtt"], of_tenant or tenant, device_id, anonymous)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()


class DataReader:
    """Everything on ``<tenant>.device-data`` from the beginning (a fresh consumer group)."""

    def __init__(self, bootstrap: str, tenant: str) -> None:
        self.consumer = Consumer(consumer_config(bootstrap, "test-" + uuid.uuid4().hex))
        self.consumer.subscribe([device_data(tenant)])
        self.messages: list[dict[str, Any]] = []

    def poll(self) -> None:
        for m in self.consumer.consume(100, timeout=0.2):
            if m.error() is None:
                self.messages.append(
                    {
                        "key": (m.key() or b"").decode(),
                        "value": json.loads(m.value() or b"null"),
                        "headers": {k: (v or b"").decode() for k, v in (m.headers() or [])},
                    }
                )

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            self.poll()
            return next((m for m in self.messages if predicate(m)), None)

        return wait_until(found, timeout, f"a device-data message (have {[m['value'] for m in self.messages[-10:]]})")

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture(scope="module")
def reader(kafka_bootstrap: str, tenant: str) -> Iterator[DataReader]:
    r = DataReader(kafka_bootstrap, tenant)
    yield r
    r.close()


@pytest.fixture
def send_event(kafka_bootstrap: str, tenant: str) -> Iterator[Callable[[DeviceEvent], None]]:
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def send(event: DeviceEvent) -> None:
        producer.produce(device_events(tenant), event.to_bytes(), key=event.device_id)
        assert producer.flush(10) == 0

    yield send
    producer.flush(10)


@dataclass
class Broker:
    """A Mosquitto of a test module's own, from the platform's generated config (ondasctl.infra), so its mode,
    the CRL it is given and the reloads it gets concern that module only. Stands in for :class:`Servers`
    where the agent's launcher reads ``.cfg``."""

    cfg: Config


@contextlib.contextmanager
def own_broker(mode: str, legacy_topics: bool = False) -> Iterator[Broker]:
    cfg = make_test_config(f"ondas-mqtt-{mode}-")
    cfg.mqtt_mode = mode
    cfg.mqtt_legacy_topics = legacy_topics
    proc = Proc(infra.mosquitto_spec(cfg))
    proc.start()
    try:
        proc.wait_ready(60)
        yield Broker(cfg)
    finally:
        proc.stop()
        shutil.rmtree(cfg.data_dir, ignore_errors=True)
