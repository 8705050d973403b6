"""The HTTP agent as a real process (``python -m agents.http``, gunicorn) against the real Kafka-protocol broker
and the real Redis; auth and the device manager are the MQTT agent tests' HTTP stub of the routes agents call."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from confluent_kafka import Consumer
from prometheus_client.parser import text_string_to_metric_families

from agents.core.credentials_redis import RedisCredentialStore as CredentialStore
from ondas import ca as pki
from ondas.kafka import consumer_config
from ondasctl.ports import free_port
from tests.integration.agents_mqtt.conftest import Stub, device, typed_device, wait_until
from tests.servers import DEVICE_CREDENTIALS_KEY
from tests.tokens import TokenMaker

ROOT = Path(__file__).resolve().parents[3]
URL = "/http-agent/v1/incoming-messages"
MANY = f"{URL}/create-many"
LIVENESS_TIMEOUT_S = 2


class HttpAgent:
    def __init__(
        self, proc: subprocess.Popen[bytes], base: str, log_path: Path, tokens: TokenMaker, ca: Path | None = None
    ) -> None:
        self.proc = proc
        self.base = base
        self.log_path = log_path
        self.tokens = tokens  # user tokens the agent accepts (its operator routes)
        self.verify: str | bool = str(ca) if ca else True  # the TLS listener: its server certificate's CA

    def post(self, path: str, body: Any = None, *, auth: tuple[str, str, str] | None = None,
             raw: bytes | None = None, headers: dict[str, str] | None = None,
             cert: tuple[Path, Path] | None = None) -> requests.Response:  # fmt: skip
        """POST ``body`` as JSON (or ``raw`` bytes) with Basic credentials ``(tenant, device, password)`` and,
        on the TLS listener, a client certificate ``(cert, key)``."""
        h = {"Content-Type": "application/json", **(headers or {})}
        if auth is not None:
            h["Authorization"] = basic(*auth)
        data = raw if raw is not None else json.dumps(body).encode()
        client_cert = (str(cert[0]), str(cert[1])) if cert else None
        return requests.post(self.base + path, data=data, headers=h, timeout=30, verify=self.verify, cert=client_cert)

    def metric(self, name: str, **labels: str) -> float:
        text = requests.get(f"{self.base}/metrics", timeout=5, verify=self.verify).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += float(sample.value)
        return total

    def ready(self) -> bool:
        return requests.get(f"{self.base}/health/ready", timeout=5, verify=self.verify).status_code == 200

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def basic(tenant: str, device_id: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{tenant}:{device_id}:{password}".encode()).decode()


def launch_http_agent(
    bootstrap: str,
    redis_url: str,
    stub: Stub,
    log_path: Path,
    extra_env: dict[str, str] | None = None,
    pki_dir: Path | None = None,
) -> HttpAgent:
    """``pki_dir``: start the TLS listener instead, with that platform CA's server certificate and CRL."""
    port = free_port()
    tls_env = (
        {
            "HTTP_AGENT_HTTPS_PORT": str(port),
            "HTTP_AGENT_TLS_CERT": str(pki_dir / "server.pem"),
            "HTTP_AGENT_TLS_KEY": str(pki_dir / "server.key"),
            "HTTP_AGENT_TLS_CA": str(pki_dir / pki.CA_CERT),
            "HTTP_AGENT_TLS_CRL": str(pki_dir / pki.CRL_FILE),
        }
        if pki_dir
        else {}
    )
    tokens = TokenMaker(log_path.parent / "keys")
    env = {
        **os.environ,
        "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
        "ONDAS_KAFKA_BOOTSTRAP": bootstrap,
        "ONDAS_AUTH_URL": stub.url,
        # Test tokens and a stub instead of auth: signatures only (tests/e2e/test_direct_ports.py: the full check).
        "ONDAS_AUTHZ": "signature",
        "ONDAS_LOG_LEVEL": "INFO",
        "ONDAS_BIND_HOST": "127.0.0.1",
        "HTTP_AGENT_HTTP_PORT": str(port),
        "HTTP_AGENT_DEVICE_MANAGER_URL": stub.url,
        "HTTP_AGENT_REDIS_URL": redis_url,
        "HTTP_AGENT_CREDENTIALS_KEY": DEVICE_CREDENTIALS_KEY,
        "HTTP_AGENT_THREADS": "8",
        "HTTP_AGENT_LIVENESS_TIMEOUT": str(LIVENESS_TIMEOUT_S),
        # Long enough that only the change announcements can explain a new password taking effect at once.
        "HTTP_AGENT_CREDENTIALS_CACHE_SECONDS": "300",
        **tls_env,
        **(extra_env or {}),
    }
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agents.http", "tls" if pki_dir else "plain"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    scheme = "https" if pki_dir else "http"
    agent = HttpAgent(
        proc, f"{scheme}://127.0.0.1:{port}", log_path, tokens, pki_dir / pki.CA_CERT if pki_dir else None
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited with {proc.returncode}:\n{log_path.read_text()[-5000:]}")
        try:
            return agent.ready()
        except requests.ConnectionError:
            return False

    try:
        wait_until(ready, 60, "the HTTP agent to be ready")
    except BaseException:
        agent.stop()
        raise
    return agent


@pytest.fixture(scope="module")
def tenant() -> str:
    return "h" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def tenant_b() -> str:
    return "h" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def stub(tenant: str, tenant_b: str) -> Iterator[Stub]:
    s = Stub()
    s.tenants = [tenant, tenant_b]
    s.devices[tenant] = [device(d) for d in ("dev1", "dev2", "live1", "gone1", "rotate1")] + [typed_device("typed")]
    s.devices[tenant_b] = [device("dev1"), device("devb")]
    yield s
    s.close()


@pytest.fixture(scope="module")
def store(redis_url: str) -> Iterator[CredentialStore]:
    s = CredentialStore.from_url(redis_url, integrity_key=DEVICE_CREDENTIALS_KEY)
    yield s
    s.close()


@pytest.fixture(scope="module")
def passwords(store: CredentialStore, tenant: str, tenant_b: str) -> dict[tuple[str, str], str]:
    """A password for every device of the stub (``gone1`` is removed by a test)."""
    out = {}
    for t, devices in ((tenant, ("dev1", "dev2", "live1", "gone1", "rotate1", "typed")), (tenant_b, ("dev1", "devb"))):
        for d in devices:
            out[(t, d)] = f"pw-{t}-{d}-{uuid.uuid4().hex[:6]}"
            store.set_password(t, d, out[(t, d)])
    return out


@pytest.fixture(scope="module")
def agent(
    kafka_bootstrap: str,
    redis_url: str,
    stub: Stub,
    passwords: dict[tuple[str, str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HttpAgent]:
    log_path = tmp_path_factory.mktemp("http-agent") / "agent.log"
    a = launch_http_agent(kafka_bootstrap, redis_url, stub, log_path)
    yield a
    assert a.stop() == 0, log_path.read_text()[-5000:]


class TopicReader:
    """Everything on some topics from the beginning (a fresh consumer group)."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.consumer = Consumer(consumer_config(bootstrap, "test-" + uuid.uuid4().hex))
        self.consumer.subscribe(topics)
        self.messages: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        for m in self.consumer.consume(200, timeout=0.2):
            if m.error() is None:
                self.messages.append(
                    {
                        "topic": m.topic(),
                        "key": (m.key() or b"").decode(),
                        "value": json.loads(m.value() or b"null"),
                        "headers": {k: (v or b"").decode() for k, v in (m.headers() or [])},
                    }
                )
        return self.messages

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            self.poll()
            return next((m for m in self.messages if predicate(m)), None)

        return wait_until(found, timeout, f"a message (have {[m['value'] for m in self.messages[-10:]]})")

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture(scope="module")
def reader(kafka_bootstrap: str, tenant: str, tenant_b: str) -> Iterator[TopicReader]:
    r = TopicReader(kafka_bootstrap, [f"{tenant}.device-data", f"{tenant_b}.device-data"])
    yield r
    r.close()


@pytest.fixture(scope="module")
def liveness_reader(kafka_bootstrap: str, tenant: str) -> Iterator[TopicReader]:
    r = TopicReader(kafka_bootstrap, [f"{tenant}.device-liveness"])
    yield r
    r.close()
