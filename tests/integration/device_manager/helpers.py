"""Helpers of the device manager's integration tests."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError

from device_manager.events import OutboxRelay
from device_manager.settings import Settings
from ondas import kafka
from ondas.settings import CommonSettings


def make_settings(db_url: str, bootstrap: str, public_key_file: str) -> Settings:
    return Settings(
        common=CommonSettings(
            kafka_bootstrap=bootstrap,
            auth_url="http://127.0.0.1:1",
            jwt_public_key_file=public_key_file,
            log_level="INFO",
            bind_host="127.0.0.1",
            authz="signature",  # test tokens, no auth (see conftest.signature_only)
        ),
        db_url=db_url,
        http_port=0,
        http_workers=1,
        relay_health_port=0,
        relay_poll_seconds=0.2,
        db_max_connections=4,
    )


class RelayRunner:
    """An :class:`OutboxRelay` on a thread, with its own producer (closed by :meth:`stop`)."""

    def __init__(self, settings: Settings) -> None:
        bootstrap = settings.common.kafka_bootstrap
        self.producer = kafka.Producer(bootstrap)
        self.relay = OutboxRelay(
            settings.db_url,
            publisher=self.producer,
            ensure_topics=lambda names: kafka.ensure_topics(bootstrap, names),
            poll_interval=settings.relay_poll_seconds,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.relay.run, args=(self._stop,), daemon=True)

    def start(self) -> RelayRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.producer.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def consume(bootstrap: str, topic: str, n: int, timeout: float = 30.0) -> list[tuple[str, dict[str, Any]]]:
    """Read ``n`` messages of ``topic`` from the beginning: (key, JSON value) pairs, in order."""
    consumer = Consumer(
        kafka.consumer_config(bootstrap, f"test-{uuid.uuid4().hex}", **{"auto.offset.reset": "earliest"})
    )
    out: list[tuple[str, dict[str, Any]]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART), err.str()
                continue
            key = msg.key()
            out.append((key.decode() if key else "", json.loads(msg.value() or b"null")))
    finally:
        consumer.close()
    assert len(out) >= n, f"expected {n} messages on {topic}, got {len(out)}: {out}"
    return out


def outbox_count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM outbox").fetchone()
    return int(row[0]) if row else 0


def consume_until(
    bootstrap: str, topic: str, stop: Callable[[dict[str, Any]], bool], timeout: float = 30.0
) -> list[tuple[str, dict[str, Any]]]:
    """Read ``topic`` from the beginning up to and including the first message for which ``stop`` holds."""
    consumer = Consumer(
        kafka.consumer_config(bootstrap, f"test-{uuid.uuid4().hex}", **{"auto.offset.reset": "earliest"})
    )
    out: list[tuple[str, dict[str, Any]]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART), err.str()
                continue
            key = msg.key()
            value = json.loads(msg.value() or b"null")
            out.append((key.decode() if key else "", value))
            if stop(value):
                return out
    finally:
        consumer.close()
    raise AssertionError(f"the awaited message did not arrive on {topic}; got {out}")


class Api:
    """The app's test client with one tenant's token; each call checks the status and returns the JSON body."""

    def __init__(self, client: Any, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        kwargs: dict[str, Any] = {"headers": self.headers}
        if body is not None:
            kwargs["json"] = body
        resp = self.client.open(path, method=method, **kwargs)
        assert resp.status_code == status, (method, path, resp.status_code, resp.get_json())
        return resp.get_json()

    def get(self, path: str, status: int = 200) -> Any:
        return self.call("GET", path, status=status)

    def post(self, path: str, body: Any, status: int = 200) -> Any:
        return self.call("POST", path, body, status)

    def put(self, path: str, body: Any = None, status: int = 200) -> Any:
        return self.call("PUT", path, body, status)

    def delete(self, path: str, status: int = 200) -> Any:
        return self.call("DELETE", path, status=status)

    def template(self, label: str, *attrs: dict[str, Any]) -> dict[str, Any]:
        return self.post("/template", {"label": label, "attrs": list(attrs)})["template"]  # type: ignore[no-any-return]

    def device(self, label: str, templates: list[int], **extra: Any) -> str:
        body = {"label": label, "templates": templates, **extra}
        return str(self.post("/device", body)["devices"][0]["id"])


def attr(label: str, kind: str = "dynamic", value_type: str = "float", **extra: Any) -> dict[str, Any]:
    return {"label": label, "type": kind, "value_type": value_type, **extra}
