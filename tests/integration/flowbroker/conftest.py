"""Fixtures of the flowbroker's integration tests: the real REST app on a fresh database, a worker on a thread
against the real broker, PostgreSQL and Redis, and a reader of the topics the flows write."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka import Producer as RdProducer
from flask.testing import FlaskClient

from flowbroker.app import Worker, build_api, close_api
from flowbroker.settings import Settings
from ondas.kafka import consumer_config, producer_config
from ondas.settings import CommonSettings
from tests.auth_stub import AuthStub


@pytest.fixture(autouse=True, scope="package")
def signature_only() -> Iterator[None]:
    """Test tokens (tests/tokens.py), no auth: token signatures are checked, as in the device manager's tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ONDAS_AUTHZ", "signature")
        yield


def make_settings(db_url: str, bootstrap: str, redis_url: str, public_key_file: str, auth_url: str) -> Settings:
    return Settings(
        common=CommonSettings(
            kafka_bootstrap=bootstrap,
            auth_url=auth_url,
            jwt_public_key_file=public_key_file,
            log_level="INFO",
            bind_host="127.0.0.1",
            authz="signature",
        ),
        db_url=db_url,
        redis_url=redis_url,
        http_port=0,
        http_workers=1,
        worker_health_port=0,
        group_id="flowbroker-" + uuid.uuid4().hex[:8],
        db_max_connections=4,
        flows_refresh_seconds=0.1,
        flow_threads=4,
        max_hops=1000,
        max_generations=4,
        http_timeout_seconds=1.0,
        http_max_response_bytes=64 << 10,
        http_allowed_networks="127.0.0.1/32",  # the tests' local HTTP servers
        batch_size=100,
    )


@pytest.fixture
def auth(unique: str) -> Iterator[AuthStub]:
    stub = AuthStub([unique, unique + "b"])
    yield stub
    stub.close()


@pytest.fixture
def settings(
    pg_database: Callable[[str], str], kafka_bootstrap: str, redis_url: str, tokens: Any, auth: AuthStub
) -> Settings:
    return make_settings(pg_database("fb"), kafka_bootstrap, redis_url, str(tokens.public_file), auth.url)


@pytest.fixture
def client(settings: Settings) -> Iterator[FlaskClient]:
    app = build_api(settings)
    with app.test_client() as c:
        yield c
    close_api(app)


class Api:
    def __init__(self, client: FlaskClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        resp = self.client.open(path, method=method, headers=self.headers, json=body)
        return resp.status_code, resp.get_json()

    def create(self, nodes: list[dict[str, Any]], name: str = "f", enabled: bool = True) -> str:
        status, body = self.call("POST", "/flows/v1/flow", {"name": name, "enabled": enabled, "flow": nodes})
        assert status == 200, body
        return str(body["flow"]["id"])


@pytest.fixture
def api(client: FlaskClient, tokens: Any, unique: str) -> Api:
    return Api(client, tokens.headers(unique))


@pytest.fixture
def api_b(client: FlaskClient, tokens: Any, unique: str) -> Api:
    return Api(client, tokens.headers(unique + "b"))


@dataclass
class RunningWorker:
    worker: Worker
    thread: threading.Thread

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()
        self.worker.close()


@pytest.fixture
def start_worker(settings: Settings, unique: str) -> Iterator[Callable[..., RunningWorker]]:
    running: list[RunningWorker] = []

    def start(**changes: Any) -> RunningWorker:
        worker = Worker(replace(settings, **changes), instance=f"flowbroker-{unique}-{len(running)}")
        worker.start(health_port=0)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        run = RunningWorker(worker, thread)
        running.append(run)
        return run

    yield start
    for r in running:
        r.stop()


@pytest.fixture
def send(kafka_bootstrap: str) -> Iterator[Callable[[str, Any, str], None]]:
    p = RdProducer(producer_config(kafka_bootstrap))

    def produce(topic: str, value: Any, key: str) -> None:
        p.produce(topic, json.dumps(value).encode(), key=key)
        assert p.flush(15) == 0

    yield produce


class Reader:
    """Reads a topic from its start; :meth:`until` polls until ``count`` messages (matching) arrived."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer(consumer_config(bootstrap, "reader-" + uuid.uuid4().hex[:8]))
        self._consumer.subscribe([topic])
        self.messages: list[tuple[str | None, dict[str, Any], dict[str, str]]] = []

    def poll(self) -> None:
        for m in self._consumer.consume(100, timeout=0.2):
            if m.error() is None:
                key = m.key()
                headers = {k: (v.decode() if isinstance(v, bytes) else "") for k, v in (m.headers() or [])}
                self.messages.append((key.decode() if key else None, json.loads(m.value() or b"{}"), headers))

    def until(
        self, count: int, match: Callable[[dict[str, Any]], bool] = lambda _: True, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        import time

        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            found = [v for _, v, _ in self.messages if match(v)]
            if len(found) >= count or time.monotonic() > deadline:
                return found

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture
def reader(kafka_bootstrap: str) -> Iterator[Callable[[str], Reader]]:
    readers: list[Reader] = []

    def make(topic: str) -> Reader:
        r = Reader(kafka_bootstrap, topic)
        readers.append(r)
        return r

    yield make
    for r in readers:
        r.close()
